"""W4A8 GEMM: packed int4 weights (group-wise scales) x int8 per-token activations, integer dots per group.

Why: W4A8 (the Q-Sched main preset, torchao's `int8_dynamic_activation_int4_weight`) keeps the 4-bit weight bytes of
W4A16 and uses the int8 tensor cores. Because the weight scale changes every G columns, the integer sum can only run
over one group before it is scaled:

    y[m, n] = sx[m] * sum_g sw[n, g] * sum_{k in g} (qx[m, k] - zx[m]) * qw[n, k]
            = sx[m] * sum_g sw[n, g] * (dot_g[m, n] - zx[m] * colsum_g[n])

Each 64-column packing block gives two 32-column planes (int4_pack.py): one int8 dot per plane (K = 32, the
tensor-core minimum for int8), then an int32 -> fp32 conversion and a multiply-add on the (BLOCK_M, BLOCK_N)
accumulator. At G = 32 that epilogue runs once per 32 columns on the CUDA cores, so at large M it costs about as
much as the tensor-core work: this is why W4A8 kernels in the literature (QServe) scale weights to int8 per channel
first. We keep the plain form, which is exactly the arithmetic of the fake-quant reference.

At large M that epilogue made the kernel 5-6x slower than cuBLAS fp16 on one H200 (results/kernels.md). There the
second path, `w4a8_dequant_mm`, runs the same numbers through the fastest matmul at hand: the int4 weight is
dequantized to fp16 once (w4a16_dequant.py), the int8 codes of x row by row (`dequant_act_kernel`, (q - z) * s rounded
once), and cuBLAS multiplies them, the fake-quant arithmetic with fp16 operands. The weights stay 4-bit in memory; the
compute is fp16. A GPU that tunes times both paths per shape and M and runs the faster; without tuning, more than
DEQ_MIN_M rows take the dequantizing path.

Weights must be symmetric (codes stored as q + 8; the kernel subtracts 8 to get int8 -8..7). Activations come from
act_quant.py in signed storage (asymmetric codes as q - 128, zero as z - 128).

Notation: M tokens, K input features, N output features, G group size (32, multiples of 64, -1), B = 4 / 8 bits.
qx (M, K) int8, sx (M, 1) fp32, zx (M, 1) int32 or None; qweight (N, Kp // 2) uint8; scales (N, K // G) fp16;
y (M, N) fp16/bf16.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

from qsched_core.quant.primitives import dequantize

from ._common import autotune_enabled, autotuner, cdiv, check_device, interpreting, launch, tune
from .int4_pack import HALF, check_w4_args, unpack_int4_ref
from .w4a16_dequant import _dequant
from .w4a16_dequant import configs_for as dequant_configs_for
from .w8a8_gemm import check_act_args

DEQ_MIN_M = 512  # without tuning, above this many rows: dequantize, then cuBLAS


def get_autotune_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
            for bm, bn, w, st in [(16, 64, 4, 4), (16, 128, 4, 4), (64, 128, 4, 4), (128, 128, 8, 3),
                                  (128, 256, 8, 3)]]


@triton.jit(do_not_specialize=["M", "M_BUCKET"])  # one compile for every M
def w4a8_gemm_kernel(
    # pointers
    x_ptr, w_ptr, s_ptr, sx_ptr, zx_ptr, b_ptr, y_ptr,
    # sizes
    M, N, K, M_BUCKET,
    # strides (unit stride along K / N)
    stride_xm, stride_wn, stride_sn, stride_ym,
    # meta-parameters
    GROUP: tl.constexpr, HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr,
    HALF_BLOCK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    j = tl.arange(0, HALF_BLOCK)
    mask_m, mask_n = offs_m < M, offs_n < N
    if HAS_ZERO:
        zx = tl.load(zx_ptr + offs_m, mask=mask_m, other=0)  # (BLOCK_M,) int32
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for blk in range(0, tl.cdiv(K, 2 * HALF_BLOCK)):
        k_lo = blk * 2 * HALF_BLOCK + j
        k_hi = k_lo + HALF_BLOCK
        has_hi = blk * 2 * HALF_BLOCK + HALF_BLOCK < K
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + (blk * HALF_BLOCK + j)[:, None],
                    mask=mask_n[None, :], other=0x88)  # (32, BLOCK_N) uint8; 0x88 = two zero codes
        x_lo = tl.load(x_ptr + offs_m[:, None] * stride_xm + k_lo[None, :],
                       mask=mask_m[:, None] & (k_lo[None, :] < K), other=0)  # (BLOCK_M, 32) int8
        x_hi = tl.load(x_ptr + offs_m[:, None] * stride_xm + k_hi[None, :],
                       mask=mask_m[:, None] & (k_hi[None, :] < K), other=0)
        w_lo = (w & 0xF).to(tl.int32) - 8  # (32, BLOCK_N) int4 codes -8..7 (padding columns hold 0)
        w_hi = (w >> 4).to(tl.int32) - 8
        d_lo = tl.dot(x_lo, w_lo.to(tl.int8), out_dtype=tl.int32)  # (BLOCK_M, BLOCK_N), exact
        d_hi = tl.dot(x_hi, w_hi.to(tl.int8), out_dtype=tl.int32)
        if HAS_ZERO:  # sum_k (qx - zx) qw = dot - zx * colsum
            d_lo -= zx[:, None] * tl.sum(w_lo, axis=0)[None, :]
            d_hi -= zx[:, None] * tl.sum(w_hi, axis=0)[None, :]
        g_lo = (blk * 2 * HALF_BLOCK) // GROUP
        g_hi = (blk * 2 * HALF_BLOCK + HALF_BLOCK) // GROUP
        s_lo = tl.load(s_ptr + offs_n * stride_sn + g_lo, mask=mask_n, other=0.0).to(tl.float32)
        s_hi = tl.load(s_ptr + offs_n * stride_sn + g_hi, mask=mask_n & has_hi, other=0.0).to(tl.float32)
        acc += d_lo.to(tl.float32) * s_lo[None, :] + d_hi.to(tl.float32) * s_hi[None, :]
    sx = tl.load(sx_ptr + offs_m, mask=mask_m, other=0.0)
    y = acc * sx[:, None]
    if HAS_BIAS:
        y += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], y.to(y_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


@lru_cache(maxsize=1)
def _kernel():
    return autotuner(w4a8_gemm_kernel, get_autotune_configs())


@triton.jit
def dequant_act_kernel(q_ptr, sx_ptr, zx_ptr, out_ptr, K, stride_qm, stride_om, HAS_ZERO: tl.constexpr,
                       BLOCK_K: tl.constexpr):
    """One row of int8 codes per program: (q - z) * s in fp32, rounded once to the output dtype."""
    row = tl.program_id(0)
    s = tl.load(sx_ptr + row)
    z = tl.load(zx_ptr + row) if HAS_ZERO else 0
    for k0 in range(0, K, BLOCK_K):
        offs = k0 + tl.arange(0, BLOCK_K)
        q = tl.load(q_ptr + row * stride_qm + offs, mask=offs < K, other=0).to(tl.int32)
        tl.store(out_ptr + row * stride_om + offs, ((q - z).to(tl.float32) * s).to(out_ptr.dtype.element_ty),
                 mask=offs < K)


def dequant_act(qx: torch.Tensor, sx: torch.Tensor, zx: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """The activation (M, K) in `dtype` from act_quant_int8's codes: (qx - zx) * sx, rounded once."""
    m, k = qx.shape
    out = torch.empty(m, k, dtype=dtype, device=qx.device)
    block = min(4096, triton.next_power_of_2(max(k, 16)))
    opts = {} if interpreting() else dict(num_warps=4)
    dequant_act_kernel[(m,)](qx, sx, zx if zx is not None else sx, out, k, qx.stride(0), out.stride(0),
                             HAS_ZERO=zx is not None, BLOCK_K=block, **opts)
    return out


