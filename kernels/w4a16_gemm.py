"""W4A16 GEMM: y = x @ dequantize(W)^T with packed int4 weights, group-wise scales (and zeros), fp16/bf16 x.

Why fuse the dequantization: reading 4-bit codes instead of fp16 moves ~3.9x fewer weight bytes, but only if the
fp16 weight never exists in memory: dequantizing first (torch: `dequantize` then F.linear) writes and re-reads the
full fp16 weight and is slower than plain fp16 at small M, where weight bytes take the time. Here each tile is
unpacked in registers right before `tl.dot`.

`w4a16_gemm` picks the kernel by M:
  - M <= 16, up to four candidate kernels, and on a GPU the fastest one per shape, as timed (`w4a16_small_m`):
    `w4a16_gemv` (w4a16_gemv.py), a stream over the weight bytes with split-K and int32-word loads;
    `w4a16_gemv_f16x2` (w4a16_gemv_f16x2.py), fp16x2 arithmetic for fp16 x at M <= 2 (GPU only);
    `w4a16_tc_f16x2` (w4a16_tc_f16x2.py), fp16x2 dequantization feeding the tensor cores, for fp16 x; and
    `w4a16_gemm_kernel` below with 16-row tiles and split-K (partial sums added into a zeroed output; the repo's
    first small-M path). Each is tuned over its own configs (`tune`: CUDA-graph replays, L2 flushed per call) and
    the fastest winner runs. In the H200 runs, the fp16x2 GEMV won at M = 1 on every layer >= 32 MB and the
    tensor-core kernel from M = 2-4 to 16 (results/kernels.md);
    without tuning (QSCHED_AUTOTUNE=0, the interpreter) the fixed rule is `static_small_m_config`.
  - M > 16: `w4a16_gemm_kernel`, output tiles as in the Triton matmul tutorial (`w4a16_tiled`), and two others
    that a GPU which tunes times beside it (`w4a16_large_m`): `w4a16_tc_f16x2` with 64- or 128-row blocks of x
    (fp16 x, up to MEDIUM_MAX_M rows), and `w4a16_dequant_mm` (w4a16_dequant.py: the fp16 weight written once,
    then cuBLAS; at large M the multiply-adds, not the weight bytes, take the time). Without tuning: the tiled
    kernel up to MEDIUM_MAX_M rows, dequant + cuBLAS above.
The tiled kernel's K loop steps NB 64-column packing blocks at a time (layout in int4_pack.py): one dot on the
low-nibble planes (columns 0..31 of each block), one on the high planes (32..63). Each tile is dequantized in
registers, (q - z) * s rounded to x's dtype exactly as the torch path rounds its dequantized weight, and accumulated
in place in fp32. A tile never straddles two groups (NB = 1, or 64 NB <= G), so each plane needs one scale vector.

What we tried first: multiplying each plane's dot result by its scale (exact integer dots) instead of scaling the
weights. It is more exact but keeps three (BLOCK_M, BLOCK_N) fp32 tiles live, spilled registers at large tiles and
ran 6x slower than cuBLAS at M = 4096.

Notation: M tokens, K input features, N output features, G group size (32, multiples of 64, or -1 = per channel),
B = 4 bits. x (M, K) fp16/bf16; qweight (N, Kp // 2) uint8; scales (N, K // G) fp16; zeros (N, K // G) uint8
(nibble domain) or None for symmetric codes; y (M, N) in x's dtype.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

from qsched_core.quant.primitives import dequantize

from ._common import (
    FLOAT_ACTS,
    autotune_enabled,
    autotuner,
    cdiv,
    flatten_rows,
    float_dot_dtype,
    launch,
    tune,
    tuned_us,
)
from .int4_pack import HALF, check_w4_args, unpack_int4_ref
from .w4a16_dequant import configs_for as dequant_configs_for
from .w4a16_dequant import w4a16_dequant_mm
from .w4a16_gemv import MAX_M as GEMV_MAX_M
from .w4a16_gemv import _configs_for as gemv_configs_for
from .w4a16_gemv import w4a16_gemv
from .w4a16_gemv_f16x2 import eligible as f16x2_eligible
from .w4a16_gemv_f16x2 import get_autotune_configs as f16x2_configs
from .w4a16_gemv_f16x2 import w4a16_gemv_f16x2
from .w4a16_tc_f16x2 import configs_for as tc_configs_for
from .w4a16_tc_f16x2 import eligible as tc_eligible
from .w4a16_tc_f16x2 import w4a16_tc_f16x2

# the first small-M path: 16-row output tiles, K split in 8 slices
SMALL_M_CONFIG = triton.Config({"BLOCK_M": 16, "BLOCK_N": 64, "SPLIT_K": 8, "NB": 2}, num_warps=4, num_stages=4)
SMALL_M_PICKS: dict[tuple, tuple[str, triton.Config]] = {}  # (paths, tuning key) -> (path, config) to run
SMALL_M_PATHS = ("gemv", "splitk", "f16x2", "tc_f16x2")  # the small-M kernels w4a16_small_m chooses among
LARGE_M_PATHS = ("tiled", "tc_f16x2", "dequant_mm")  # what w4a16_large_m chooses among, M > 16
MEDIUM_MAX_M = 512  # w4a16_tc_f16x2 takes part up to here (at M = 512 it ran at half of cuBLAS's speed)


@lru_cache(maxsize=1)
def get_splitk_configs() -> list[triton.Config]:
    """The split-K tiled kernel's small-M candidates (BLOCK_M = 16): tile width, K slices, packing blocks."""
    return [SMALL_M_CONFIG] + [
        triton.Config({"BLOCK_M": 16, "BLOCK_N": bn, "SPLIT_K": sk, "NB": nb}, num_warps=w, num_stages=st)
        for bn, sk, nb, w, st in [(64, 4, 2, 4, 4), (128, 8, 2, 4, 4), (32, 8, 2, 4, 4), (64, 16, 1, 4, 4),
                                  (64, 8, 1, 4, 4), (128, 4, 1, 8, 3)]]


