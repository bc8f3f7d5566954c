"""W4A16, W8A8 and W4A8 GEMMs against their `*_ref` (x @ dequantize(W)^T with the library's primitives).

CPU (TRITON_INTERPRET=1): small shapes, every M of the test grid (1, 2, 3, 15, 16, 17, 128, 1000) on one shape,
every group size and dtype on a few, every config of the small-M W4A16 kernels once.
GPU (`gpu` marker): the full product of shapes x group sizes x dtypes x M, every autotune config once (one test
each, so that pytest-xdist spreads the compiles), and the tuned small-M dispatch.
Shapes include K and N that are not multiples of the block sizes (K = 96, 200; N = 33, 257).
"""
import itertools

import pytest
import torch
import triton
from kernel_helpers import DEVICE, TOL, assert_close_report

from kernels._common import label
from kernels.act_quant import act_quant_int8_ref
from kernels.int4_pack import pack_int4_weight
from kernels.w4a8_gemm import get_autotune_configs as w4a8_configs
from kernels.w4a8_gemm import deq_configs as w4a8_deq_configs
from kernels.w4a8_gemm import dequant_act, w4a8_gemm, w4a8_gemm_ref
from kernels.w4a16_gemm import (
    SMALL_M_CONFIG,
    SMALL_M_PATHS,
    SMALL_M_PICKS,
    get_splitk_configs,
    w4a16_gemm,
    w4a16_gemm_ref,
    w4a16_tiled,
)
from kernels.w4a16_dequant import dequant_w4, dequant_w4_ref, w4a16_dequant_mm
from kernels.w4a16_dequant import configs_for as dequant_configs_for
from kernels.w4a16_dequant import get_autotune_configs as dequant_configs
from kernels.w4a16_gemm import get_autotune_configs as w4a16_configs
from kernels.w4a16_gemv import get_autotune_configs as w4a16_gemv_configs
from kernels.w4a16_gemv import w4a16_gemv
from kernels.w8a8_gemm import get_autotune_configs as w8a8_configs
from kernels.w8a8_gemm import get_tma_configs as w8a8_tma_configs
from kernels.w8a8_gemm import w8a8_gemm, w8a8_gemm_ref
from qsched_core.quant.primitives import choose_qparams, dequantize, quantize

M_ALL = [1, 2, 3, 15, 16, 17, 128, 1000]
DTYPES = [torch.float16, torch.bfloat16]
GROUPS = [32, 64, 128, -1]
CPU_SHAPES = [(33, 96), (40, 128), (24, 200)]  # (N, K)
GPU_SHAPES = [(1000, 768), (257, 1280)]  # N not a multiple of 16: one compile variant per kernel


def _valid(k, g):
    return g == -1 or k % g == 0


def make_w4(n, k, g, symmetric, seed=0):
    """(packed weight, scales, zeros) of a random (N, K) weight, quantized by the library."""
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    scale, zero = choose_qparams(w, 4, g, symmetric)
    q = quantize(w, scale, zero, 4, symmetric)
    return [t if t is None else t.to(DEVICE) for t in pack_int4_weight(q, scale, zero, symmetric)]


def run_w4a16(m, n, k, g, dtype, symmetric, bias=True, config=None, fn=w4a16_gemm):
    qweight, scales, zeros = make_w4(n, k, g, symmetric)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
    b = torch.randn(n).to(DEVICE) if bias else None
    out = fn(x, qweight, scales, zeros, g, b, config=config)
    assert_close_report(out, w4a16_gemm_ref(x, qweight, scales, zeros, g, b), TOL[dtype],
                        f"{fn.__name__} M={m} N={n} K={k} G={g} {dtype} sym={symmetric}")


def run_int8(kind, m, n, k, g, dtype, sym_acts, config=None, bias=True):
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1)) * 2
    qx, sx, zx = (t.to(DEVICE) for t in act_quant_int8_ref(x, sym_acts))
    zx = None if sym_acts else zx
    b = torch.randn(n).to(DEVICE) if bias else None
    if kind == "w8a8":
        w = torch.randn(n, k)
        sw, zw = choose_qparams(w, 8, -1, True)
        qw, sw = quantize(w, sw, zw, 8, True).to(DEVICE), sw.to(DEVICE)
        out = w8a8_gemm(qx, sx, zx, qw, sw, b, out_dtype=dtype, config=config)
        ref = w8a8_gemm_ref(qx, sx, zx, qw, sw, b, out_dtype=dtype)
    else:
        qweight, scales, _ = make_w4(n, k, g, True)
        out = w4a8_gemm(qx, sx, zx, qweight, scales, g, b, out_dtype=dtype, config=config)
        ref = w4a8_gemm_ref(qx, sx, zx, qweight, scales, g, b, out_dtype=dtype)
    # integer dots are exact; only the fp32 epilogue order and the output rounding differ
    assert_close_report(out, ref, TOL[dtype], f"{kind} M={m} N={n} K={k} G={g} {dtype} sym_acts={sym_acts}")