def deq_configs(group: int) -> list[triton.Config]:
    """The dequantizing path's configs (DEQ_MM marks them): those of the weight dequantization for this group."""
    return dequant_configs_for(group)


def w4a8_dequant_mm(qx, sx, zx, qweight, scales, k: int, n: int, group: int, bias, out_dtype,
                    config: triton.Config) -> torch.Tensor:
    """The dequantizing path (arguments checked by w4a8_gemm): both operands to fp16 (bf16 for a bf16 output), then
    one cuBLAS matmul with fp32 accumulation."""
    dtype = torch.bfloat16 if out_dtype == torch.bfloat16 else torch.float16
    w = _dequant(qweight, scales, None, n, k, group, dtype, config)
    y = torch.nn.functional.linear(dequant_act(qx, sx, zx, dtype), w, None if bias is None else bias.to(dtype))
    return y.to(out_dtype)


def w4a8_gemm(qx: torch.Tensor, sx: torch.Tensor, zx: torch.Tensor | None, qweight: torch.Tensor,
              scales: torch.Tensor, group_size: int = 32, bias: torch.Tensor | None = None,
              out_dtype: torch.dtype = torch.float16, config: triton.Config | None = None) -> torch.Tensor:
    """y = ((qx - zx) * sx) @ dequantize(int4 W)^T (+ bias); qx (M, K) int8 from act_quant_int8; y (M, N)."""
    check_device(qx=qx, sx=sx, zx=zx)
    if qx.ndim != 2:
        raise ValueError(f"qx has shape {tuple(qx.shape)}; pass (M, K) codes from act_quant_int8")
    check_act_args(qx, sx, zx)
    k, n, group = check_w4_args(qx, qweight, scales, None, group_size, bias, (torch.int8,))
    if out_dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"out_dtype={out_dtype} must be float16, bfloat16 or float32")
    m = qx.shape[0]
    if config is None and autotune_enabled():
        def run(cfg: triton.Config) -> torch.Tensor:
            return w4a8_gemm(qx, sx, zx, qweight, scales, group_size, bias, out_dtype, cfg)

        key = (n, k, triton.next_power_of_2(m), group, zx is not None, bias is not None, out_dtype)
        config = tune("w4a8_gemm", key, get_autotune_configs() + deq_configs(group), run)
    elif config is None and m > DEQ_MIN_M:
        config = deq_configs(group)[0]
    if config is not None and "DEQ_MM" in config.kwargs:
        return w4a8_dequant_mm(qx, sx, zx, qweight, scales, k, n, group, bias, out_dtype, config)
    y = torch.empty(m, n, dtype=out_dtype, device=qx.device)
    args = (qx, qweight, scales, sx, zx if zx is not None else sx, bias if bias is not None else scales, y,
            m, n, k, min(triton.next_power_of_2(m), 4096), qx.stride(0), qweight.stride(0), scales.stride(0),
            y.stride(0))
    meta = dict(GROUP=group, HAS_ZERO=zx is not None, HAS_BIAS=bias is not None, HALF_BLOCK=HALF)
    grid = lambda c: (cdiv(m, c["BLOCK_M"]), cdiv(n, c["BLOCK_N"]))
    interp = triton.Config({"BLOCK_M": 16 if m <= 16 else 128, "BLOCK_N": 32})  # interpreter
    launch(w4a8_gemm_kernel, _kernel, grid, args, meta, config, interp)
    return y


