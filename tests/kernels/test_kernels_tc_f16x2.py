"""The fp16x2-dequantizing tensor-core W4A16 kernel, M >= 3 (kernels/w4a16_tc_f16x2.py).

CPU: the inline PTX cannot run in the interpreter, so its text runs in numpy (`emulate_bytes`): it must give the
torch path's dequantized fp16 weights bit for bit on whole layers and be elementwise (any four bytes, each with its
own zero and scale), and both checks are shown able to fail (swapped byte selectors; one zero for all four bytes);
the kernel's tile walk, masks and dots run in the interpreter with its Triton dequantization
(DEQ_ASM = 0), every config once; the launcher's errors. GPU (`gpu`): the PTX path on the full grid.
"""
import numpy as np
import pytest
import torch
from kernel_helpers import DEVICE, TOL, assert_close_report

from kernels._common import label
from kernels.int4_pack import pack_int4_weight, unpack_int4_ref
from kernels.w4a16_gemm import w4a16_gemm_ref
from kernels.w4a16_tc_f16x2 import (
    ASM,
    configs_for,
    emulate_bytes,
    get_autotune_configs,
    get_medium_configs,
    w4a16_tc_f16x2,
)
from qsched_core.quant.primitives import choose_qparams, dequantize, quantize

M_GRID = [1, 2, 3, 15, 16]


def _layer(n, k, g, symmetric, seed=0):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    scale, zero = choose_qparams(w, 4, g, symmetric)
    return pack_int4_weight(quantize(w, scale, zero, 4, symmetric), scale, zero, symmetric)