def get_autotune_configs() -> list[triton.Config]:
    """Small list on purpose: each config is one compile (~1 s) and one timing per new (N, K, M bucket) on the GPU.

    NB = packing blocks per loop iteration (BLOCK_K = 64 NB columns): more bytes in flight per iteration. A tile
    must not straddle two groups, so configs with 64 NB > G are dropped for that G (see `_configs_for`).
    """
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "SPLIT_K": 1, "NB": nb}, num_warps=w, num_stages=st)
            for bm, bn, nb, w, st in [(64, 128, 1, 4, 4), (128, 128, 2, 8, 3), (128, 256, 1, 8, 3), (64, 64, 2, 4, 4)]]


def _fits(cfg: triton.Config, group: int) -> bool:
    return cfg.kwargs["NB"] == 1 or 64 * cfg.kwargs["NB"] <= group  # a tile must not straddle two groups


def _configs_for(group: int) -> list[triton.Config]:
    return [c for c in get_autotune_configs() if _fits(c, group)]


def static_small_m_config(m: int, group: int, f16x2_ok: bool = False, tc_ok: bool = False) -> triton.Config:
    """The small-M choice without tuning: at M = 1 and 2 the fp16x2 GEMV where it can run (fp16 x on a GPU), else at
    M = 1 the GEMV kernel's CUDA-core path; at M = 3..16 the fp16x2 tensor-core kernel for fp16 x, else the split-K
    tiled kernel (the faster ones in the measured cases, results/kernels.md)."""
    if m <= 2 and f16x2_ok:
        return f16x2_configs()[0]
    if m == 1:
        return next(c for c in gemv_configs_for(1) if not c.kwargs["DOT"])
    if tc_ok and m > 2:
        return tc_configs_for(group)[0]
    return next(c for c in get_splitk_configs() if _fits(c, group))


