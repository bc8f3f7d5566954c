"""Fast Walsh-Hadamard transform for QuaRot's online rotation: y = (x * d) H_K / sqrt(K), one kernel, one pass.

Why: QuaRot rotates some activations at run time (x -> x Q, Q = diag(d) H_K / sqrt(K)) so that per-token int4 sees
no outlier channel. The rotation must cost about a copy of x, or it eats the low-bit GEMM's gain. Written as a dense
K x K matmul it would do 2K flops per element; the butterfly (`qsched_core.quant.hadamard.fwht`) does log2(K)
passes over memory in torch.

This kernel uses the Kronecker structure instead. H_K = A (x) B with B = H_b (Sylvester, b ~ sqrt(K), 64 for
K = 4096) and A = H_m (x) H_{p/b} (a = K / b, H_m a Paley block when K = m * 2^k, as in `hadamard_matrix`).
Viewing one row of x as an (a, b) matrix X in row-major order,

    x (A (x) B) = A^T X B        (two small tensor-core dots per row: 2 K (a + b) flops, ~300 flops/element)

so each row is read once, rotated in registers, and written once: a memory-bound kernel, ideally at copy speed.
One row at a time, the two dots form a dependent chain of small (64 x 64 x 64 at K = 4096) matrix products, so a
program mostly waits. With R > 1 the kernel puts R rows side by side instead:

    U = A^T [X_1 | ... | X_R]                       (A, R b): A^T X_r for every r in one dot, R times wider
    [Y rows] = reshape(U, (a R, b)) B               row i R + r of the reshaped U is row i of A^T X_r

The reshape is row-major order as it stands (no transpose, unlike stacking the X_r^T, which the first version of
this kernel did and which the tuner never picked), so each group of R rows costs one load, two dots R times larger
and one store.
A and B hold only +-1, exact in fp16/bf16; the intermediate A^T X is rounded to x's dtype before the second dot,
so the result carries about one extra rounding (tolerances in tests/kernels).

Tried, slower: for Paley sizes (K = m 2^k, m = 12, 20, ...) the two-factor form pads a = m 2^j up to a power of two
(K = 12288 runs as (96 -> 128) x 128 tiles, ~680 tensor flops per element). A three-factor kernel,
H_K = P_m (x) H_c2 (x) H_c1, one dot per index (~213 flops per element at K = 12288, the middle index contracted
after a transpose or by a batched dot), ran at 114-119 us against the two-factor kernel's 94 us at 4096 x 12288 on
one H200, so it was removed (the commit that added it holds the code; kernels/bench_notes.md has the numbers).

Notation: M rows (tokens), K = a * b features, d (K,) random signs or None, X the (a, b) view of a row.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import triton
import triton.language as tl

from qsched_core.quant.hadamard import factor_size, hadamard_transform, paley, sylvester

from ._common import (
    FLOAT_ACTS,
    autotune_enabled,
    cdiv,
    check_contiguous,
    check_device,
    check_dtype,
    flatten_rows,
    float_dot_dtype,
    interpreting,
    tune,
)

# Without tuning. It was ROWS=4 R=2 until a GPU run showed that at K = 12288 (128 x 128 tiles, two rows stacked)
# it needs 256 KiB of shared memory, more than the H200's 227 KiB: the launch failed. R = 1 ran at K = 4096 and
# 12288 in the same run's tuning, and the tuner picked R = 1 on all three benchmark shapes.
UNTUNED_CONFIG = triton.Config({"ROWS": 8, "R": 1}, num_warps=4)


def get_autotune_configs() -> list[triton.Config]:
    """R = rows per dot pair (1: a chain of two dots per row; > 1: R rows side by side), ROWS = rows per program,
    STAGES = rows in flight in the loop (2: the next one is loaded while this one is rotated)."""
    return ([triton.Config({"ROWS": r, "R": 1}, num_warps=w) for r in (2, 8, 16) for w in (4, 8)]
            + [triton.Config({"ROWS": r, "R": 1, "STAGES": st}, num_warps=w) for r, w, st in
               [(8, 4, 3), (16, 4, 3), (16, 4, 4), (8, 8, 3), (16, 8, 3), (16, 8, 4), (32, 4, 4), (32, 8, 3),
                (16, 16, 3)]]
            + [triton.Config({"ROWS": rows, "R": r}, num_warps=w)
               for r, rows, w in [(2, 8, 4), (2, 16, 8), (4, 8, 4), (4, 16, 8), (4, 32, 8), (8, 16, 8), (8, 32, 8)]])


@lru_cache(maxsize=32)
def kron_factors(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A^T, B) float32 with H_K = A (x) B, B = H_b Sylvester, b the power of two nearest above sqrt(K) (<= 2^k)."""
    f = factor_size(k)
    if f is None:
        raise ValueError(f"no Hadamard matrix of width K={k}: K must be m * 2^k with m = 1 or a Paley size "
                         f"(12, 20, 24, ...); see qsched_core.quant.hadamard.supported_sizes()")
    m, p = f
    b = min(p, max(16, 1 << math.ceil(math.log2(math.sqrt(k)))))  # a ~ b ~ sqrt(K): fewest flops and registers
    a_pow = sylvester(p // b)
    a = a_pow if m == 1 else torch.kron(paley(m - 1), a_pow)
    return a.T.float().contiguous(), sylvester(b).float().contiguous()


@triton.jit
def fwht_kernel(
    # pointers
    x_ptr, d_ptr, at_ptr, b_ptr, y_ptr,
    # sizes
    M,
    # strides
    stride_xm, stride_ym,
    # numbers
    scale,
    # meta-parameters
    A: tl.constexpr, B: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr,
    HAS_SIGNS: tl.constexpr, DOT_DTYPE: tl.constexpr, ROWS: tl.constexpr, R: tl.constexpr,
    STAGES: tl.constexpr = 2,
):
    ia, ib = tl.arange(0, BLOCK_A), tl.arange(0, BLOCK_B)
    mask_a, mask_b = ia < A, ib < B
    at = tl.load(at_ptr + ia[:, None] * A + ia[None, :], mask=mask_a[:, None] & mask_a[None, :], other=0.0)
    bm = tl.load(b_ptr + ib[:, None] * B + ib[None, :], mask=mask_b[:, None] & mask_b[None, :], other=0.0)
    at, bm = at.to(DOT_DTYPE), bm.to(DOT_DTYPE)  # (BLOCK_A, BLOCK_A), (BLOCK_B, BLOCK_B): +-1, exact
    offs = ia[:, None] * B + ib[None, :]  # (BLOCK_A, BLOCK_B): position of X[i, j] in the row
    mask = mask_a[:, None] & mask_b[None, :]
    if HAS_SIGNS:
        d = tl.load(d_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if R == 1:  # one row at a time: two (BLOCK_A, BLOCK_A, BLOCK_B)-sized dots in a chain
        for r in tl.range(0, ROWS, num_stages=STAGES):  # STAGES - 1 rows prefetched
            row = tl.program_id(0) * ROWS + r
            xt = tl.load(x_ptr + row * stride_xm + offs, mask=mask & (row < M), other=0.0).to(tl.float32)
            if HAS_SIGNS:
                xt = xt * d  # x * d: a sign flip, exact
            t = tl.dot(at, xt.to(DOT_DTYPE))  # A^T X, (BLOCK_A, BLOCK_B) fp32
            y = tl.dot(t.to(DOT_DTYPE), bm) * scale  # (A^T X) B / sqrt(K)
            tl.store(y_ptr + row * stride_ym + offs, y.to(y_ptr.dtype.element_ty), mask=mask & (row < M))
    else:  # R rows side by side: T = [X_1 | ... | X_R] (A, R B), U = A^T T = [A^T X_1 | ... | A^T X_R];
        # U read as (A R, B) in row-major order is [row i of A^T X_1; ...; row i of A^T X_R] for i = 0, 1, ...:
        # a reshape, no transpose, and one dot with B gives every row's Y at once (output row i R + r = Y_r[i])
        s = tl.arange(0, R * BLOCK_B)  # column of T: row r = s // BLOCK_B of the group, column j = s % BLOCK_B
        r_in, j_in = s // BLOCK_B, s % BLOCK_B
        offs_t = ia[:, None] * B + j_in[None, :]  # (BLOCK_A, R BLOCK_B): T[i, r BLOCK_B + j] = x_r[i B + j]
        mask_t = mask_a[:, None] & (j_in < B)[None, :]
        if HAS_SIGNS:
            d_t = tl.load(d_ptr + offs_t, mask=mask_t, other=0.0).to(tl.float32)
        s_out = tl.arange(0, BLOCK_A * R)  # output row: X row i = s_out // R of input row r = s_out % R
        i_out, r_out = s_out // R, s_out % R
        offs_o = i_out[:, None] * B + ib[None, :]  # (BLOCK_A R, BLOCK_B)
        mask_o = (i_out < A)[:, None] & mask_b[None, :]
        for r0 in tl.range(0, ROWS, R, num_stages=STAGES):
            row0 = tl.program_id(0) * ROWS + r0
            m_t = mask_t & (row0 + r_in < M)[None, :]
            xt = tl.load(x_ptr + (row0 + r_in)[None, :] * stride_xm + offs_t, mask=m_t, other=0.0).to(tl.float32)
            if HAS_SIGNS:
                xt = xt * d_t
            u = tl.dot(at, xt.to(DOT_DTYPE))  # (BLOCK_A, R BLOCK_B): A^T X_r side by side
            u = tl.reshape(u, (BLOCK_A * R, BLOCK_B))
            y = tl.dot(u.to(DOT_DTYPE), bm) * scale  # (BLOCK_A R, BLOCK_B): A^T X_r B, rows interleaved
            m_o = mask_o & (row0 + r_out < M)[:, None]
            tl.store(y_ptr + (row0 + r_out)[:, None] * stride_ym + offs_o, y.to(y_ptr.dtype.element_ty), mask=m_o)


@lru_cache(maxsize=32)
def _factors_on(k: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """kron_factors(k) on `device`, copied once (a copy per call would also break CUDA-graph capture)."""
    at, bm = kron_factors(k)
    return at.to(device), bm.to(device)


def fwht(x: torch.Tensor, signs: torch.Tensor | None = None, config: triton.Config | None = None) -> torch.Tensor:
    """(x * signs) H_K / sqrt(K) along the last dim of x (..., K) fp16/bf16; K = m * 2^k as in hadamard_matrix."""
    check_device(x=x, signs=signs)
    check_dtype(x, "x", FLOAT_ACTS)
    k = x.shape[-1]
    at, bm = _factors_on(k, str(x.device))
    if signs is not None:
        if tuple(signs.shape) != (k,):
            raise ValueError(f"signs has shape {tuple(signs.shape)}; expected ({k},), one +-1 per feature")
        check_contiguous(signs=signs)
    x2 = flatten_rows(x)  # (..., K) -> (M, K)
    m = x2.shape[0]
    y = torch.empty(m, k, dtype=x.dtype, device=x.device)
    a, b = at.shape[0], bm.shape[0]
    args = (x2, signs if signs is not None else at, at, bm, y, m, x2.stride(0), y.stride(0), 1.0 / math.sqrt(k))
    meta = dict(A=a, B=b, BLOCK_A=max(16, triton.next_power_of_2(a)), BLOCK_B=max(16, b),
                HAS_SIGNS=signs is not None, DOT_DTYPE=float_dot_dtype(x.dtype))

    def run(cfg: triton.Config) -> None:
        opts = {} if interpreting() else dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        fwht_kernel[(cdiv(m, cfg.kwargs["ROWS"]),)](*args, **meta, **cfg.kwargs, **opts)

    if config is None:
        if autotune_enabled():
            config = tune("fwht", (m, a, b, x.dtype, signs is not None), get_autotune_configs(), run)
        else:  # interpreter / QSCHED_AUTOTUNE=0: one row per dot pair, which fits shared memory at every K tried
            config = UNTUNED_CONFIG
    run(config)
    return y.reshape(x.shape)


def fwht_ref(x: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """The library's hadamard_transform in fp32 (butterflies + Paley block), cast to x's dtype."""
    xf = x.float() if signs is None else x.float() * signs.float()
    return hadamard_transform(xf).to(x.dtype)