# ------------------------------------------------------------------------------------------------ CPU grid
@pytest.mark.parametrize("m", M_ALL)
def test_w4a16_every_m(m):
    run_w4a16(m, 33, 96, 32, torch.float16, True)
    if m > 16:  # the large-M kernels one by one (w4a16_gemm runs one of them without tuning)
        for fn in (w4a16_tiled, w4a16_dequant_mm):
            run_w4a16(m, 33, 96, 32, torch.float16, True, fn=fn)


@pytest.mark.parametrize("n,k,g,dtype,symmetric", [
    (n, k, g, d, s) for (n, k), g, d, s in itertools.product(CPU_SHAPES, GROUPS, DTYPES, [True, False])
    if _valid(k, g)], ids=str)
def test_w4a16_grid(n, k, g, dtype, symmetric):
    # M = 1: GEMV kernel (CUDA-core path); M = 3: the untuned small-M rule (fp16: the fp16x2 tensor-core kernel,
    # bf16: the split-K tiled kernel) and the GEMV kernel's tensor-core path; M = 17: tiled kernel
    for m, fn in [(1, w4a16_gemm), (3, w4a16_gemm), (3, w4a16_gemv), (17, w4a16_gemm)]:
        run_w4a16(m, n, k, g, dtype, symmetric, bias=symmetric, fn=fn)


@pytest.mark.parametrize("cfg", dequant_configs(), ids=label)
@pytest.mark.parametrize("n,k", CPU_SHAPES + [(70, 1000)], ids=str)
def test_dequant_w4_is_the_library_weight(n, k, cfg):
    """The dequantization of dequant + cuBLAS writes the library's weight bit for bit (every group size, both code
    ranges, both dtypes, K not a multiple of the tile, rows not a multiple of BLOCK_N), whatever its config."""
    for g, symmetric, dtype in itertools.product(GROUPS, [True, False], DTYPES):
        if not _valid(k, g) or cfg not in dequant_configs_for(g if g > 0 else 1 << 30):
            continue
        qweight, scales, zeros = make_w4(n, k, g, symmetric)
        out = dequant_w4(qweight, scales, zeros, k, g, dtype, config=cfg)
        ref = dequant_w4_ref(qweight, scales, zeros, k, g, dtype)
        assert out.dtype == dtype, out.dtype
        if dtype == torch.bfloat16 and DEVICE == "cpu":  # the interpreter casts fp32 to bf16 by truncation: 1 ulp
            exact = dequant_w4_ref(qweight, scales, zeros, k, g, torch.float32)
            err = (out.float() - exact).abs()
            assert (err <= exact.abs() * 2**-7).all() and (out.float().abs() <= exact.abs()).all()
        else:
            assert torch.equal(out, ref), (g, symmetric, dtype, (out != ref).sum().item())


def test_dequant_w4_sees_a_wrong_scale_and_rejects_bad_input():
    """The bit-exact check above can fail: one scale off by one fp16 step changes its group's weights. Bad
    arguments get errors that name the value."""
    qweight, scales, zeros = make_w4(33, 128, 64, False)
    bad = scales.clone()
    bad[3, 1] = torch.nextafter(bad[3, 1], torch.tensor(float("inf"), dtype=bad.dtype, device=bad.device))
    diff = dequant_w4(qweight, bad, zeros, 128, 64) != dequant_w4_ref(qweight, scales, zeros, 128, 64)
    assert diff.any() and not diff[3, :64].any() and not diff[:3].any() and not diff[4:].any()
    with pytest.raises(ValueError, match="float32"):
        dequant_w4(qweight, scales, zeros, 128, 64, dtype=torch.float32)
    with pytest.raises(ValueError, match="group_size"):
        dequant_w4(qweight, scales, zeros, 128, 48)
    with pytest.raises(ValueError, match="NB=2"):
        dequant_w4(qweight, scales, zeros, 128, 64, config=dequant_configs()[0])


@pytest.mark.parametrize("i,cfg", list(enumerate(w4a16_gemv_configs())),
                         ids=lambda v: str(v) if isinstance(v, int) else label(v))