@triton.jit(do_not_specialize=["M", "M_BUCKET"])  # one compile for every M
def w4a16_gemm_kernel(
    # pointers
    x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr,
    # sizes (M_BUCKET = next power of two of M, only an autotuning key)
    M, N, K, M_BUCKET,
    # strides (unit stride along K / N is required by the launcher)
    stride_xm, stride_wn, stride_sn, stride_ym,
    # meta-parameters
    GROUP: tl.constexpr, HAS_ZEROS: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_DTYPE: tl.constexpr,
    HALF_BLOCK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr,
    NB: tl.constexpr,
):
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    i = tl.arange(0, NB * HALF_BLOCK)  # byte of the tile; its low nibble is column 64 (i // 32) + i % 32 of the tile
    col = (i // HALF_BLOCK) * 2 * HALF_BLOCK + i % HALF_BLOCK
    mask_m, mask_n = offs_m < M, offs_n < N
    # this program's slice of the K tiles (a tile = NB packing blocks = 64 NB columns)
    n_tiles = tl.cdiv(K, 2 * HALF_BLOCK * NB)
    per_split = tl.cdiv(n_tiles, SPLIT_K)
    tile_end = tl.minimum((pid_k + 1) * per_split, n_tiles)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for tile in range(pid_k * per_split, tile_end):
        k0 = tile * 2 * HALF_BLOCK * NB  # first column of the tile
        k_lo = k0 + col  # (NB * 32,) columns of the low nibbles; high nibbles are k_lo + 32
        k_hi = k_lo + HALF_BLOCK
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + (tile * HALF_BLOCK * NB + i)[:, None],
                    mask=mask_n[None, :] & (k_lo[:, None] < K), other=0)  # (NB * 32, BLOCK_N) uint8
        x_lo = tl.load(x_ptr + offs_m[:, None] * stride_xm + k_lo[None, :],
                       mask=mask_m[:, None] & (k_lo[None, :] < K), other=0.0)  # (BLOCK_M, NB * 32)
        x_hi = tl.load(x_ptr + offs_m[:, None] * stride_xm + k_hi[None, :],
                       mask=mask_m[:, None] & (k_hi[None, :] < K), other=0.0)
        # one group per plane: NB = 1 (each 32-column plane lies in one group, G >= 32), or 64 NB <= G
        g_lo, g_hi = k0 // GROUP, (k0 + HALF_BLOCK) // GROUP
        s_lo = tl.load(s_ptr + offs_n * stride_sn + g_lo, mask=mask_n, other=0.0).to(tl.float32)
        s_hi = tl.load(s_ptr + offs_n * stride_sn + g_hi, mask=mask_n & (k0 + HALF_BLOCK < K), other=0.0)
        u_lo, u_hi = (w & 0xF).to(tl.int32), (w >> 4).to(tl.int32)
        if HAS_ZEROS:
            z_lo = tl.load(z_ptr + offs_n * stride_sn + g_lo, mask=mask_n, other=0).to(tl.int32)
            z_hi = tl.load(z_ptr + offs_n * stride_sn + g_hi, mask=mask_n & (k0 + HALF_BLOCK < K), other=0)
            u_lo, u_hi = u_lo - z_lo[None, :], u_hi - z_hi.to(tl.int32)[None, :]
        else:
            u_lo, u_hi = u_lo - 8, u_hi - 8  # symmetric codes were stored as q + 8
        # dequantize in registers: (q - z) * s, rounded to x's dtype like the torch path's weight
        w_lo = (u_lo.to(tl.float32) * s_lo[None, :]).to(DOT_DTYPE)
        w_hi = (u_hi.to(tl.float32) * s_hi.to(tl.float32)[None, :]).to(DOT_DTYPE)
        acc = tl.dot(x_lo.to(DOT_DTYPE), w_lo, acc)  # (BLOCK_M, BLOCK_N) fp32, accumulated in place
        acc = tl.dot(x_hi.to(DOT_DTYPE), w_hi, acc)
    if HAS_BIAS:  # only the first K slice adds the bias
        bias = tl.load(b_ptr + offs_n, mask=mask_n & (pid_k == 0), other=0.0).to(tl.float32)
        acc += bias[None, :]
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    if SPLIT_K == 1:
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        tl.atomic_add(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask, sem="relaxed")


