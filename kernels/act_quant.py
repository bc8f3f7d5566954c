"""Fused per-token dynamic int8 activation quantization: one pass finds each row's range, a second writes codes.

Why a kernel: in W8A8 / W4A8 the activation is quantized at run time, once per token, right before the integer GEMM.
In torch this is ~6 separate ops (amin, amax, clamp, divide, round, clamp), each a full read or write of x; fused,
x is read twice (the second read mostly from L2) and the int8 codes written once.

The arithmetic is `choose_qparams(x, 8, group_size=-1, symmetric, clip_ratio, scale_rule)` followed by `quantize`,
step for step (same float32 operations in the same order, round half to even, multiplication by the reciprocal
scale), so scales, zero points and codes match the library's bit for bit. One trap: Triton lets the GPU compiler contract (enable_fp_fusion)
x * (1/s) + 0.5 (the product, then `round_half_even`'s floor(v + 0.5)) into one fused multiply-add, one rounding
instead of two, which lands one level away when the rounded product is a tie; an H200 run measured 1 code in 600
(bf16 inputs, whose few mantissa bits make ties common), and it failed the test's error budget on small rows. The
product is therefore taken with `mul_rn` on a GPU (PTX mul.rn is never fused) and with `*` in the interpreter.
The symmetric divisor (127.5 for scale_rule="torchao", 127 for "qmax") is read from `choose_qparams` itself at
launch, so the kernel follows the library's convention.

Signed storage: asymmetric codes q in 0..255 are stored as int8 q - 128 with zero z - 128 (torchao's layout), so the
integer GEMMs always multiply int8 by int8; (q - 128) - (z - 128) = q - z dequantizes to the same value.

Notation: M tokens (rows), K features. x (M, K) fp16/bf16/fp32 -> codes (M, K) int8, scale (M, 1) fp32,
zero (M, 1) int32 (signed storage; all 0 when symmetric).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from qsched_core.quant.primitives import _EPS, choose_qparams, quantize

from ._common import (
    check_device,
    check_dtype,
    flatten_rows,
    interpreting,
    round_half_even,
)

SHIFT = 128  # asymmetric codes 0..255 are stored as q - 128 in int8


@triton.jit
def act_quant_int8_kernel(
    # pointers
    x_ptr, q_ptr, s_ptr, z_ptr,
    # sizes
    K,
    # strides
    stride_xm, stride_qm,
    # numbers
    levels, clip, eps,
    # meta-parameters
    SYMMETRIC: tl.constexpr, BLOCK_K: tl.constexpr, UNFUSED_MUL: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_K)
    x_row = x_ptr + row * stride_xm
    # pass 1: the row's min and max (masked lanes load 0, harmless because 0 is forced into the range anyway)
    lo = tl.zeros((BLOCK_K,), dtype=tl.float32)
    hi = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        v = tl.load(x_row + k0 + cols, mask=k0 + cols < K, other=0.0).to(tl.float32)
        lo, hi = tl.minimum(lo, v), tl.maximum(hi, v)
    lo = tl.min(lo, axis=0) * clip  # lo <= 0 <= hi already
    hi = tl.max(hi, axis=0) * clip
    if SYMMETRIC:
        scale = tl.maximum(tl.math.div_rn(tl.maximum(-lo, hi), levels), eps)
        zero = 0.0
        qmin, qmax = -128.0, 127.0
    else:
        scale = tl.maximum(tl.math.div_rn(hi - lo, 255.0), eps)
        zero = tl.minimum(tl.maximum(round_half_even(tl.math.div_rn(-lo, scale)), 0.0), 255.0)
        qmin, qmax = 0.0, 255.0
    inv = tl.math.div_rn(1.0, scale)
    # pass 2: codes
    for k0 in range(0, K, BLOCK_K):
        v = tl.load(x_row + k0 + cols, mask=k0 + cols < K, other=0.0).to(tl.float32)
        if UNFUSED_MUL:  # a GPU: the product rounded on its own, as torch rounds it (no fused multiply-add)
            p = libdevice.mul_rn(v, inv)
        else:  # the interpreter (numpy) never fuses, and has no libdevice
            p = v * inv
        q = tl.minimum(tl.maximum(round_half_even(p) + zero, qmin), qmax)
        if not SYMMETRIC:
            q = q - 128.0
        tl.store(q_ptr + row * stride_qm + k0 + cols, q.to(tl.int32).to(tl.int8), mask=k0 + cols < K)
    tl.store(s_ptr + row, scale)
    z = zero if SYMMETRIC else zero - 128.0
    tl.store(z_ptr + row, z.to(tl.int32))


@lru_cache(maxsize=None)
def _levels(symmetric: bool, scale_rule: str) -> float:
    """The divisor choose_qparams uses for 8 bits: for a row whose range is [0, 1] it picks s = 1/levels.

    Levels are integers or half-integers (127, 127.5, 255), so rounding 2/s to an integer undoes fp32's rounding of s.
    """
    scale, _ = choose_qparams(torch.tensor([[0.0, 1.0]]), 8, -1, symmetric, scale_rule=scale_rule)
    return round(2.0 / float(scale)) / 2.0


def act_quant_int8(x: torch.Tensor, symmetric: bool = False, clip_ratio: float = 1.0,
                   scale_rule: str = "torchao") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token int8 codes of x (..., K): (codes (M, K) int8, scale (M, 1) fp32, zero (M, 1) int32), signed storage."""
    check_device(x=x)
    check_dtype(x, "x", (torch.float16, torch.bfloat16, torch.float32))
    if not 0.0 < clip_ratio <= 1.0:
        raise ValueError(f"clip_ratio={clip_ratio} must be in (0, 1]")
    x2 = flatten_rows(x)  # (..., K) -> (M, K)
    m, k = x2.shape
    q = torch.empty(m, k, dtype=torch.int8, device=x.device)
    s = torch.empty(m, 1, dtype=torch.float32, device=x.device)
    z = torch.empty(m, 1, dtype=torch.int32, device=x.device)
    block_k = min(triton.next_power_of_2(k), 4096)
    act_quant_int8_kernel[(m,)](x2, q, s, z, k, x2.stride(0), q.stride(0),
                                _levels(symmetric, scale_rule), float(clip_ratio), _EPS,
                                SYMMETRIC=symmetric, BLOCK_K=block_k, UNFUSED_MUL=not interpreting(),
                                num_warps=4 if block_k <= 1024 else 8)
    return q, s, z


def act_quant_int8_ref(x: torch.Tensor, symmetric: bool = False, clip_ratio: float = 1.0,
                       scale_rule: str = "torchao") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """choose_qparams + quantize (8 bits, per token), shifted to signed storage when asymmetric."""
    x2 = x.reshape(-1, x.shape[-1]).float()
    scale, zero = choose_qparams(x2, 8, -1, symmetric, clip_ratio=clip_ratio, scale_rule=scale_rule)
    q = quantize(x2, scale, zero, 8, symmetric).to(torch.int32)
    shift = 0 if symmetric else SHIFT
    return (q - shift).to(torch.int8), scale, zero - shift