def test_w4a16_gemv_every_config(i, cfg):
    """Every small-M config the GPU may pick: K = 200 ends in a partial tile (masked), K = 256 with G = 64 does not
    (EVEN_K, no masks) and puts four groups in a tile; fma configs run M = 1, 2, dot configs M = 3, 16."""
    n, k, g, symmetric = (24, 200, -1, True) if i % 2 else (40, 256, 64, False)
    for m in ((1, 2) if not cfg.kwargs["DOT"] else (3, 16)):
        run_w4a16(m, n, k, g, torch.float16 if m % 2 else torch.bfloat16, symmetric, bias=i % 2 == 0, config=cfg)


@pytest.mark.parametrize("k", [1000, 4096])
def test_w4a16_gemv_prefetch_across_tiles_and_slices(k):
    """PREFETCH carries the next tile's loads across loop rounds and K slices: K = 1000 (16 packing blocks, a partial
    last tile) and 4096 (64 blocks: several tiles per split-K slice) exercise it; K = 200 / 256 above have one tile."""
    for cfg in [c for c in w4a16_gemv_configs() if c.kwargs["PREFETCH"]]:
        for m in (1, 2):
            run_w4a16(m, 24, k, 128 if k % 128 == 0 else -1, torch.float16, k == 4096, bias=m == 1, config=cfg)


def test_w4a16_tiled_wide_tiles_and_errors():
    """The tiled kernel with NB = 2 packing blocks per iteration (K = 200: a partial last tile), and with split-K
    (the former small-M path); a tile may not straddle two groups; fma configs take at most 2 rows."""
    cfg = [c for c in w4a16_configs() if c.kwargs["NB"] == 2][0]
    for m, config in [(40, cfg), (3, SMALL_M_CONFIG)]:
        qweight, scales, zeros = make_w4(24, 200, -1, True)
        x = torch.randn(m, 200).half().to(DEVICE)
        assert_close_report(w4a16_tiled(x, qweight, scales, zeros, -1, config=config),
                            w4a16_gemm_ref(x, qweight, scales, zeros, -1), TOL[torch.float16], f"tiled M={m}")
    with pytest.raises(ValueError, match="more than one group"):
        qweight, scales, zeros = make_w4(24, 256, 64, True)
        w4a16_tiled(torch.randn(40, 256).half().to(DEVICE), qweight, scales, zeros, 64, config=cfg)
    fma = next(c for c in w4a16_gemv_configs() if not c.kwargs["DOT"])
    with pytest.raises(ValueError, match="fma config"):
        run_w4a16(3, 24, 256, 64, torch.float16, True, config=fma)


@pytest.mark.parametrize("m", M_ALL)
@pytest.mark.parametrize("kind", ["w8a8", "w4a8"])
def test_int8_every_m(kind, m):
    run_int8(kind, m, 33, 96, 32, torch.float16, sym_acts=kind == "w8a8")
    if kind == "w4a8" and m > 16:  # both W4A8 paths at every larger M (without tuning, M > 512 dequantizes)
        for cfg in (w4a8_configs()[0], w4a8_deq_configs(32)[0]):
            run_int8(kind, m, 33, 96, 32, torch.float16, False, config=cfg)


@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_w4a8_dequant_path_every_config(g, dtype):
    """W4A8 through dequantized operands and one matmul, every config of it for this group size, both activation
    code ranges, against the reference (the integer kernel's reference: the two paths compute the same numbers)."""
    for cfg in w4a8_deq_configs(g if g > 0 else 1 << 30):
        for sym in (True, False):
            run_int8("w4a8", 40, 33, 128, g, dtype, sym, config=cfg)


def test_dequant_act_is_the_library_activation_and_sees_a_wrong_scale():
    x = torch.randn(5, 300, generator=torch.Generator().manual_seed(3)) * 4
    qx, sx, zx = (t.to(DEVICE) for t in act_quant_int8_ref(x, False))
    ref = dequantize(qx, sx, zx).half()
    assert torch.equal(dequant_act(qx, sx, zx, torch.float16), ref)
    bad = sx.clone()
    bad[2] *= 1.5
    diff = (dequant_act(qx, bad, zx, torch.float16) != ref).any(dim=1)
    assert diff.tolist() == [False, False, True, False, False]


