"""W4A16 at large M: dequantize the packed weight into fp16/bf16 once, then one cuBLAS matmul.

Why a second strategy: the fused kernels (w4a16_gemm.py, w4a16_tc_f16x2.py) save weight bytes, which is what limits
a GEMM at small M. At large M a GEMM is limited by its multiply-adds instead, and there cuBLAS runs them faster than
any of our Triton tiles, which also spend instructions on dequantizing every tile once per BLOCK_M rows of x: at
M = 4096 the tiled kernel ran at 0.29-0.35x of cuBLAS fp16 on one H200 (results/kernels.md). Writing the fp16 weight
costs one pass of 0.5 + 2 bytes per weight (about 40 us for 8192 x 8192 at the copy bandwidth), small next to the
matmul's 700 us at M = 4096 and large next to a GEMV: `w4a16_gemm`'s tuner decides per shape and M. Measured on the
same GPU: 0.93-0.95x of cuBLAS fp16 at M = 4096 on the layers >= 32 MB, 0.39-0.49x at M = 128 (where the
tensor-core kernel wins), `results/kernels.md`.

The price is memory: while the call runs, one layer's weight exists in fp16 (2 N K bytes, freed afterwards); the
stored model stays packed (int4_pack.py).

`dequant_w4_kernel` writes (BLOCK_N, 64 NB) tiles of the weight in column order, so its stores are contiguous; each
output column reads the byte that holds it (layout in int4_pack.py: byte i of a 64-column block holds column i in
its low nibble and column i + 32 in its high one; every byte is read twice, the second time from L1). It writes
(u - z) * s rounded once to the output dtype, the same weight the fused kernels and the torch path use. Notation as
in w4a16_gemm.py.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from qsched_core.quant.primitives import dequantize

from ._common import FLOAT_ACTS, autotune_enabled, cdiv, interpreting, tune
from .int4_pack import HALF, check_w4_args, unpack_int4_ref


@lru_cache(maxsize=1)
def get_autotune_configs() -> list[triton.Config]:
    """DEQ_MM marks the path for w4a16_gemm's dispatcher; BLOCK_N rows x NB packing blocks (64 NB columns) per
    program. NB = 2 tiles serve G >= 128 only (a tile holds one group per nibble plane); NB = 1 serves every G."""
    return [triton.Config({"DEQ_MM": 1, "BLOCK_N": bn, "NB": nb}, num_warps=w)
            for bn, nb, w in [(32, 2, 4), (64, 2, 4), (16, 2, 4), (128, 2, 8), (32, 1, 4), (64, 1, 4)]]


def _fits(cfg: triton.Config, group: int) -> bool:
    return cfg.kwargs["NB"] == 1 or 64 * cfg.kwargs["NB"] <= group


@triton.jit
def dequant_w4_kernel(
    # pointers
    w_ptr, s_ptr, z_ptr, out_ptr,
    # sizes
    N, K,
    # strides (unit stride along K)
    stride_wn, stride_sn, stride_on,
    # meta-parameters
    GROUP: tl.constexpr, HAS_ZEROS: tl.constexpr, HALF_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr,
    NB: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * NB * 2 * HALF_BLOCK  # first column of the tile
    c = tl.arange(0, NB * 2 * HALF_BLOCK)  # output column in the tile: contiguous, so stores are wide
    i = (c // (2 * HALF_BLOCK)) * HALF_BLOCK + c % HALF_BLOCK  # the byte that holds it ...
    high = (c // HALF_BLOCK) % 2  # ... in its high nibble (1) or low one (0)
    rmask = rows < N
    mask = rmask[:, None] & (k0 + c < K)[None, :]
    byte = tl.load(w_ptr + rows[:, None] * stride_wn + (k0 // 2 + i)[None, :], mask=mask, other=0)
    u = ((byte >> (4 * high).to(tl.uint8)[None, :]) & 0xF).to(tl.int32)  # each byte read twice, from L1
    # one group per nibble plane of the tile (NB = 1, or 64 NB <= G): two scale vectors, picked per column
    g_lo, g_hi = k0 // GROUP, (k0 + HALF_BLOCK) // GROUP
    m_hi = rmask & (k0 + HALF_BLOCK < K)
    s_lo = tl.load(s_ptr + rows * stride_sn + g_lo, mask=rmask, other=0.0).to(tl.float32)
    s_hi = tl.load(s_ptr + rows * stride_sn + g_hi, mask=m_hi, other=0.0).to(tl.float32)
    s = tl.where(high[None, :] == 1, s_hi[:, None], s_lo[:, None])
    if HAS_ZEROS:
        z_lo = tl.load(z_ptr + rows * stride_sn + g_lo, mask=rmask, other=0).to(tl.int32)
        z_hi = tl.load(z_ptr + rows * stride_sn + g_hi, mask=m_hi, other=0).to(tl.int32)
        u -= tl.where(high[None, :] == 1, z_hi[:, None], z_lo[:, None])
    else:  # symmetric codes were stored as q + 8
        u -= 8
    tl.store(out_ptr + rows[:, None] * stride_on + (k0 + c)[None, :], (u.to(tl.float32) * s).to(
        out_ptr.dtype.element_ty), mask=mask)


def configs_for(group: int) -> list[triton.Config]:
    """The configs whose tiles hold one group per nibble plane for this group size."""
    return [c for c in get_autotune_configs() if _fits(c, group)]


def dequant_w4(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, k: int,
               group_size: int = 128, dtype: torch.dtype = torch.float16,
               config: triton.Config | None = None) -> torch.Tensor:
    """The (N, K) weight (codes - zero) * scale in `dtype` (fp16 / bf16) from `pack_int4_weight`'s tensors."""
    if dtype not in FLOAT_ACTS:
        raise ValueError(f"dtype={dtype}: dequant_w4 writes torch.float16 or torch.bfloat16 weights")
    x_like = torch.empty(1, k, dtype=dtype, device=qweight.device)  # check_w4_args validates against an x
    _, n, group = check_w4_args(x_like, qweight, scales, zeros, group_size, None, FLOAT_ACTS)
    return _dequant(qweight, scales, zeros, n, k, group, dtype, config or configs_for(group)[0])


