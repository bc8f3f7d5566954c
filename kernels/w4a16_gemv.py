"""W4A16 at small M (decoding, batch-1 denoising): y = x @ dequantize(W)^T as a stream over the int4 weight bytes.

Why a separate kernel: at M = 1..16 a linear layer does 2 M flops per weight and reads 0.5 byte per weight, so its
time is weight bytes / memory bandwidth, and a good kernel reads each byte once, with many bytes in flight. An
8192 x 8192 layer is 32 MiB of int4 codes (+ 1.5 MiB of scales and zeros), a quarter of the 128 MiB that cuBLAS
reads in fp16, so the limit is ~3.9x over cuBLAS. The design here (GemLite-style):

  - each program owns BLOCK_N output rows and a slice of K (split-K: SPLIT_K slices whose partial sums meet in the
    output through atomic adds), so even a 4096-wide layer launches hundreds of programs;
  - weights are read as int32 words, 8 codes each, in (BLOCK_N, NB, 8) tiles: NB packing blocks of 64 columns =
    32 bytes per row (layout in int4_pack.py), 16-byte vector loads, ITERS tiles unrolled per loop step;
  - a code becomes a float without an int -> float conversion (a slow instruction): OR-ing the 4 bits into the
    mantissa of 2^23 gives the fp32 number 2^23 + u exactly, and subtracting 2^23 + z gives u - z;
  - group scales are applied per (row, block, nibble plane), not per weight.

Two ways to do the multiply-add, chosen per shape by timing (`tune` in _common.py):
  - "fma" (DOT = 0, M <= 2): one program per row of x on the CUDA cores: acc += (u - z) * x in fp32, summed over
    each block and multiplied by its scale. No tensor cores, no shared memory, no layout conversion.
  - "dot" (DOT = 1, M <= 16): the weights are the *left* operand of tl.dot, (BLOCK_N, 8 NB) @ (8 NB, 16) with x^T
    on the right (the "swap AB" trick: the 16-wide tensor-core side is the padded M). The tile is dequantized,
    (u - z) * s rounded to x's dtype, like the torch path's weight.

Measured: results/kernels.md (cuBLAS ratios, TB/s against the measured copy bandwidth); far from the byte limit:
the weight loads feed register arithmetic, so Triton does not pipeline them, and each program waits for its tile
before it computes (kernels/bench_notes.md has the analysis and the next steps). `w4a16_gemm` runs this kernel only
where it beats the split-K tiled kernel (w4a16_gemm.py).

Notation: M tokens, K input features, N output features, G group size (32, multiples of 64, -1), B = 4 bits,
KW = Kp // 8 int32 words per weight row. x (M, K) fp16/bf16; qweight (N, Kp // 2) uint8, read as (N, KW) int32;
scales (N, K // G) fp16; zeros (N, K // G) uint8 or None (symmetric: the stored nibble is q + 8); y (M, N).
The column of nibble p (bits 4p..4p+3) of word j of block b: 64 b + 32 (p % 2) + 4 j + p // 2.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

from ._common import (
    FLOAT_ACTS,
    autotune_enabled,
    cdiv,
    flatten_rows,
    float_dot_dtype,
    interpreting,
    tune,
)
from .int4_pack import check_w4_args

MAGIC_BITS = 0x4B000000  # the bits of the fp32 2^23: OR-ing an integer u < 2^23 into them gives 2^23 + u
FMA_MAX_M = 2  # above this, M passes over the tile on the CUDA cores cost more than the tensor-core path
MAX_M = 16


def get_autotune_configs() -> list[triton.Config]:
    """Candidates timed per (N, K, M bucket): DOT picks the multiply-add, the rest the tile and the split of K.

    Tile bytes per row = 32 NB; a program reads ITERS tiles per loop step, and SPLIT_K programs share one row block
    (SPLIT_K = 1: no atomics and no zeroed output). In the fma path most configs give each thread 16-32 words of
    4-8 rows, so that one load of x serves 4-8 rows (the floor is 3 instructions per weight: AND-OR, subtract,
    multiply-add). PREFETCH = 1 (fma path only) issues the loads of the next tile before the arithmetic of the
    current one, a register double buffer: Triton pipelines loads only when they feed tl.dot, so without it each
    program waits for its tile's words before it computes.
    """
    fma = [(64, 4, 1, 8, 4, 0), (128, 4, 1, 8, 4, 0), (64, 4, 1, 8, 2, 0), (64, 8, 1, 4, 8, 0), (32, 8, 1, 8, 4, 0),
           (64, 4, 2, 4, 4, 0), (128, 2, 1, 16, 4, 0), (16, 8, 1, 1, 2, 0), (32, 4, 2, 1, 2, 0),
           (64, 4, 1, 8, 4, 1), (128, 4, 1, 8, 4, 1), (64, 8, 1, 4, 8, 1), (32, 8, 1, 8, 4, 1)]
    dot = [(64, 2, 2, 8, 4, 0), (64, 4, 1, 8, 4, 0), (64, 4, 2, 4, 4, 0), (128, 2, 2, 8, 8, 0), (128, 4, 1, 8, 8, 0),
           (64, 2, 1, 16, 4, 0)]
    return [triton.Config({"DOT": d, "BLOCK_N": bn, "NB": nb, "ITERS": it, "SPLIT_K": sk, "PREFETCH": pf},
                          num_warps=w, num_stages=2)
            for d, table in ((0, fma), (1, dot)) for bn, nb, it, sk, w, pf in table]


@triton.jit
def _load_tile(w_ptr, s_ptr, z_ptr, rows, tile, N, K, KW, stride_wn, stride_sn, GROUP: tl.constexpr,
               HAS_ZEROS: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, NB: tl.constexpr):
    """Tile `tile` (blocks NB tile .. NB tile + NB - 1) of `rows`: the int32 words (BLOCK_N, NB, 8) and the same
    shifted right by 12 bits; per (row, block) the scale and zero of the low-nibble plane (columns 0..31 of the
    block) and of the high one (32..63), (BLOCK_N, NB) fp32. EVEN_K: the tile lies inside K (no column masks)."""
    word = tile * 8 * NB + tl.arange(0, 8 * NB)  # (8 NB,) the tile's words: contiguous in the row
    col = (tile * NB + tl.arange(0, NB)) * 64  # (NB,) first column of each block
    rmask = rows < N
    if EVEN_K:
        w_mask, m_lo, m_hi = rmask[:, None], rmask[:, None], rmask[:, None]
    else:
        w_mask = rmask[:, None] & (word < KW)[None, :]
        m_lo, m_hi = rmask[:, None] & (col < K)[None, :], rmask[:, None] & (col + 32 < K)[None, :]
    words = tl.load(w_ptr + rows[:, None] * stride_wn + word[None, :], mask=w_mask, other=0)  # (BLOCK_N, 8 NB)
    words = tl.reshape(words, (BLOCK_N, NB, 8))  # (row, block, word in block); 16-byte vector loads above
    g_lo, g_hi = col // GROUP, (col + 32) // GROUP  # group of each plane (equal unless G = 32)
    s_ptrs = s_ptr + rows[:, None] * stride_sn
    s_lo = tl.load(s_ptrs + g_lo[None, :], mask=m_lo, other=0.0).to(tl.float32)  # (BLOCK_N, NB)
    s_hi = tl.load(s_ptrs + g_hi[None, :], mask=m_hi, other=0.0).to(tl.float32)
    if HAS_ZEROS:
        z_ptrs = z_ptr + rows[:, None] * stride_sn
        z_lo = tl.load(z_ptrs + g_lo[None, :], mask=m_lo, other=0).to(tl.float32)
        z_hi = tl.load(z_ptrs + g_hi[None, :], mask=m_hi, other=0).to(tl.float32)
    else:  # symmetric codes were stored as q + 8
        z_lo = s_lo * 0.0 + 8.0
        z_hi = z_lo
    return words, words >> 12, s_lo, s_hi, z_lo, z_hi


@triton.jit
def _nibble(words, high, P: tl.constexpr, magic):
    """Nibble P of each word as the fp32 2^23 + 16^Q u, exactly (Q = P for P < 5, else P - 3, read from words >> 12).

    The nibble is AND-ed in place (no shift) and OR-ed into the mantissa of 2^23 (no int -> float conversion, a slow
    instruction); `magic` = 0x4B000000 arrives as a kernel argument so the AND and the OR compile to one LOP3.
    """
    if P < 5:
        v = (words & (0xF << (4 * P))) | magic
    else:
        v = (high & (0xF << (4 * (P - 3)))) | magic
    return v.to(tl.float32, bitcast=True)


@triton.jit
def _write(y_ptrs, acc, mask, ATOMIC: tl.constexpr):
    """Plain store, or an atomic add of this K slice's partial sums into the zeroed output."""
    if ATOMIC:
        tl.atomic_add(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask, sem="relaxed")
    else:
        tl.store(y_ptrs, acc.to(y_ptrs.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["M"])
def w4a16_gemv_kernel(
    # pointers (w_ptr: the packed weight read as int32 words)
    x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr,
    # sizes
    M, N, K, KW,
    # strides (unit stride along K / N)
    stride_xm, stride_wn, stride_sn, stride_ym,
    # numbers
    magic,
    # meta-parameters
    GROUP: tl.constexpr, HAS_ZEROS: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_DTYPE: tl.constexpr,
    ATOMIC: tl.constexpr, EVEN_K: tl.constexpr, DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    NB: tl.constexpr, ITERS: tl.constexpr, SPLIT_K: tl.constexpr, PREFETCH: tl.constexpr,
):
    pid_n, pid_k, pid_m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    b, j = tl.arange(0, NB), tl.arange(0, 8)
    # this program's slice of the K steps (a step = ITERS tiles of NB blocks)
    n_steps = tl.cdiv(KW, 8 * NB * ITERS)
    per_split = tl.cdiv(n_steps, tl.num_programs(1))
    if DOT:
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        i = tl.arange(0, 8 * NB)  # position along the dot's K: block i // 8, word i % 8
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if PREFETCH:  # the slice's first tile, loaded before the loop; masked, like every prefetch (it may lie past K)
        nw, nh, ns_lo, ns_hi, nz_lo, nz_hi = _load_tile(w_ptr, s_ptr, z_ptr, rows, pid_k * per_split * ITERS, N, K,
                                                        KW, stride_wn, stride_sn, GROUP, HAS_ZEROS, False, BLOCK_N, NB)
    for step in range(pid_k * per_split, tl.minimum((pid_k + 1) * per_split, n_steps)):
        for it in tl.static_range(ITERS):
            tile = step * ITERS + it
            if PREFETCH:  # use the tile loaded one round earlier; start loading the next one now
                words, high, s_lo, s_hi, z_lo, z_hi = nw, nh, ns_lo, ns_hi, nz_lo, nz_hi
                nw, nh, ns_lo, ns_hi, nz_lo, nz_hi = _load_tile(w_ptr, s_ptr, z_ptr, rows, tile + 1, N, K, KW,
                                                                stride_wn, stride_sn, GROUP, HAS_ZEROS, False,
                                                                BLOCK_N, NB)
            else:
                words, high, s_lo, s_hi, z_lo, z_hi = _load_tile(w_ptr, s_ptr, z_ptr, rows, tile, N, K, KW,
                                                                 stride_wn, stride_sn, GROUP, HAS_ZEROS, EVEN_K,
                                                                 BLOCK_N, NB)
            if DOT:
                for p in tl.static_range(8):  # one dot per nibble position: (BLOCK_N, 8 NB) @ (8 NB, BLOCK_M)
                    if p % 2 == 0:
                        s, z = s_lo, z_lo
                    else:
                        s, z = s_hi, z_hi
                    unit = 1 << (4 * (p - 3 * (p // 5)))  # 16^Q of _nibble
                    zz = 8388608.0 + z * unit  # (BLOCK_N, NB): 2^23 + 16^Q z
                    w = ((_nibble(words, high, p, magic) - zz[:, :, None]) * (s * (1.0 / unit))[:, :, None])
                    c = tile * NB * 64 + (i // 8) * 64 + 32 * (p % 2) + 4 * (i % 8) + p // 2  # (8 NB,) columns
                    x_mask = offs_m[None, :] < M
                    if not EVEN_K:
                        x_mask = x_mask & (c[:, None] < K)
                    xt = tl.load(x_ptr + offs_m[None, :] * stride_xm + c[:, None], mask=x_mask, other=0.0)
                    # (q - z) * s rounded to x's dtype, (BLOCK_N, 8 NB) @ x^T (8 NB, BLOCK_M)
                    acc = tl.dot(tl.reshape(w.to(DOT_DTYPE), (BLOCK_N, 8 * NB)), xt.to(DOT_DTYPE), acc)
            else:
                d_lo = tl.zeros((BLOCK_N, NB, 8), dtype=tl.float32)  # sum of 16^Q u * x / 16^Q = sum u x
                d_hi = tl.zeros((BLOCK_N, NB, 8), dtype=tl.float32)
                xs_lo = tl.zeros((1, NB, 8), dtype=tl.float32)  # sum of x, for the zero point (3-D: the layout of d)
                xs_hi = tl.zeros((1, NB, 8), dtype=tl.float32)
                for t in tl.static_range(4):  # byte t of each word: low nibble (plane 0), high nibble (plane 1)
                    c = (tile * NB + b)[:, None] * 64 + 4 * j[None, :] + t  # (NB, 8) columns of the low nibbles
                    x_row = x_ptr + pid_m * stride_xm
                    if EVEN_K:
                        x_lo, x_hi = tl.load(x_row + c).to(tl.float32), tl.load(x_row + c + 32).to(tl.float32)
                    else:
                        x_lo = tl.load(x_row + c, mask=c < K, other=0.0).to(tl.float32)
                        x_hi = tl.load(x_row + c + 32, mask=c + 32 < K, other=0.0).to(tl.float32)
                    xs_lo += x_lo[None, :, :]
                    xs_hi += x_hi[None, :, :]
                    u_lo = 1 << (4 * (2 * t - 3 * ((2 * t) // 5)))  # 16^Q of nibbles 2t and 2t + 1
                    u_hi = 1 << (4 * (2 * t + 1 - 3 * ((2 * t + 1) // 5)))
                    d_lo += (_nibble(words, high, 2 * t, magic) - 8388608.0) * (x_lo * (1.0 / u_lo))[None, :, :]
                    d_hi += (_nibble(words, high, 2 * t + 1, magic) - 8388608.0) * (x_hi * (1.0 / u_hi))[None, :, :]
                # per (row, block) and plane: s (sum u x - z sum x) = s sum (u - z) x
                acc += tl.sum(s_lo * (tl.sum(d_lo, axis=2) - z_lo * tl.sum(xs_lo, axis=2))
                              + s_hi * (tl.sum(d_hi, axis=2) - z_hi * tl.sum(xs_hi, axis=2)), axis=1)
    if DOT:
        if HAS_BIAS:  # only the first K slice adds the bias
            acc += tl.load(b_ptr + rows, mask=(rows < N) & (pid_k == 0), other=0.0).to(tl.float32)[:, None]
        _write(y_ptr + offs_m[None, :] * stride_ym + rows[:, None], acc,
               (rows[:, None] < N) & (offs_m[None, :] < M), ATOMIC)  # (BLOCK_N, BLOCK_M) = y^T tile
    else:
        if HAS_BIAS:
            acc += tl.load(b_ptr + rows, mask=(rows < N) & (pid_k == 0), other=0.0).to(tl.float32)
        _write(y_ptr + pid_m * stride_ym + rows, acc, rows < N, ATOMIC)


def _configs_for(m: int) -> list[triton.Config]:
    return _configs_cached(m <= FMA_MAX_M)


@lru_cache(maxsize=2)
def _configs_cached(fma_ok: bool) -> list[triton.Config]:  # built once: a launch must not rebuild 15 configs
    return [c for c in get_autotune_configs() if c.kwargs["DOT"] or fma_ok]


def w4a16_gemv(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
               group_size: int = 128, bias: torch.Tensor | None = None,
               config: triton.Config | None = None, *, checked: tuple[int, int, int] | None = None) -> torch.Tensor:
    """y = x @ W^T (+ bias) for x (..., K) with at most 16 rows; the fastest config per shape on a GPU.

    `checked` = (K, N, group) from a caller that has run `check_w4_args` on these arguments (the small-M dispatcher):
    the checks are skipped, since at M = 1 the launcher's Python time is a large part of an eager call."""
    k, n, group = checked or check_w4_args(x, qweight, scales, zeros, group_size, bias, FLOAT_ACTS)
    x2 = flatten_rows(x)  # (..., K) -> (M, K)
    m = x2.shape[0]
    if m > MAX_M:
        raise ValueError(f"w4a16_gemv takes at most {MAX_M} rows of x, got M={m}; use w4a16_gemm")
    if config is not None and not config.kwargs["DOT"] and m > FMA_MAX_M:
        raise ValueError(f"an fma config (DOT=0) runs M <= {FMA_MAX_M} rows, got M={m}; use a DOT=1 config")
    words = qweight.view(torch.int32)  # (N, Kp // 2) uint8 -> (N, KW) int32, 8 codes per word
    interp = interpreting()

    def run(cfg: triton.Config) -> torch.Tensor:
        split = min(cfg.kwargs["SPLIT_K"], cdiv(words.shape[1], 8 * cfg.kwargs["NB"] * cfg.kwargs["ITERS"]))
        # split-K partial sums meet by atomic adds in a zeroed output: fp16 natively, bf16 through an fp32 buffer
        acc_dtype = torch.float32 if split > 1 and x.dtype == torch.bfloat16 else x.dtype
        y = (torch.zeros if split > 1 else torch.empty)(m, n, dtype=acc_dtype, device=x.device)
        block_m = 16 if cfg.kwargs["DOT"] else 1
        grid = (cdiv(n, cfg.kwargs["BLOCK_N"]), split, cdiv(m, block_m))
        opts = {} if interp else dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        w4a16_gemv_kernel[grid](
            x2, words, scales, zeros if zeros is not None else scales, bias if bias is not None else scales, y,
            m, n, k, words.shape[1], x2.stride(0), words.stride(0), scales.stride(0), y.stride(0), MAGIC_BITS,
            EVEN_K=k % (64 * cfg.kwargs["NB"] * cfg.kwargs["ITERS"]) == 0, GROUP=group,
            HAS_ZEROS=zeros is not None, HAS_BIAS=bias is not None,
            DOT_DTYPE=float_dot_dtype(x.dtype), ATOMIC=split > 1, BLOCK_M=block_m, **cfg.kwargs, **opts)
        return y

    if config is None:
        if not interp and autotune_enabled():
            key = (n, k, triton.next_power_of_2(m), group, zeros is not None, bias is not None, x.dtype)
            config = tune("w4a16_gemv", key, _configs_for(m), run)
        else:  # interpreter / QSCHED_AUTOTUNE=0: the CUDA-core path for M = 1, the tensor-core path above
            config = next(c for c in get_autotune_configs() if c.kwargs["DOT"] == int(m > 1))
    return run(config).to(x.dtype).reshape(*x.shape[:-1], n)


def w4a16_gemv_ref(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                   group_size: int = 128, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The reference of every W4A16 kernel: x @ dequantize(unpack(qweight))^T in fp32 (w4a16_gemm.py)."""
    from .w4a16_gemm import w4a16_gemm_ref

    return w4a16_gemm_ref(x, qweight, scales, zeros, group_size, bias)