def _emulated_weight(qweight, scales, zeros, g, k, text=ASM):
    """The fp16 (N, K) weight as the kernel's PTX builds it, 4 bytes of a tile row at a time through emulate_bytes."""
    n = qweight.shape[0]
    group = k if g == -1 else g
    b4 = qweight.contiguous().view(torch.int32).numpy().view(np.uint32)  # (N, Kp // 8): bytes 4t .. 4t + 3
    t = np.arange(b4.shape[1])
    blk, j = np.divmod(4 * t, 32)  # packing block of each register, first byte within the block
    c_lo = 64 * blk + j  # column of the low nibble of its byte 0
    g_lo = np.minimum(c_lo // group, scales.shape[1] - 1)
    g_hi = np.minimum((c_lo + 32) // group, scales.shape[1] - 1)
    s, z = scales.numpy(), (zeros.numpy() if zeros is not None else np.full(scales.shape, 8))
    per = lambda a: a[..., None]  # noqa: E731  one value for the register's four bytes (one row, one group)
    lo, hi = emulate_bytes(b4, per(z[:, g_lo]), per(z[:, g_hi]), per(s[:, g_lo]), per(s[:, g_hi]), text)
    w = np.zeros((n, 64 * (b4.shape[1] // 8)), np.float16)
    cols = c_lo[:, None] + np.arange(4)  # (KW, 4) low-nibble columns
    w[:, cols] = lo
    w[:, cols + 32] = hi
    return torch.from_numpy(w[:, :k])


@pytest.mark.parametrize("n,k,g,symmetric", [(24, 256, 64, False), (16, 192, -1, True), (12, 128, 32, False),
                                             (8, 320, 64, True)])
def test_emulated_ptx_gives_the_torch_weight(n, k, g, symmetric):
    qweight, scales, zeros = _layer(n, k, g, symmetric)
    q = unpack_int4_ref(qweight, k, symmetric)
    zero = torch.zeros_like(scales, dtype=torch.int32) if symmetric else zeros.to(torch.int32)
    ref = dequantize(q, scales.float(), zero).half()  # the torch path's fp16 weight
    assert torch.equal(_emulated_weight(qweight, scales, zeros, g, k), ref)
    swapped = ASM.replace("0x1100", "0xTMP").replace("0x3322", "0x1100").replace("0xTMP", "0x3322")
    assert not torch.equal(_emulated_weight(qweight, scales, zeros, g, k, swapped), ref)  # byte pairs swapped


def test_ptx_is_elementwise():
    """Each of a register's four bytes with its own zero and scale, as in the tensor-core operand layout where they
    may come from different rows: element t of each plane is (nibble of byte t - z_t) * s_t in fp16."""
    rng = np.random.default_rng(0)
    b = rng.integers(0, 256, (500, 4), dtype=np.uint32)
    z_lo, z_hi = rng.integers(0, 16, (500, 4)), rng.integers(0, 16, (500, 4))
    s_lo, s_hi = (rng.uniform(1e-3, 2, (500, 4)).astype(np.float16) for _ in range(2))
    b4 = b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16 | b[:, 3] << 24
    want_lo = ((b & 15).astype(np.float32) - z_lo).astype(np.float16) * s_lo
    want_hi = ((b >> 4).astype(np.float32) - z_hi).astype(np.float16) * s_hi
    lo, hi = emulate_bytes(b4, z_lo, z_hi, s_lo, s_hi)
    assert np.array_equal(lo, want_lo) and np.array_equal(hi, want_hi)
    one_zero = ASM.replace("sub.f16x2 a1, a1, $6", "sub.f16x2 a1, a1, $5")  # bytes 2, 3 with the zero of 0, 1
    assert not np.array_equal(emulate_bytes(b4, z_lo, z_hi, s_lo, s_hi, one_zero)[0], want_lo)


def _run(m, n, k, g, symmetric, config=None, bias=False, seed=0):
    qweight, scales, zeros = _layer(n, k, g, symmetric, seed)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed + 1)).half()
    b = torch.randn(n, generator=torch.Generator().manual_seed(seed + 2)).half() if bias else None
    ref = w4a16_gemm_ref(x, qweight, scales, zeros, g, b)
    dev = [t.to(DEVICE) if t is not None else None for t in (x, qweight, scales, zeros, b)]
    out = w4a16_tc_f16x2(dev[0], dev[1], dev[2], dev[3], g, dev[4], config=config).cpu()
    assert_close_report(out, ref, TOL[torch.float16], f"tc_f16x2 M={m} N={n} K={k} G={g} sym={symmetric}")


@pytest.mark.parametrize("m", M_GRID, ids=str)
@pytest.mark.parametrize("n,k,g,symmetric,bias", [(40, 200, -1, True, True), (33, 256, 64, False, False),
                                                  (20, 96, 32, False, True)], ids=str)
def test_matches_reference(m, n, k, g, symmetric, bias):
    _run(m, n, k, g, symmetric, bias=bias)


@pytest.mark.parametrize("cfg", get_autotune_configs() + get_medium_configs(), ids=label)
def test_every_config(cfg):
    m = 5 if cfg.kwargs["BLOCK_M"] == 16 else 70  # a medium config: two blocks of 64 rows, or one of 128 part-filled
    _run(m, 70, 320, 64 if cfg.kwargs["NB"] == 1 else -1, False, cfg)  # K = 320 ends inside a 128-column tile


def test_configs_never_straddle_a_group():
    for medium, every in ((False, get_autotune_configs()), (True, get_medium_configs())):
        assert all(c.kwargs["NB"] == 1 for c in configs_for(32, medium)) and configs_for(32, medium)
        assert len(configs_for(128, medium)) == len(every)


def test_untuned_large_m_runs_the_first_medium_config():
    """Without tuning, more than 16 rows take the first medium config (64- or 128-row blocks of x)."""
    _run(40, 33, 256, 64, False, bias=True)


def test_launcher_errors():
    qweight, scales, zeros = (t.to(DEVICE) for t in _layer(16, 256, 64, False))
    with pytest.raises(ValueError, match="fp16 activations.*use w4a16_gemm"):
        w4a16_tc_f16x2(torch.randn(4, 256).bfloat16().to(DEVICE), qweight, scales, zeros, 64)
    nb2 = next(c for c in get_autotune_configs() if c.kwargs["NB"] == 2)
    q32, s32, z32 = (t.to(DEVICE) for t in _layer(16, 256, 32, False))
    with pytest.raises(ValueError, match="NB=2 spans 128 columns.*use NB = 1"):
        w4a16_tc_f16x2(torch.randn(4, 256).half().to(DEVICE), q32, s32, z32, 32, config=nb2)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 3, 8, 16, 17, 100, 300], ids=str)
@pytest.mark.parametrize("n,k", [(1000, 768), (257, 1280), (40, 200), (4096, 4096)], ids=str)
@pytest.mark.parametrize("g,symmetric", [(128, False), (32, False), (-1, True), (64, True)], ids=str)
def test_gpu_grid(m, n, k, g, symmetric):
    if g > 0 and k % g:
        pytest.skip(f"G={g} does not divide K={k}")
    _run(m, n, k, g, symmetric)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", get_autotune_configs() + get_medium_configs(), ids=label)
def test_gpu_every_config(cfg):
    for m in ((3, 16) if cfg.kwargs["BLOCK_M"] == 16 else (17, 200)):
        _run(m, 1000, 1280, 64 if cfg.kwargs["NB"] == 1 else 128, False, cfg,
             bias=True)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [40, 128, 512])
def test_gpu_tuned_large_m_dispatch(m, monkeypatch):
    """With tuning on, w4a16_gemm at M = 17..512 (fp16) times the tiled kernel, this one and dequant + cuBLAS, runs
    the fastest and stays right; the pick is recorded for the benchmark's report."""
    from kernels.w4a16_gemm import LARGE_M_PATHS, SMALL_M_PICKS, w4a16_gemm

    monkeypatch.setenv("QSCHED_AUTOTUNE", "1")
    qweight, scales, zeros = (t.cuda() for t in _layer(1000, 768, 128, False))
    x = torch.randn(m, 768, generator=torch.Generator().manual_seed(1)).half()
    out = w4a16_gemm(x.cuda(), qweight, scales, zeros, 128).cpu()
    assert_close_report(out, w4a16_gemm_ref(x, *(t.cpu() for t in (qweight, scales, zeros)), 128), TOL[torch.float16])
    bucket = (1000, 768, 1 << (m - 1).bit_length())
    picks = [p for (paths, key), p in SMALL_M_PICKS.items() if paths == LARGE_M_PATHS and key[:3] == bucket]
    assert picks and picks[-1][0] in LARGE_M_PATHS