_tuned: dict[int, object] = {}


def _kernel(group: int):
    """The autotuned tiled kernel for one group size (configs whose tile would straddle two groups removed)."""
    key = min(group, 256)
    if key not in _tuned:
        _tuned[key] = autotuner(w4a16_gemm_kernel, _configs_for(group))
    return _tuned[key]


def w4a16_gemm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
               group_size: int = 128, bias: torch.Tensor | None = None,
               config: triton.Config | None = None) -> torch.Tensor:
    """y = x @ W^T (+ bias) with W = (codes - zero) * scale from `pack_int4_weight`; x (..., K) fp16/bf16.

    M <= 16 rows run on the fastest small-M kernel (`w4a16_small_m`), more rows on a GPU that tunes on the fastest
    of the tiled kernel, dequant + cuBLAS and (fp16 x, M <= MEDIUM_MAX_M) `w4a16_tc_f16x2` (`w4a16_large_m`); without
    tuning on the tiled kernel up to MEDIUM_MAX_M rows and dequant + cuBLAS above. `config` forces one configuration
    (its keys name its kernel; tests, benchmarks).
    """
    m = x.reshape(-1, x.shape[-1]).shape[0]
    if m > GEMV_MAX_M:
        if config is not None:
            return _small_m_kernel(_path_of(config))(x, qweight, scales, zeros, group_size, bias, config)
        if autotune_enabled():
            return w4a16_large_m(x, qweight, scales, zeros, group_size, bias)
        large = w4a16_dequant_mm if m > MEDIUM_MAX_M else w4a16_tiled
        return large(x, qweight, scales, zeros, group_size, bias)
    if config is None:
        return w4a16_small_m(x, qweight, scales, zeros, group_size, bias)
    kernel = _small_m_kernel(_path_of(config))
    return kernel(x, qweight, scales, zeros, group_size, bias, config)  # a config of one of the small-M kernels


def _small_m_kernel(path: str):
    """The launcher of a path (a config's keys name it: `_path_of`); "splitk" and "tiled" are the same kernel."""
    return {"f16x2": w4a16_gemv_f16x2, "gemv": w4a16_gemv, "splitk": w4a16_tiled, "tiled": w4a16_tiled,
            "tc_f16x2": w4a16_tc_f16x2, "dequant_mm": w4a16_dequant_mm}[path]


def _path_of(cfg: triton.Config) -> str:
    kw = cfg.kwargs
    return ("f16x2" if "F16X2" in kw else "tc_f16x2" if "TC" in kw else "gemv" if "DOT" in kw
            else "dequant_mm" if "DEQ_MM" in kw else "splitk")  # or tiled