def w4a8_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, group_size: int = 32,
                bias: torch.Tensor | None = None, symmetric_acts: bool = False, clip_ratio: float = 1.0,
                scale_rule: str = "torchao") -> torch.Tensor:
    """x (..., K) float -> act_quant_int8 -> w4a8_gemm -> y (..., N) in x's dtype (two launches)."""
    from .act_quant import act_quant_int8

    qx, sx, zx = act_quant_int8(x, symmetric_acts, clip_ratio, scale_rule)
    y = w4a8_gemm(qx, sx, None if symmetric_acts else zx, qweight, scales, group_size, bias, out_dtype=x.dtype)
    return y.reshape(*x.shape[:-1], qweight.shape[0])


def w4a8_gemm_ref(qx: torch.Tensor, sx: torch.Tensor, zx: torch.Tensor | None, qweight: torch.Tensor,
                  scales: torch.Tensor, group_size: int = 32, bias: torch.Tensor | None = None,
                  out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """dequantize both operands with the library and multiply in fp32."""
    x = dequantize(qx, sx, torch.zeros_like(sx, dtype=torch.int32) if zx is None else zx)  # (M, K) fp32
    q = unpack_int4_ref(qweight, qx.shape[1], symmetric=True)  # (N, K) int8 codes
    w = dequantize(q, scales.float(), torch.zeros_like(scales, dtype=torch.int32))  # (N, K) fp32
    y = x @ w.T
    return (y if bias is None else y + bias.float()).to(out_dtype)