@pytest.mark.parametrize("kind,n,k,g,dtype,sym_acts", [
    (kind, n, k, g, d, s) for kind, (n, k), g, d, s in itertools.product(["w8a8", "w4a8"], CPU_SHAPES[:2], GROUPS,
                                                                          DTYPES, [True, False])
    if _valid(k, g) and (kind == "w4a8" or g == 32)], ids=str)
def test_int8_grid(kind, n, k, g, dtype, sym_acts):
    run_int8(kind, 3, n, k, g, dtype, sym_acts)


TMA_SMALL = triton.Config({"TMA": 1, "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 2, "FLATTEN": 1})


@pytest.mark.parametrize("m,n,k", [(50, 40, 96), (7, 33, 64), (33, 16, 80)], ids=str)  # edges: K % 32, M, N
@pytest.mark.parametrize("sym_acts", [True, False])
def test_w8a8_tma_kernel(m, n, k, sym_acts):
    """The persistent TMA kernel (tensor-descriptor loads, zero-filled past the edges; fewer programs than tiles,
    so each walks several) against the reference, with and without activation zero points."""
    run_int8("w8a8", m, n, k, -1, torch.float16, sym_acts, config=TMA_SMALL)


def test_w8a8_tma_refuses_k_not_a_multiple_of_16_and_misaligned_rows():
    sx, sw = torch.ones(2, 1, device=DEVICE), torch.ones(3, 1, device=DEVICE)
    qx, qw = torch.zeros(2, 40, dtype=torch.int8, device=DEVICE), torch.zeros(3, 40, dtype=torch.int8, device=DEVICE)
    with pytest.raises(ValueError, match="K=40"):
        w8a8_gemm(qx, sx, None, qw, sw, config=TMA_SMALL)
    shifted = torch.zeros(1 + 2 * 32, dtype=torch.int8, device=DEVICE)[1:].view(2, 32)  # contiguous, odd address
    with pytest.raises(ValueError, match="16-byte aligned"):
        w8a8_gemm(shifted, sx, None, torch.zeros(3, 32, dtype=torch.int8, device=DEVICE), sw, config=TMA_SMALL)


# ---------------------------------------------------------------------------------- the tests can fail
def test_wrong_scale_is_caught():
    """One doubled scale (a plausible packing bug) must fail the comparison with the reference."""
    qweight, scales, zeros = make_w4(33, 96, 32, True)
    x = torch.randn(2, 96).half().to(DEVICE)
    bad = scales.clone()
    bad[5, 1] *= 2
    with pytest.raises(AssertionError, match="max abs err"):
        assert_close_report(w4a16_gemm(x, qweight, bad, zeros, 32), w4a16_gemm_ref(x, qweight, scales, zeros, 32),
                            TOL[torch.float16])


def test_argument_errors():
    qweight, scales, zeros = make_w4(33, 96, 32, True)
    x = torch.randn(2, 96).half().to(DEVICE)
    with pytest.raises(ValueError, match="dtype"):
        w4a16_gemm(x.float(), qweight, scales, zeros, 32)
    with pytest.raises(ValueError, match="group_size=48"):
        w4a16_gemm(x, qweight, scales, zeros, 48)
    with pytest.raises(ValueError, match="qweight has shape"):
        w4a16_gemm(torch.randn(2, 200).half().to(DEVICE), qweight, scales, zeros, 32)
    with pytest.raises(ValueError, match="scales has shape"):
        w4a16_gemm(x, qweight, scales[:, :1].contiguous(), zeros, 32)
    qx = torch.zeros(2, 96, dtype=torch.int8, device=DEVICE)
    with pytest.raises(ValueError, match="sx has shape"):
        w8a8_gemm(qx, torch.ones(3, 1, device=DEVICE), None, qx, torch.ones(2, 1, device=DEVICE))


# ------------------------------------------------------------------------------------------------ GPU grid
# the M values of the GPU grid, grouped by the kernel (compile variant) that runs them without tuning
M_BY_KERNEL = {"gemv": [1], "splitk": [2, 3, 15, 16], "tiled": [17, 128], "dequant_mm": [1000], "int8": M_ALL}


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", list(M_BY_KERNEL))
@pytest.mark.parametrize("n,k", GPU_SHAPES, ids=str)
@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_full_grid(n, k, g, dtype, kernel):
    if not _valid(k, g):
        pytest.skip(f"G={g} does not divide K={k}")
    for m, symmetric in itertools.product(M_BY_KERNEL[kernel], [True, False]):
        if kernel != "int8":
            run_w4a16(m, n, k, g, dtype, symmetric, bias=symmetric)
            if kernel == "dequant_mm":  # the tiled kernel at the same M, which the tuner may pick instead
                run_w4a16(m, n, k, g, dtype, symmetric, bias=symmetric, fn=w4a16_tiled)
            continue
        run_int8("w4a8", m, n, k, g, dtype, sym_acts=symmetric)
        if g == GROUPS[0]:
            run_int8("w8a8", m, n, k, g, dtype, sym_acts=symmetric)


def _every_config():
    """(kernel, config) for every config a tuner may pick: GEMV, split-K tiled (small M), tiled, W8A8, W4A8."""
    return ([("gemv", c) for c in w4a16_gemv_configs()] + [("splitk", c) for c in get_splitk_configs()]
            + [("tiled", c) for c in w4a16_configs()] + [("w8a8", c) for c in w8a8_configs()]
            + [("w4a8", c) for c in w4a8_configs() + w4a8_deq_configs(32)] + [("w8a8", c) for c in w8a8_tma_configs()])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind,cfg", _every_config(), ids=lambda v: v if isinstance(v, str) else label(v))
def test_gpu_every_autotune_config(kind, cfg, dtype):
    """The tuners may pick any config: each must be right on its own."""
    if kind in ("gemv", "splitk"):
        fma = kind == "gemv" and not cfg.kwargs["DOT"]
        nb_ok = cfg.kwargs["NB"] == 1 or 64 * cfg.kwargs["NB"] <= 32  # a split-K tile may not straddle groups
        for m in ((1, 2) if fma else (1, 16)):
            run_w4a16(m, 1000, 768, 128, dtype, False, config=cfg)
            if kind == "gemv" or nb_ok:
                run_w4a16(m, 257, 1280, 32, dtype, True, config=cfg)
    elif kind == "tiled":
        run_w4a16(300, 1000, 768, -1, dtype, True, config=cfg)
    elif "TMA" in cfg.kwargs:  # right wherever it fits: the largest tiles run out of shared memory on some shapes
        from triton.runtime.errors import OutOfResources  # (N = 1000, bias, zero points), which the tuner skips

        for n, sym, bias in [(1024, True, False), (1000, True, True), (1000, False, True)]:
            try:
                run_int8(kind, 300, n, 768, -1, dtype, sym, config=cfg, bias=bias)
            except OutOfResources:
                pass
    else:
        run_int8(kind, 300, 1000, 768, -1 if kind == "w8a8" else 32, dtype, False, config=cfg)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 2, 5, 16])