def w4a16_small_m(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                  group_size: int = 128, bias: torch.Tensor | None = None,
                  paths: tuple[str, ...] = SMALL_M_PATHS) -> torch.Tensor:
    """M <= 16 on the fastest of `paths` ("gemv": w4a16_gemv, "splitk": the tiled kernel with split-K, "f16x2":
    w4a16_gemv_f16x2, which takes part only where it can run: fp16 x, M <= 2, K % 4 == 0, a GPU; "tc_f16x2":
    w4a16_tc_f16x2, fp16 x), each tuned over its own configs for this shape; without tuning,
    `static_small_m_config` (arguments as w4a16_gemm)."""
    checked = check_w4_args(x, qweight, scales, zeros, group_size, bias, FLOAT_ACTS)  # (K, N, group), once
    k, n, group = checked
    m = x.numel() // k if k else 0
    if m > GEMV_MAX_M:
        raise ValueError(f"w4a16_small_m takes at most {GEMV_MAX_M} rows of x, got M={m}; use w4a16_gemm")
    unknown = set(paths) - set(SMALL_M_PATHS)
    if unknown or not paths:
        raise ValueError(f"paths={paths!r}: choose among {SMALL_M_PATHS}")
    why_not = {"f16x2": f16x2_eligible(x), "tc_f16x2": tc_eligible(x)}
    runnable = tuple(p for p in paths if why_not.get(p) is None)
    if not runnable:
        raise ValueError(f"paths={paths!r}: " + "; ".join(why_not[p] for p in paths))

    def run(cfg: triton.Config) -> torch.Tensor:  # the arguments were checked above: the launchers skip it
        kernel = _small_m_kernel(_path_of(cfg))
        return kernel(x, qweight, scales, zeros, group_size, bias, config=cfg, checked=checked)

    if not autotune_enabled():
        cfg = static_small_m_config(m, group, "f16x2" in runnable, "tc_f16x2" in runnable)
        if _path_of(cfg) not in runnable:  # the fixed rule's kernel was excluded: the first of the others
            cfg = (next(c for c in gemv_configs_for(m) if c.kwargs["DOT"] == int(m > 1)) if "gemv" in runnable
                   else next(c for c in get_splitk_configs() if _fits(c, group)))
        return run(cfg)
    key = (n, k, triton.next_power_of_2(m), group, zeros is not None, bias is not None, x.dtype)

    def candidates() -> dict[str, list[triton.Config]]:  # built only when this shape is tuned
        return {"gemv": gemv_configs_for(m), "splitk": [c for c in get_splitk_configs() if _fits(c, group)],
                "f16x2": f16x2_configs(), "tc_f16x2": list(tc_configs_for(group))}

    return run(_fastest(runnable, key, candidates, run))


def _fastest(paths: tuple[str, ...], key: tuple, candidates, run) -> triton.Config:
    """The config to run for this shape `key`: each of `paths` tuned over its configs (`candidates()[path]`), the
    fastest winner in the same timing; remembered in SMALL_M_PICKS per (paths, key), so tuning happens once."""
    pick = SMALL_M_PICKS.get((paths, key))
    if pick is None:
        configs = candidates()
        best = {p: tune(f"w4a16_{p}", key, configs[p], run) for p in paths}
        path = min(paths, key=lambda p: tuned_us(f"w4a16_{p}", key))
        pick = SMALL_M_PICKS[(paths, key)] = (path, best[path])
    return pick[1]


def w4a16_large_m(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                  group_size: int = 128, bias: torch.Tensor | None = None,
                  paths: tuple[str, ...] = LARGE_M_PATHS) -> torch.Tensor:
    """M > 16 on a GPU that tunes: the fastest of `paths`, each tuned over its own configs for this shape, as
    w4a16_small_m does: "tiled" (the tiled kernel), "dequant_mm" (the fp16 weight written once, then cuBLAS) and
    "tc_f16x2" (w4a16_tc_f16x2 with 64- or 128-row blocks of x), which takes part for fp16 x up to MEDIUM_MAX_M rows.
    """
    checked = check_w4_args(x, qweight, scales, zeros, group_size, bias, FLOAT_ACTS)
    k, n, group = checked
    m = x.numel() // k if k else 0
    key = (n, k, triton.next_power_of_2(m), group, zeros is not None, bias is not None, x.dtype)
    unknown = set(paths) - set(LARGE_M_PATHS)
    if unknown or not paths:
        raise ValueError(f"paths={paths!r}: choose among {LARGE_M_PATHS}")
    tc_why = tc_eligible(x) or (f"w4a16_tc_f16x2 takes part up to MEDIUM_MAX_M={MEDIUM_MAX_M} rows, got M={m}"
                                if m > MEDIUM_MAX_M else None)
    runnable = tuple(p for p in paths if p != "tc_f16x2" or tc_why is None)
    if not runnable:
        raise ValueError(f"paths={paths!r}: {tc_why}")

    def run(cfg: triton.Config) -> torch.Tensor:  # a tiled config has no path key: w4a16_tiled, as for split-K
        return _small_m_kernel(_path_of(cfg))(x, qweight, scales, zeros, group_size, bias, config=cfg, checked=checked)

    def candidates() -> dict[str, list[triton.Config]]:
        return {"tiled": _configs_for(group), "tc_f16x2": list(tc_configs_for(group, True)),
                "dequant_mm": dequant_configs_for(group)}

    return run(_fastest(runnable, key, candidates, run))