def _dequant(qweight, scales, zeros, n: int, k: int, group: int, dtype, cfg: triton.Config) -> torch.Tensor:
    if not _fits(cfg, group):
        raise ValueError(f"config NB={cfg.kwargs['NB']} spans {64 * cfg.kwargs['NB']} columns, more than one group "
                         f"of {group}; use NB = 1")
    out = torch.empty(n, k, dtype=dtype, device=qweight.device)
    kw = cfg.kwargs
    grid = (cdiv(n, kw["BLOCK_N"]), cdiv(qweight.shape[1], kw["NB"] * HALF))
    opts = {} if interpreting() else dict(num_warps=cfg.num_warps)
    dequant_w4_kernel[grid](qweight, scales, zeros if zeros is not None else scales, out, n, k, qweight.stride(0),
                            scales.stride(0), out.stride(0), GROUP=group, HAS_ZEROS=zeros is not None,
                            HALF_BLOCK=HALF, BLOCK_N=kw["BLOCK_N"], NB=kw["NB"], **opts)
    return out


def w4a16_dequant_mm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                     zeros: torch.Tensor | None = None, group_size: int = 128, bias: torch.Tensor | None = None,
                     config: triton.Config | None = None, *,
                     checked: tuple[int, int, int] | None = None) -> torch.Tensor:
    """y = x @ W^T (+ bias) as F.linear(x, dequant_w4(...), bias); arguments as w4a16_gemm; `checked` as in
    w4a16_gemv (the dispatcher ran the checks). The dequantization config is tuned per weight shape on a GPU."""
    k, n, group = checked or check_w4_args(x, qweight, scales, zeros, group_size, bias, FLOAT_ACTS)
    if config is None:
        configs = configs_for(group)
        config = (tune("w4a16_dequant", (n, k, group, zeros is not None, x.dtype), configs,
                       lambda c: _dequant(qweight, scales, zeros, n, k, group, x.dtype, c))
                  if autotune_enabled() else configs[0])
    w = _dequant(qweight, scales, zeros, n, k, group, x.dtype, config)
    return F.linear(x, w, None if bias is None else bias.to(x.dtype))  # an fp32 bias is rounded to x's dtype


def dequant_w4_ref(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, k: int,
                   group_size: int = 128, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """The library's dequantize (fp32) of the unpacked codes, rounded once to `dtype`."""
    q = unpack_int4_ref(qweight, k, zeros is None)
    zero = torch.zeros_like(scales, dtype=torch.int32) if zeros is None else zeros.to(torch.int32)
    return dequantize(q, scales.float(), zero).to(dtype)
