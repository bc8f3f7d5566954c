"""kernels/bench_e2e.py's end-to-end sections build their models on the CPU too (timing replaced by a stub), so a
mistake in building them shows here instead of as a failed section of a GPU run."""
import pytest
import torch

pytest.importorskip("diffusers")


def test_tiny_unet_rows_build_every_model():
    from kernels.bench_e2e import tiny_unet_rows

    calls = []
    rows = tiny_unet_rows(torch.device("cpu"), lambda fn: (calls.append(fn().shape), 2.0)[1])
    assert [r["impl"] for r in rows] == ["fp16", "w4a16-g128", "w4a8"]
    assert len(calls) == 3 and len(set(calls)) == 1  # every model ran the same forward
    assert all(r["speedup_vs_fp16"] == 1.0 for r in rows)
    assert rows[0]["note"].startswith("0 of 0") and not rows[2]["note"].startswith("0 of")  # W4A8 runs quantized