def w4a16_tiled(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                group_size: int = 128, bias: torch.Tensor | None = None,
                config: triton.Config | None = None, *, checked: tuple[int, int, int] | None = None) -> torch.Tensor:
    """The tiled kernel at any M (w4a16_gemm sends it M > 16); arguments as w4a16_gemm; `checked` as in
    w4a16_gemv."""
    k, n, group = checked or check_w4_args(x, qweight, scales, zeros, group_size, bias, FLOAT_ACTS)
    x2 = flatten_rows(x)  # (..., K) -> (M, K)
    m = x2.shape[0]
    if config is not None and config.kwargs["NB"] > 1 and 64 * config.kwargs["NB"] > group:
        raise ValueError(f"config NB={config.kwargs['NB']} spans {64 * config.kwargs['NB']} columns, more than one "
                         f"group of {group_size}; use NB = 1")
    split = config is not None and config.kwargs["SPLIT_K"] > 1
    # split-K adds partial sums into a zeroed output with atomics: fp16 natively, bf16 through an fp32 buffer
    acc_dtype = torch.float32 if split and x.dtype == torch.bfloat16 else x.dtype
    y = (torch.zeros if split else torch.empty)(m, n, dtype=acc_dtype, device=x.device)
    args = (x2, qweight, scales, zeros if zeros is not None else scales, bias if bias is not None else scales, y,
            m, n, k, min(triton.next_power_of_2(m), 4096), x2.stride(0), qweight.stride(0), scales.stride(0),
            y.stride(0))
    meta = dict(GROUP=group, HAS_ZEROS=zeros is not None, HAS_BIAS=bias is not None,
                DOT_DTYPE=float_dot_dtype(x.dtype), HALF_BLOCK=HALF)
    grid = lambda c: (cdiv(m, c["BLOCK_M"]), cdiv(n, c["BLOCK_N"]), c["SPLIT_K"])
    interp = triton.Config({"BLOCK_M": 16 if m <= GEMV_MAX_M else 128, "BLOCK_N": 32, "SPLIT_K": 1, "NB": 1})
    launch(w4a16_gemm_kernel, lambda: _kernel(group), grid, args, meta, config, interp)
    return y.to(x.dtype).reshape(*x.shape[:-1], n)


def w4a16_gemm_ref(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                   group_size: int = 128, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ dequantize(unpack(qweight))^T in fp32, cast to x's dtype: the library is the reference."""
    k = x.shape[-1]
    symmetric = zeros is None
    q = unpack_int4_ref(qweight, k, symmetric)  # (N, K) codes as `quantize` returns them
    zero = torch.zeros_like(scales, dtype=torch.int32) if symmetric else zeros.to(torch.int32)
    w = dequantize(q, scales.float(), zero)  # (N, K) fp32; per-channel scales (N, 1) broadcast over K
    y = x.float() @ w.T
    return (y if bias is None else y + bias.float()).to(x.dtype)
