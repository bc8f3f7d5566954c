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
A and B hold only +-1, exact in fp16/bf16; the intermediate A^T X is rounded to x's dtype before the second dot,
so the result carries about one extra rounding (tolerances in tests/kernels).

Notation: M rows (tokens), K = a * b features, d (K,) random signs or None, X the (a, b) view of a row.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import triton
import triton.language as tl

from qsched_core.quant.hadamard import factor_size, hadamard_transform, paley, sylvester

from ._common import (FLOAT_ACTS, check_contiguous, check_device, check_dtype, flatten_rows, float_dot_dtype, launch)


def get_autotune_configs() -> list[triton.Config]:
    return [triton.Config({"ROWS": r}, num_warps=w) for r in (2, 8, 16) for w in (4, 8)]


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
    HAS_SIGNS: tl.constexpr, DOT_DTYPE: tl.constexpr, ROWS: tl.constexpr,
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
    for r in tl.range(0, ROWS, num_stages=2):  # several rows per program (A, B loaded once); next row prefetched
        row = tl.program_id(0) * ROWS + r
        xt = tl.load(x_ptr + row * stride_xm + offs, mask=mask & (row < M), other=0.0).to(tl.float32)
        if HAS_SIGNS:
            xt = xt * d  # x * d: a sign flip, exact
        t = tl.dot(at, xt.to(DOT_DTYPE))  # A^T X, (BLOCK_A, BLOCK_B) fp32
        y = tl.dot(t.to(DOT_DTYPE), bm) * scale  # (A^T X) B / sqrt(K)
        tl.store(y_ptr + row * stride_ym + offs, y.to(y_ptr.dtype.element_ty), mask=mask & (row < M))


_tuned = None


def _kernel():
    global _tuned
    if _tuned is None:
        _tuned = triton.autotune(get_autotune_configs(), key=["M", "A", "B"], warmup=5, rep=20)(fwht_kernel)
    return _tuned


def fwht(x: torch.Tensor, signs: torch.Tensor | None = None, config: triton.Config | None = None) -> torch.Tensor:
    """(x * signs) H_K / sqrt(K) along the last dim of x (..., K) fp16/bf16; K = m * 2^k as in hadamard_matrix."""
    check_device(x=x, signs=signs)
    check_dtype(x, "x", FLOAT_ACTS)
    k = x.shape[-1]
    at, bm = kron_factors(k)
    if signs is not None:
        if tuple(signs.shape) != (k,):
            raise ValueError(f"signs has shape {tuple(signs.shape)}; expected ({k},), one +-1 per feature")
        check_contiguous(signs=signs)
    x2 = flatten_rows(x)  # (..., K) -> (M, K)
    m = x2.shape[0]
    y = torch.empty(m, k, dtype=x.dtype, device=x.device)
    at, bm = at.to(x.device), bm.to(x.device)
    a, b = at.shape[0], bm.shape[0]
    args = (x2, signs if signs is not None else at, at, bm, y, m, x2.stride(0), y.stride(0), 1.0 / math.sqrt(k))
    meta = dict(A=a, B=b, BLOCK_A=max(16, triton.next_power_of_2(a)), BLOCK_B=max(16, b),
                HAS_SIGNS=signs is not None, DOT_DTYPE=float_dot_dtype(x.dtype))
    launch(fwht_kernel, _kernel, lambda c: (triton.cdiv(m, c["ROWS"]),), args, meta, config,
           triton.Config({"ROWS": 1}))
    return y.reshape(x.shape)


def fwht_ref(x: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """The library's hadamard_transform in fp32 (butterflies + Paley block), cast to x's dtype."""
    xf = x.float() if signs is None else x.float() * signs.float()
    return hadamard_transform(xf).to(x.dtype)
