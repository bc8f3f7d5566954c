"""W8A8 GEMM: int8 activations x int8 weights on the integer tensor cores, per-token x per-channel scale epilogue.

Why: an H100/H200 multiplies int8 at twice its fp16 rate (1979 vs 989 dense TOP/s on paper), so at large M, where
a linear layer is compute-bound, W8A8 is the quantized format that can beat cuBLAS fp16. The dequantization cannot
happen before the dot (that would be an fp16 GEMM); instead it factors out of the sum:

    y[m, n] = sx[m] * sw[n] * sum_k (qx[m, k] - zx[m]) * qw[n, k]
            = sx[m] * sw[n] * (acc[m, n] - zx[m] * colsum[n]),   acc = qx @ qw^T in int32 (exact)

so the K loop is a pure int8 dot, and one epilogue per output tile applies the zero point (asymmetric activations
only; colsum[n] = sum_k qw[n, k] is accumulated in the same loop), the two scales and the bias.

Layout: both operands K-major, qx (M, K) and qw (N, K) row-major, i.e. the weight is read as a column-major (K, N)
matrix: what the tensor cores want (torch._int_mm with a row-major (K, N) weight runs 5x slower on the H200).
Tiles are visited in grouped order (GROUP_M rows of tiles at a time) so that weight tiles are reused from L2.

Above TMA_MIN_M rows a GPU that tunes also times `w8a8_gemm_tma_kernel`: the same loop and epilogue, persistent
(one program per SM walks the output tiles) with its operand tiles fetched by the Hopper TMA unit through tensor
descriptors instead of per-thread pointer loads; the faster config of the two kernels runs.

Notation: M tokens, K input features, N output features, B = 8 bits. qx (M, K) int8 (signed storage, see
act_quant.py), sx (M, 1) fp32, zx (M, 1) int32 or None; qw (N, K) int8, sw (N, 1) fp32; y (M, N) fp16/bf16.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

from qsched_core.quant.primitives import dequantize

from ._common import (
    autotune_enabled,
    autotuner,
    cdiv,
    check_contiguous,
    check_device,
    check_dtype,
    check_shape,
    interpreting,
    launch,
    tune,
)

TMA_MIN_M = 256  # above this many rows a GPU that tunes times the persistent TMA kernel beside the plain one


def get_autotune_configs() -> list[triton.Config]:
    """Large tiles for the compute-bound regime first; a small one for M <= 64.

    128 x 256 x 128 int8 with 4 stages uses 192 KB of the 227 KB of shared memory; the 64-deep variants trade
    K depth for more stages. The autotuner skips configs that do not fit.
    """
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=st)
            for bm, bn, bk, w, st in [(128, 256, 128, 8, 3), (128, 256, 128, 8, 4), (256, 128, 128, 8, 4),
                                      (128, 128, 128, 8, 4), (64, 128, 128, 4, 4), (16, 64, 256, 4, 4),
                                      (128, 256, 64, 8, 6), (256, 128, 64, 8, 6), (128, 128, 128, 4, 5)]]


@triton.jit
def _grouped_tile(tile, n_m, n_n, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of output tile number `tile` in grouped order: GROUP_M rows of tiles at a time, so that
    consecutive tiles share weight tiles in L2."""
    group_id = tile // (GROUP_M * n_n)
    first_m = group_id * GROUP_M
    size_m = tl.minimum(n_m - first_m, GROUP_M)
    return first_m + (tile % (GROUP_M * n_n)) % size_m, (tile % (GROUP_M * n_n)) // size_m


