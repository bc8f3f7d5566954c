"""The fp16x2 W4A16 GEMV (kernels/w4a16_gemv_f16x2.py).

CPU: its inline PTX cannot run in the interpreter, so `emulate_word` (the same steps in numpy fp16) is checked
against the reference on whole layers, and shown able to fail (a wrong column order is caught); the launcher's
errors. GPU (`gpu`): the kernel on the full grid of shapes, group sizes, both code formats, M = 1 and 2, every config
once, K that ends inside a packing block, and the fallback when it cannot run (bf16, K % 4 != 0).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from kernel_helpers import DEVICE, TOL, assert_close_report

from kernels._common import label
from kernels.int4_pack import pack_int4_weight, padded_k
from kernels.w4a16_gemm import w4a16_gemm, w4a16_gemm_ref, w4a16_small_m
from kernels.w4a16_gemv_f16x2 import emulate_word, get_autotune_configs, w4a16_gemv_f16x2
from qsched_core.quant.primitives import choose_qparams, quantize

GPU_SHAPES = [(1000, 768), (257, 1280), (40, 200)]  # (N, K); K = 200 ends inside a 64-column packing block


def _layer(n, k, g, symmetric, seed=0):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    scale, zero = choose_qparams(w, 4, g, symmetric)
    return pack_int4_weight(quantize(w, scale, zero, 4, symmetric), scale, zero, symmetric)


def _emulated_gemv(x, qweight, scales, zeros, g, swap_halves=False):
    """y = x @ W^T for one row of fp16 x, word by word through `emulate_word` (x zero-padded to the packed K)."""
    n, k = qweight.shape[0], x.shape[-1]
    group = k if g == -1 else g
    xp = np.zeros(padded_k(k), np.float16)
    xp[:k] = x.numpy().reshape(-1)
    words = qweight.view(torch.int32).numpy().view(np.uint32)  # (N, KW)
    blk, j = np.divmod(np.arange(words.shape[1]), 8)
    c0 = 64 * blk + 4 * j  # first column of each word's low nibbles
    x_lo, x_hi = xp[c0[:, None] + np.arange(4)], xp[32 + c0[:, None] + np.arange(4)]
    if swap_halves:  # a wrong column order: the mutation the check must catch
        x_lo, x_hi = x_hi, x_lo
    g_lo, g_hi = np.minimum(64 * blk // group, scales.shape[1] - 1), np.minimum((64 * blk + 32) // group,
                                                                                  scales.shape[1] - 1)
    s, z = scales.numpy(), (zeros.numpy() if zeros is not None else np.full(scales.shape, 8))
    hi_ok = (64 * blk + 32 < k).astype(np.float16)  # a plane past K has x = 0; its scale index is clamped
    y = [emulate_word(words[r], x_lo, x_hi, z[r, g_lo], z[r, g_hi], s[r, g_lo], s[r, g_hi] * hi_ok).sum()
         for r in range(n)]
    return torch.tensor(np.array(y, np.float32)).to(torch.float16)[None]


@pytest.mark.parametrize("n,k,g,symmetric", [(24, 256, 64, False), (16, 200, -1, True), (12, 128, 32, False),
                                             (8, 320, 64, True)])
def test_emulated_ptx_matches_reference(n, k, g, symmetric):
    qweight, scales, zeros = _layer(n, k, g, symmetric)
    x = torch.randn(1, k, generator=torch.Generator().manual_seed(1)).to(torch.float16)
    ref = w4a16_gemm_ref(x, qweight, scales, zeros, g)
    assert_close_report(_emulated_gemv(x, qweight, scales, zeros, g), ref, TOL[torch.float16],
                        f"emulated f16x2 N={n} K={k} G={g} sym={symmetric}")
    wrong = _emulated_gemv(x, qweight, scales, zeros, g, swap_halves=True)
    assert (wrong.float() - ref.float()).abs().max() > 10 * TOL[torch.float16] * ref.float().abs().max()


def test_launcher_errors():
    qweight, scales, zeros = (t.to(DEVICE) for t in _layer(16, 256, 64, False))
    with pytest.raises(ValueError, match="fp16 activations.*use w4a16_gemv"):
        w4a16_gemv_f16x2(torch.randn(1, 256).bfloat16().to(DEVICE), qweight, scales, zeros, 64)
    with pytest.raises(ValueError, match="at most 2 rows"):
        w4a16_gemv_f16x2(torch.randn(3, 256).half().to(DEVICE), qweight, scales, zeros, 64)
    if DEVICE == "cpu":  # the interpreter cannot run inline PTX: a clear error, and the dispatcher skips the kernel
        with pytest.raises(ValueError, match="inline PTX"):
            w4a16_gemv_f16x2(torch.randn(1, 256).half(), qweight, scales, zeros, 64)
        with pytest.raises(ValueError, match="inline PTX"):
            w4a16_small_m(torch.randn(1, 256).half(), qweight, scales, zeros, 64, paths=("f16x2",))
    with pytest.raises(ValueError, match="choose among"):
        w4a16_small_m(torch.randn(1, 256).half().to(DEVICE), qweight, scales, zeros, 64, paths=("fast",))


def _run(m, n, k, g, symmetric, config=None, fn=w4a16_gemv_f16x2, dtype=torch.float16):
    qweight, scales, zeros = (t if t is None else t.to(DEVICE) for t in _layer(n, k, g, symmetric))
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
    b = torch.randn(n).to(DEVICE) if symmetric else None
    out = fn(x, qweight, scales, zeros, g, b, config=config)
    assert_close_report(out, w4a16_gemm_ref(x, qweight, scales, zeros, g, b), TOL[dtype],
                        f"{fn.__name__} M={m} N={n} K={k} G={g} sym={symmetric} {label(config) if config else ''}")


@pytest.mark.gpu
@pytest.mark.parametrize("n,k", GPU_SHAPES, ids=str)
@pytest.mark.parametrize("g", [32, 64, 128, -1])
def test_gpu_f16x2_grid(n, k, g):
    if g != -1 and k % g:
        pytest.skip(f"G={g} does not divide K={k}")
    for m in (1, 2):
        for symmetric in (True, False):
            _run(m, n, k, g, symmetric)


@pytest.mark.gpu
@pytest.mark.parametrize("i,cfg", list(enumerate(get_autotune_configs())), ids=lambda v: label(v) if not
                         isinstance(v, int) else str(v))
def test_gpu_f16x2_every_config(i, cfg):
    """The tuner may pick any config: each is right on its own, with one K slice and with several."""
    _run(1, 1000, 768, 128, False, config=cfg)
    _run(2, 257, 1280, 32, True, config=cfg)
    _run(1, 64, 8192, 128, False, config=cfg)


@pytest.mark.gpu
def test_gpu_f16x2_fallbacks():
    """Where the kernel cannot run, w4a16_gemm runs another one: bf16 x, K not a multiple of 4, M > 2."""
    _run(1, 100, 202, -1, False, fn=w4a16_gemm)  # K % 4 != 0
    _run(1, 100, 256, 64, False, fn=w4a16_gemm, dtype=torch.bfloat16)
    _run(3, 100, 256, 64, True, fn=w4a16_gemm)
    with pytest.raises(ValueError, match="multiple of 4"):
        _run(1, 100, 202, -1, False)


def test_sass_counts_show_the_layouts_and_the_arithmetic():
    """`kernels/gemv_study.py --sass` on the CPU (Triton's bundled ptxas): the Gluon kernel's main loop has no
    shared-memory traffic and fewer instructions per weight than the fp32 stream and the automatic-layout twin."""
    from pathlib import Path

    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm").exists():
        pytest.skip("this Triton install has no nvdisasm")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiled, not interpreted, kernels
    run = subprocess.run([sys.executable, "kernels/gemv_study.py", "--sass"], cwd=Path(__file__).resolve().parents[2],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|") for line in run.stdout.splitlines() if line.startswith("| ")}
    per_weight = {k: float(v[4]) for k, v in rows.items() if k in ("gemv_fp32", "f16x2_auto", "f16x2")}
    shared = {k: float(v[5]) for k, v in rows.items() if k in ("f16x2_auto", "f16x2")}
    assert shared["f16x2"] == 0 < shared["f16x2_auto"], rows
    assert per_weight["f16x2"] < per_weight["f16x2_auto"] < per_weight["gemv_fp32"], per_weight


def test_dispatcher_checks_the_arguments_once(monkeypatch):
    """w4a16_gemm at M = 1 validates its arguments once: the launcher it dispatches to receives them as checked
    (the Python time of an eager call at M = 1 is several times the GPU time; kernels/launcher_overhead.py)."""
    import kernels.int4_pack as int4_pack
    import kernels.w4a16_gemm as gemm

    calls = []
    real = int4_pack.check_w4_args
    monkeypatch.setattr(gemm, "check_w4_args", lambda *a: calls.append(1) or real(*a))
    import kernels.w4a16_gemv as gemv
    monkeypatch.setattr(gemv, "check_w4_args", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv("QSCHED_AUTOTUNE", "0")
    _run(1, 40, 256, 64, False, fn=w4a16_gemm)
    assert len(calls) == 1, f"check_w4_args ran {len(calls)} times for one call"


def test_dispatch_reaches_the_f16x2_launcher_with_its_arguments(monkeypatch):
    """The wiring (on any device): with the kernel replaced by a recorder (inline PTX cannot run here), w4a16_gemm at
    M = 1 with fp16 x takes the fp16x2 path under the fixed rule and launches it with x as int64 words, the
    packed words as int32 and the tile flags of this shape."""
    import kernels.w4a16_gemm as gemm
    import kernels.w4a16_gemv_f16x2 as f16x2

    seen = {}

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **meta):
                seen.update(grid=grid, args=args, meta=meta)
            return launch

    monkeypatch.setattr(gemm, "f16x2_eligible", lambda x: None)
    monkeypatch.setattr(f16x2, "w4a16_gemv_f16x2_kernel", Recorder())
    monkeypatch.setenv("QSCHED_AUTOTUNE", "0")
    qweight, scales, zeros = (t.to(DEVICE) for t in _layer(40, 200, -1, False))
    y = w4a16_gemm(torch.randn(1, 200).half().to(DEVICE), qweight, scales, zeros, -1)
    cfg = get_autotune_configs()[0].kwargs
    assert y.shape == (1, 40) and seen["grid"] == (-(-40 // cfg["BLOCK_N"]), 1, 1)
    x64, words = seen["args"][0], seen["args"][1]
    assert x64.dtype == torch.int64 and x64.shape == (1, 50) and words.dtype == torch.int32 and words.shape == (40, 32)
    assert seen["args"][6:10] == (40, 200, 50, 32)  # N, K, K // 4, words per row
    meta = seen["meta"]  # G = -1: one group spans the row
    assert meta["GROUP"] >= 200 and meta["EVEN_K"] is False and meta["HAS_ZEROS"]