def test_gpu_tuned_small_m_dispatch(m, monkeypatch):
    """With tuning on, w4a16_gemm times both small-M kernels, runs the faster, and stays right."""
    monkeypatch.setenv("QSCHED_AUTOTUNE", "1")
    run_w4a16(m, 1000, 768, 128, torch.float16, False)
    picks = [p for (paths, key), p in SMALL_M_PICKS.items() if key[:3] == (1000, 768, 1 << (m - 1).bit_length())]
    assert picks and picks[-1][0] in SMALL_M_PATHS, f"no small-M pick recorded for M={m}: {SMALL_M_PICKS}"


@pytest.mark.gpu
def test_gpu_tuned_w8a8_large_m_times_both_kernels(monkeypatch):
    """Above TMA_MIN_M rows, with tuning on, w8a8_gemm times the plain and the TMA configs together and stays right."""
    from kernels._common import TUNED

    monkeypatch.setenv("QSCHED_AUTOTUNE", "1")
    run_int8("w8a8", 1000, 1000, 768, -1, torch.float16, False)
    times = [t for (name, key), t in TUNED.items() if name == "w8a8_gemm" and key[:2] == (1000, 768)]
    ran = [c for c, us in times[-1].items() if us < float("inf")] if times else []
    assert any("TMA" in c for c in ran) and any("TMA" not in c for c in ran), times


@pytest.mark.gpu
def test_gpu_tuned_w4a8_times_both_paths(monkeypatch):
    """With tuning on, w4a8_gemm times the integer kernel and the dequantizing path together and stays right."""
    from kernels._common import TUNED

    monkeypatch.setenv("QSCHED_AUTOTUNE", "1")
    run_int8("w4a8", 1000, 1000, 768, 32, torch.float16, False)
    times = [t for (name, key), t in TUNED.items() if name == "w4a8_gemm" and key[:2] == (1000, 768)]
    ran = [c for c, us in times[-1].items() if us < float("inf")] if times else []
    assert any("DEQ_MM" in c for c in ran) and any("DEQ_MM" not in c for c in ran), times