@triton.jit
def _scale_store(acc, colsum, pid_m, pid_n, M, N, sx_ptr, zx_ptr, sw_ptr, b_ptr, y_ptr, stride_ym,
                 HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The epilogue of one (BLOCK_M, BLOCK_N) int32 tile: zero point, per-token x per-channel scale, bias, store."""
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    if HAS_ZERO:
        acc -= tl.load(zx_ptr + offs_m, mask=mask_m, other=0)[:, None] * colsum[None, :]
    sx = tl.load(sx_ptr + offs_m, mask=mask_m, other=0.0)
    sw = tl.load(sw_ptr + offs_n, mask=mask_n, other=0.0)
    y = acc.to(tl.float32) * sx[:, None] * sw[None, :]
    if HAS_BIAS:
        y += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], y.to(y_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


@triton.jit(do_not_specialize=["M", "M_BUCKET"])  # one compile for every M
def w8a8_gemm_kernel(
    # pointers
    x_ptr, w_ptr, sx_ptr, zx_ptr, sw_ptr, b_ptr, y_ptr,
    # sizes
    M, N, K, M_BUCKET,
    # strides (unit stride along K / N)
    stride_xm, stride_wn, stride_ym,
    # meta-parameters
    HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid_m, pid_n = _grouped_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m, mask_n = offs_m < M, offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    colsum = tl.zeros((BLOCK_N,), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        a = tl.load(x_ptr + offs_m[:, None] * stride_xm + kk[None, :],
                    mask=mask_m[:, None] & (kk[None, :] < K), other=0)  # (BLOCK_M, BLOCK_K) int8
        b = tl.load(w_ptr + offs_n[None, :] * stride_wn + kk[:, None],
                    mask=mask_n[None, :] & (kk[:, None] < K), other=0)  # (BLOCK_K, BLOCK_N) int8
        acc = tl.dot(a, b, acc, out_dtype=ACC_DTYPE)
        if HAS_ZERO:
            colsum += tl.sum(b.to(tl.int32), axis=0)
    _scale_store(acc.to(tl.int32), colsum, pid_m, pid_n, M, N, sx_ptr, zx_ptr, sw_ptr, b_ptr, y_ptr, stride_ym,
                 HAS_ZERO, HAS_BIAS, BLOCK_M, BLOCK_N)


def get_tma_configs() -> list[triton.Config]:
    """Configs of the persistent TMA kernel (TMA marks them; Hopper and newer, K a multiple of 16). FLATTEN = 1 lets
    Triton pipeline the loads of the next output tile under this tile's epilogue. 256 x 256 tiles (16 warps) needed
    256-320 KB of shared memory on one H200, more than its 227 KB, and were dropped."""
    return [triton.Config({"TMA": 1, "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": gm, "FLATTEN": fl},
                          num_warps=w, num_stages=st)
            for bm, bn, bk, gm, w, st, fl in [
                (128, 256, 128, 8, 8, 4, 1), (256, 128, 128, 8, 8, 4, 1), (128, 256, 128, 16, 8, 4, 1),
                (128, 256, 128, 8, 8, 3, 1), (128, 256, 64, 8, 8, 5, 1), (128, 256, 128, 8, 8, 3, 0),
                (128, 128, 128, 8, 4, 5, 1), (256, 128, 64, 8, 8, 6, 0)]]


@triton.jit(do_not_specialize=["M"])
def w8a8_gemm_tma_kernel(
    # tensor descriptors of qx (M, K) and qw (N, K); pointers of the rest
    x_desc, w_desc, sx_ptr, zx_ptr, sw_ptr, b_ptr, y_ptr,
    # sizes
    M, N, K,
    # strides
    stride_ym,
    # meta-parameters
    HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, NUM_SMS: tl.constexpr, FLATTEN: tl.constexpr,
):
    """The same GEMM and epilogue as w8a8_gemm_kernel, persistent (one program per SM walks the output tiles in
    grouped order) and with the operand tiles fetched by the TMA unit (zero-filled past the edges)."""
    n_m, n_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    for tile in tl.range(tl.program_id(0), n_m * n_n, NUM_SMS, flatten=FLATTEN):
        pid_m, pid_n = _grouped_tile(tile, n_m, n_n, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        colsum = tl.zeros((BLOCK_N,), dtype=tl.int32)
        for kt in range(k_tiles):
            a = x_desc.load([pid_m * BLOCK_M, kt * BLOCK_K])  # (BLOCK_M, BLOCK_K) int8
            b = w_desc.load([pid_n * BLOCK_N, kt * BLOCK_K])  # (BLOCK_N, BLOCK_K) int8
            acc = tl.dot(a, b.T, acc, out_dtype=tl.int32)
            if HAS_ZERO:
                colsum += tl.sum(b.to(tl.int32), axis=1)
        _scale_store(acc, colsum, pid_m, pid_n, M, N, sx_ptr, zx_ptr, sw_ptr, b_ptr, y_ptr, stride_ym,
                     HAS_ZERO, HAS_BIAS, BLOCK_M, BLOCK_N)


@lru_cache(maxsize=1)
def _kernel():
    return autotuner(w8a8_gemm_kernel, get_autotune_configs())


def check_act_args(qx, sx, zx):
    """Shared by the int8-activation GEMMs: codes (M, K) int8, scale (M, 1) fp32, zero (M, 1) int32 or None."""
    check_dtype(qx, "qx", (torch.int8,))
    check_dtype(sx, "sx", (torch.float32,))
    m = qx.shape[0]
    check_shape(sx, "sx", (m, 1), "one scale per token, as act_quant_int8 returns")
    if zx is not None:
        check_dtype(zx, "zx", (torch.int32,))
        check_shape(zx, "zx", (m, 1))
    check_contiguous(qx=qx, sx=sx, zx=zx)


def w8a8_gemm(qx: torch.Tensor, sx: torch.Tensor, zx: torch.Tensor | None, qw: torch.Tensor, sw: torch.Tensor,
              bias: torch.Tensor | None = None, out_dtype: torch.dtype = torch.float16,
              config: triton.Config | None = None) -> torch.Tensor:
    """y = ((qx - zx) * sx) @ (qw * sw)^T (+ bias), computed as an int8 GEMM with an fp32 epilogue; y (M, N)."""
    check_device(qx=qx, sx=sx, zx=zx, qw=qw, sw=sw, bias=bias)
    if qx.ndim != 2 or qw.ndim != 2 or qx.shape[1] != qw.shape[1]:
        raise ValueError(f"qx {tuple(qx.shape)} and qw {tuple(qw.shape)} must be (M, K) and (N, K) with one K")
    check_act_args(qx, sx, zx)
    check_dtype(qw, "qw", (torch.int8,))
    check_dtype(sw, "sw", (torch.float32,))
    (m, k), n = qx.shape, qw.shape[0]
    check_shape(sw, "sw", (n, 1), "one scale per output channel (group_size=-1)")
    check_contiguous(qw=qw, sw=sw, bias=bias)
    if bias is not None:
        check_shape(bias, "bias", (n,))
    if out_dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"out_dtype={out_dtype} must be float16, bfloat16 or float32")
    y = torch.empty(m, n, dtype=out_dtype, device=qx.device)
    if config is None and m > TMA_MIN_M and autotune_enabled() and tma_why_not(qx, qw) is None:
        def run(cfg: triton.Config) -> torch.Tensor:
            return w8a8_gemm(qx, sx, zx, qw, sw, bias, out_dtype, cfg)

        key = (n, k, triton.next_power_of_2(m), zx is not None, bias is not None, out_dtype)
        config = tune("w8a8_gemm", key, get_autotune_configs() + get_tma_configs(), run)
    if config is not None and "TMA" in config.kwargs:
        _launch_tma(qx, sx, zx, qw, sw, bias, y, config)
        return y
    args = (qx, qw, sx, zx if zx is not None else sx, sw, bias if bias is not None else sw, y,
            m, n, k, min(triton.next_power_of_2(m), 4096), qx.stride(0), qw.stride(0), y.stride(0))
    meta = dict(HAS_ZERO=zx is not None, HAS_BIAS=bias is not None, ACC_DTYPE=tl.int32)
    grid = lambda c: (cdiv(m, c["BLOCK_M"]) * cdiv(n, c["BLOCK_N"]),)
    small = triton.Config({"BLOCK_M": 16 if m <= 16 else 128, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4})
    launch(w8a8_gemm_kernel, _kernel, grid, args, meta, config, small)
    return y


def tma_why_not(qx: torch.Tensor, qw: torch.Tensor) -> str | None:
    """None if the TMA kernel can run these operands, else why not."""
    if not interpreting() and torch.cuda.get_device_capability(qx.device)[0] < 9:
        return "the TMA kernel needs a Hopper or newer GPU (compute capability >= 9)"
    if qx.shape[1] % 16:
        return f"the TMA kernel needs K to be a multiple of 16 (16-byte rows), got K={qx.shape[1]}"
    if qx.data_ptr() % 16 or qw.data_ptr() % 16:
        return ("the TMA kernel needs qx and qw to start at 16-byte aligned addresses (a sliced view may not); "
                ".clone() them")
    return None


@lru_cache(maxsize=8)
def _num_sms(device: str) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.startswith("cuda") else 4


def _launch_tma(qx, sx, zx, qw, sw, bias, y, config: triton.Config) -> None:
    from triton.tools.tensor_descriptor import TensorDescriptor

    why = tma_why_not(qx, qw)
    if why:
        raise ValueError(why + "; use a config of get_autotune_configs()")
    kw = {k: v for k, v in config.kwargs.items() if k != "TMA"}
    (m, k), n = qx.shape, qw.shape[0]
    x_desc = TensorDescriptor.from_tensor(qx, [kw["BLOCK_M"], kw["BLOCK_K"]])
    w_desc = TensorDescriptor.from_tensor(qw, [kw["BLOCK_N"], kw["BLOCK_K"]])
    sms = _num_sms(str(qx.device))
    tiles = cdiv(m, kw["BLOCK_M"]) * cdiv(n, kw["BLOCK_N"])
    opts = {} if interpreting() else dict(num_warps=config.num_warps, num_stages=config.num_stages)
    w8a8_gemm_tma_kernel[(min(sms, tiles),)](
        x_desc, w_desc, sx, zx if zx is not None else sx, sw, bias if bias is not None else sw, y, m, n, k,
        y.stride(0), HAS_ZERO=zx is not None, HAS_BIAS=bias is not None, NUM_SMS=min(sms, tiles), **kw, **opts)


def w8a8_linear(x: torch.Tensor, qw: torch.Tensor, sw: torch.Tensor, bias: torch.Tensor | None = None,
                symmetric: bool = True, clip_ratio: float = 1.0, scale_rule: str = "qmax") -> torch.Tensor:
    """x (..., K) float -> act_quant_int8 -> w8a8_gemm -> y (..., N) in x's dtype (two launches)."""
    from .act_quant import act_quant_int8

    qx, sx, zx = act_quant_int8(x, symmetric, clip_ratio, scale_rule)
    y = w8a8_gemm(qx, sx, None if symmetric else zx, qw, sw, bias, out_dtype=x.dtype)
    return y.reshape(*x.shape[:-1], qw.shape[0])


def w8a8_gemm_ref(qx: torch.Tensor, sx: torch.Tensor, zx: torch.Tensor | None, qw: torch.Tensor, sw: torch.Tensor,
                  bias: torch.Tensor | None = None, out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """dequantize both operands with the library and multiply in fp32."""
    x = dequantize(qx, sx, torch.zeros_like(sx, dtype=torch.int32) if zx is None else zx)  # (M, K) fp32
    w = dequantize(qw, sw, torch.zeros_like(sw, dtype=torch.int32))  # (N, K) fp32
    y = x @ w.T
    return (y if bias is None else y + bias.float()).to(out_dtype)
