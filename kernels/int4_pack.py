"""int4 packing: two 4-bit weight codes per byte, in the layout the W4A16 and W4A8 GEMMs read.

Why this layout: a GEMM tile multiplies x[:, k] by w[k, n]. If a byte held two *adjacent* codes (k, k+1), the kernel
would have to interleave the two nibbles back into one tile (a register shuffle) or read x with stride 2. Here a
byte holds two codes 32 columns apart, so each nibble plane is a contiguous run of 32 columns: the low nibbles of
bytes 0..31 are columns 0..31, the high nibbles columns 32..63. The GEMM does one dot on each plane, reads x
contiguously, and, for group size 32, each plane is exactly one quantization group.

Notation: N output features, K input features (codes per row), B = 4 bits, PACK_BLOCK = 64 codes = 32 bytes,
Kp = K rounded up to a multiple of 64 (padding columns hold code 0 and are never read as data).

Stored nibble u = q - qmin, so one format serves both code ranges: symmetric codes q in -8..7 are stored as
u = q + 8 (the kernels subtract 8 again), asymmetric codes q in 0..15 as themselves (the kernels subtract the
zero point). Worked example, one row, K = 64, symmetric:

    codes  q[0:4]   = [-8, -1,  0,  7]          q[32:36] = [ 3, -3,  5, -8]
    nibble u[0:4]   = [ 0,  7,  8, 15]          u[32:36] = [11,  5, 13,  0]
    byte j = u[j] | u[j + 32] << 4:   bytes[0:4] = [0xB0, 0x57, 0xD8, 0x0F]

The module holds the unpacking kernel (`unpack_int4_kernel` / `unpack_int4`, used by tests and the notebook to
show the kernels read what was written), its reference `unpack_int4_ref`, and the offline packers `pack_int4` and
`pack_int4_weight` (plain torch: packing happens once, when a layer is converted).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from qsched_core.quant.primitives import code_dtype, qrange

from ._common import (
    PACK_BLOCK,
    check_contiguous,
    check_device,
    check_dtype,
    check_group_size_int4,
    check_shape,
)

HALF = PACK_BLOCK // 2  # 32 bytes per block, one per pair of codes (j, j + 32)


def padded_k(k: int) -> int:
    """K rounded up to a multiple of PACK_BLOCK = 64."""
    return -(-k // PACK_BLOCK) * PACK_BLOCK


# ------------------------------------------------------------------------------------------ packers (torch)
def pack_int4(q: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
    """Codes (N, K) int8 in -8..7 (symmetric) or uint8 in 0..15 -> packed (N, Kp // 2) uint8, layout above."""
    qmin, qmax = qrange(4, symmetric)
    if q.ndim != 2 or q.dtype not in (torch.int8, torch.uint8, torch.int32, torch.int64):
        raise ValueError(f"pack_int4 takes integer codes (N, K), got {q.dtype} {tuple(q.shape)}")
    if q.numel() and (int(q.min()) < qmin or int(q.max()) > qmax):
        raise ValueError(f"codes span [{int(q.min())}, {int(q.max())}], outside int4 [{qmin}, {qmax}] "
                         f"(symmetric={symmetric}); quantize with bits=4 first")
    n, k = q.shape
    u = torch.full((n, padded_k(k)), -qmin, dtype=torch.int32, device=q.device)  # padding = code 0
    u[:, :k] = q.to(torch.int32) - qmin
    u = u.reshape(n, -1, 2, HALF)  # (N, Kp // 64, [low plane, high plane], 32)
    return (u[:, :, 0] | (u[:, :, 1] << 4)).reshape(n, -1).to(torch.uint8)  # (N, Kp // 2)


def unpack_int4_ref(packed: torch.Tensor, k: int, symmetric: bool = True) -> torch.Tensor:
    """Reference inverse of pack_int4: (N, Kp // 2) uint8 -> codes (N, K), int8 or uint8 as `quantize` returns."""
    qmin, _ = qrange(4, symmetric)
    n = packed.shape[0]
    b = packed.to(torch.int32).reshape(n, -1, 1, HALF)  # (N, Kp // 64, 1, 32)
    u = torch.cat([b & 0xF, b >> 4], dim=2).reshape(n, -1)  # (N, Kp): low plane then high plane per block
    return (u[:, :k] + qmin).to(code_dtype(symmetric))


def pack_int4_weight(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, symmetric: bool):
    """Codes, scales and zero points as `choose_qparams` + `quantize` give them -> what the int4 GEMMs take.

    Returns (qweight (N, Kp // 2) uint8, scales (N, K // G) fp16, zeros (N, K // G) uint8 or None).
    Zeros are stored in the nibble domain (z - qmin); symmetric weights need none (the kernel subtracts 8).
    Bytes per weight: 1/2 + 2/G (scales) + 1/G (zeros): 0.26x of fp16 at G = 128 with zeros.
    """
    qmin, _ = qrange(4, symmetric)
    zeros = None
    if not symmetric:
        zeros = (zero.to(torch.int32) - qmin).to(torch.uint8).contiguous()
    elif zero.numel() and bool((zero != 0).any()):
        raise ValueError("symmetric int4 weights must have zero points 0; pass symmetric=False for asymmetric ones")
    return pack_int4(q, symmetric), scale.to(torch.float16).contiguous(), zeros


def check_w4_args(x, qweight, scales, zeros, group_size, bias, x_dtypes):
    """The packed format as the W4A16 and W4A8 launchers take it: dtypes, devices, shapes; returns (K, N, GROUP)."""
    check_device(x=x, qweight=qweight, scales=scales, zeros=zeros, bias=bias)
    check_dtype(x, "x", x_dtypes)
    check_dtype(qweight, "qweight", (torch.uint8,))
    check_dtype(scales, "scales", (torch.float16, torch.float32))
    check_contiguous(qweight=qweight, scales=scales, zeros=zeros, bias=bias)
    k, n = x.shape[-1], qweight.shape[0]
    check_shape(qweight, "qweight", (n, padded_k(k) // 2), f"x has K={k}; pack the (N, K) codes with pack_int4")
    group = check_group_size_int4(group_size, k)
    n_groups = 1 if group_size == -1 else k // group_size
    check_shape(scales, "scales", (n, n_groups), f"one scale per output row and group of {group_size}")
    if zeros is not None:
        check_dtype(zeros, "zeros", (torch.uint8,))
        check_shape(zeros, "zeros", (n, n_groups), "zeros are shaped like scales")
    if bias is not None:
        check_shape(bias, "bias", (n,))
    return k, n, group


# ---------------------------------------------------------------------------------------------- kernel
@triton.jit
def unpack_int4_kernel(
    # pointers
    p_ptr, q_ptr,
    # sizes
    N, K,
    # strides
    stride_pn, stride_qn,
    # meta-parameters
    QMIN: tl.constexpr, BLOCK_N: tl.constexpr, HALF_BLOCK: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    blk = tl.program_id(1)  # which 64-column block
    j = tl.arange(0, HALF_BLOCK)
    byte = tl.load(p_ptr + rows[:, None] * stride_pn + blk * HALF_BLOCK + j[None, :],
                   mask=rows[:, None] < N, other=0)  # (BLOCK_N, 32) uint8
    lo = (byte & 0xF).to(tl.int32) + QMIN  # columns 64 blk + j
    hi = (byte >> 4).to(tl.int32) + QMIN  # columns 64 blk + 32 + j
    k_lo = blk * 2 * HALF_BLOCK + j
    base = q_ptr + rows[:, None] * stride_qn
    tl.store(base + k_lo[None, :], lo.to(q_ptr.dtype.element_ty), mask=(rows[:, None] < N) & (k_lo[None, :] < K))
    k_hi = k_lo + HALF_BLOCK
    tl.store(base + k_hi[None, :], hi.to(q_ptr.dtype.element_ty), mask=(rows[:, None] < N) & (k_hi[None, :] < K))


def unpack_int4(packed: torch.Tensor, k: int, symmetric: bool = True) -> torch.Tensor:
    """Triton unpacking: (N, Kp // 2) uint8 -> codes (N, K) (int8 if symmetric, else uint8)."""
    check_device(packed=packed)
    check_dtype(packed, "packed", (torch.uint8,))
    if packed.ndim != 2 or packed.shape[1] != padded_k(k) // 2:
        raise ValueError(f"packed has shape {tuple(packed.shape)}; for K={k} it must be (N, {padded_k(k) // 2}) "
                         f"(K rounded up to a multiple of {PACK_BLOCK}, two codes per byte); use pack_int4")
    packed = packed.contiguous()
    n = packed.shape[0]
    out = torch.empty(n, k, dtype=code_dtype(symmetric), device=packed.device)
    qmin, _ = qrange(4, symmetric)
    block_n = 16
    grid = (triton.cdiv(n, block_n), packed.shape[1] // HALF)
    unpack_int4_kernel[grid](packed, out, n, k, packed.stride(0), out.stride(0),
                             QMIN=qmin, BLOCK_N=block_n, HALF_BLOCK=HALF)
    return out
