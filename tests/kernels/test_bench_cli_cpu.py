"""kernels/bench.py's command line on the CPU: picking layers with --shapes, and its errors."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_pick_shapes_by_name_or_first_word_in_table_order():
    from kernels.bench import SHAPES, pick_shapes

    assert pick_shapes(SHAPES, None) == SHAPES
    assert [s[0] for s in pick_shapes(SHAPES, "8192x8192, llada-ff")] == ["llada-ff 4096>12288", "8192x8192"]
    assert pick_shapes(SHAPES, "sd-attn 1280") == [SHAPES[0]]


@pytest.mark.parametrize("value, fragment", [("nope,llada-ff", "['nope'] not among this run's layers"),
                                             (",", "names no layer")])
def test_bad_shapes_exit_before_any_gpu_check(value, fragment):
    run = subprocess.run([sys.executable, "kernels/bench.py", "--shapes", value], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1 and fragment in run.stderr and "8192x8192" in run.stderr  # names the choices


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run checks the script on the CPU interpreter; on the "
                    "H200 host (Triton 3.6) its interpreter stops in the gemm section with an InterpreterError, "
                    "with or without the fp16x2 kernel (results/kernels_f16x2/README.md)")
def test_dry_run_times_only_the_picked_layer(tmp_path):
    run = subprocess.run([sys.executable, "kernels/bench.py", "--dry-run", "--out", str(tmp_path), "--only", "gemm",
                          "--m-list", "1", "--shapes", "tiny"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(tmp_path / "kernels.csv", newline="") as f:
        gemm = [r for r in csv.DictReader(f) if r["kind"] == "gemm"]
    assert gemm and {r["shape"] for r in gemm} == {"tiny 256>96"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU check of the script, as the test above")
def test_dry_run_block_tokens(tmp_path):
    run = subprocess.run([sys.executable, "kernels/bench.py", "--dry-run", "--out", str(tmp_path), "--only", "block",
                          "--block-tokens", "3"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(tmp_path / "kernels.csv", newline="") as f:
        block = [r for r in csv.DictReader(f) if r["kind"] == "block"]
    assert block and {r["M"] for r in block} == {"3"}, block


def test_small_m_table_keeps_rows_whose_kernels_failed():
    """A kernel that failed in a run is a NaN row (kernels/bench.py's time_us): the small-M table still renders it,
    with '-' as the fastest kernel when none was timed, instead of ending the report."""
    from kernels.report import _small_m_table

    nan = float("nan")
    rows = [dict(kind="smallm", shape="8192x8192", M=1, impl=impl, us=us, fp16_weight_MB=128.0)
            for impl, us in [("cublas_fp16", 40.0), ("w4a16", nan), ("w4a16_gemv", nan), ("w4a16_splitk", nan)]]
    assert _small_m_table(rows)[-2].endswith("| - | - |")
    rows[2] = dict(rows[2], us=30.0)  # the fp32 GEMV timed: it is the fastest
    assert _small_m_table(rows)[-2].endswith("| - | gemv |")
