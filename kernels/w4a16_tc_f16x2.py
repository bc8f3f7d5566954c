"""W4A16 from M = 3 with fp16 activations: weights dequantized two at a time in fp16x2, multiplied on tensor cores.

Why another small-M kernel: from M = 3 the CUDA-core GEMVs lose (each row of x re-reads the weights or the
multiply-adds grow with M), and the tensor-core kernels that took over (the split-K tiled kernel in w4a16_gemm.py,
the "dot" path of w4a16_gemv.py) spent 6-8 instructions per weight turning nibbles into fp16 numbers: at M = 16
they moved ~1 TB/s of int4 weights on one H200 and ran no faster than cuBLAS reading four times the bytes in fp16
(results/kernels.md). Here the dequantization is the fp16x2 one of w4a16_gemv_f16x2.py, done on the bytes of the
tile as they were loaded, and the result is the *left* operand of tl.dot:

    acc (BLOCK_N, BLOCK_M) += W_lo (BLOCK_N, 32 NB) @ x_lo^T (32 NB, BLOCK_M)      and the same for the high plane

("swap AB": the padded side of the tensor-core tile is M, 16 rows of x, not the weight rows). Per 4 bytes of the
tile, inline PTX (`ASM`, pack = 4: one 32-bit register of 4 uint8 in, 4 fp16 of each plane out):
  1. two PRMTs put bytes (0, 1) and (2, 3) into the low bytes of the halves of two registers;
  2. LOP3 = (r & mask) | 0x6400: halves 1024 + u (low nibble) and 1024 + 16 u (high nibble), exact;
  3. subtract 1024 + z (low) or fma by 1/16 and add -(64 + z) (high): u - z exactly; multiply by the group scale,
     rounded once: the same fp16 weight (u - z) s as the torch path's dequantized weight.
That is 14 instructions per 8 weights (1.75 a weight) against the 6-8 of the kernels above.

Tried: Triton moves the (pure) asm into the tensor-core operand layout, converting the uint8 tile rather than the
fp16 one, and there a thread's four bytes are not adjacent: extra PRMT and LDS gather them, 5.20 loop instructions a
weight on sm_90 for the first config (`kernels/gemv_study.py --sass`). Declared not pure (`PURE = False`) the asm
stays in the load layout and the loop needs 4.17, but on one H200 it ran 1.4x slower (results/tc_study/; 64-row
tiles, 8192 x 8192 at M = 16: 38 us against 28 us; both loops are software-pipelined, the cause was not established),
so the pure form is the default.

Byte i of a tile row holds column 64 (i // 32) + i % 32 in its low nibble and 32 more in its high one (int4_pack.py),
so the low plane of a tile is the (BLOCK_N, 32 NB) matrix of low nibbles in byte order, and x is loaded at the same
columns. A tile never straddles two groups (NB = 1 or 64 NB <= G), so each plane has one scale per row.
K is split into SPLIT_K slices whose fp16 partial sums meet by atomic adds in a zeroed output.

Limits (checked by the launcher, with the fix in the message): fp16 x (bf16 has 7 mantissa bits, too few for
1024 + 16 u). Above 16 rows of x, the grid also splits M into 64- or 128-row blocks (`get_medium_configs`).
With DEQ_ASM = 0 (the interpreter, the CPU tests) the same kernel
dequantizes with plain Triton integer and float operations instead, so the tile walk, masks and dots are tested
without a GPU.

Notation: M rows of x, K input features, N output features, G group size, NB packing blocks (64 columns, 32 bytes
per row) per tile.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import triton
import triton.language as tl

from ._common import autotune_enabled, cdiv, flatten_rows, float_dot_dtype, interpreting, tune
from .int4_pack import HALF, check_w4_args
from .w4a16_gemv_f16x2 import _half2, _prmt, dequant_ptx

SMALL_M = 16  # up to here one 16-row block of x per program; above, 64- or 128-row blocks (MEDIUM configs)

# outputs $0 $1: the low-plane fp16 weights of bytes (0, 1) and (2, 3), $2 $3: the high plane's; inputs $4: the four
# bytes; per pair of bytes, half2 of 1024 + z_lo ($5 $6), of -(64 + z_hi) ($7 $8), of s_lo ($9 $10), of s_hi
# ($11 $12). Every step is elementwise: Triton may hand over any four elements of the tile (it moves this code into
# the tensor-core operand layout, where a thread's four bytes need not be adjacent or of one row).
ASM = """{
.reg .b32 p0, p1, a0, a1, b0, b1, k;
""" + dequant_ptx("$4", ("$5", "$6"), ("$7", "$8"), ("$9", "$10"), ("$11", "$12"), out=("$0", "$1", "$2", "$3")) + "}"
CONSTRAINTS = "=r,=r,=r,=r,r,r,r,r,r,r,r,r,r"


@lru_cache(maxsize=1)
def get_autotune_configs() -> list[triton.Config]:
    """Candidates timed per shape: BLOCK_N weight rows (the tensor-core M side), NB packing blocks per tile,
    SPLIT_K slices of K; num_stages > 1 lets Triton keep later tiles' loads in flight. TC marks the path for the
    small-M dispatcher. BLOCK_N = 32 (mma.sync tiles, 1-2 warps) beat the 64- and 128-row wgmma tiles at M = 4 and
    16 on the five large layers of a sweep on one H200; the first config was among the three fastest on each."""
    table = [(32, 2, 4, 2, 3), (32, 2, 8, 1, 2), (32, 2, 8, 2, 3), (32, 2, 4, 1, 2), (32, 2, 2, 2, 3),
             (16, 2, 8, 1, 2), (64, 2, 4, 4, 3), (64, 2, 8, 4, 3), (64, 2, 16, 4, 3), (128, 2, 8, 4, 3),
             (32, 1, 8, 2, 3), (32, 1, 16, 1, 2), (64, 1, 16, 4, 4)]
    return [triton.Config({"TC": 1, "BLOCK_N": bn, "NB": nb, "SPLIT_K": sk, "BLOCK_M": 16}, num_warps=w, num_stages=st)
            for bn, nb, sk, w, st in table]


@lru_cache(maxsize=1)
def get_medium_configs() -> list[triton.Config]:
    """Candidates for M > 16 (a batch of prompts, a prefill): BLOCK_M rows of x per program as well, so each
    weight tile is dequantized once per BLOCK_M rows. From a sweep of 48 configs on one H200 (results/tc_study/
    medium.log, five large layers at M = 128 and 512): 128-row blocks of x won everywhere, split-K 4 (2 on 8192 x
    8192) at M = 128 and 1 at M = 512; the first config was the fastest at M = 128 on three of the five layers.
    The NB = 1 rows serve group sizes below 128."""
    table = [(128, 2, 4, 128, 8, 3), (64, 2, 4, 128, 4, 3), (128, 2, 2, 128, 8, 4), (64, 2, 1, 128, 4, 3),
             (128, 2, 1, 128, 8, 3), (128, 2, 1, 128, 4, 3), (128, 2, 2, 128, 4, 3), (64, 2, 2, 128, 4, 3),
             (64, 1, 4, 128, 4, 3), (64, 1, 1, 128, 4, 3), (128, 1, 2, 128, 8, 3)]
    return [triton.Config({"TC": 1, "BLOCK_N": bn, "NB": nb, "SPLIT_K": sk, "BLOCK_M": bm}, num_warps=w,
                          num_stages=st) for bn, nb, sk, bm, w, st in table]


def _fits(cfg: triton.Config, group: int) -> bool:
    return cfg.kwargs["NB"] == 1 or 64 * cfg.kwargs["NB"] <= group  # a tile must not straddle two groups


@lru_cache(maxsize=16)
def configs_for(group: int, medium: bool = False) -> tuple[triton.Config, ...]:
    """The configs for this group size (no tile across two groups): small-M ones, or (medium=True) those of M > 16."""
    return tuple(c for c in (get_medium_configs() if medium else get_autotune_configs()) if _fits(c, group))


@triton.jit(do_not_specialize=["M"])
def w4a16_tc_f16x2_kernel(
    # pointers
    x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr,
    # sizes
    M, N, K,
    # strides (unit stride along K / N)
    stride_xm, stride_wn, stride_sn, stride_ym,
    # meta-parameters
    GROUP: tl.constexpr, HAS_ZEROS: tl.constexpr, HAS_BIAS: tl.constexpr, ATOMIC: tl.constexpr,
    EVEN_K: tl.constexpr, DEQ_ASM: tl.constexpr, DOT_DTYPE: tl.constexpr, ASM_TEXT: tl.constexpr,
    CONS: tl.constexpr, HALF_BLOCK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, NB: tl.constexpr,
    SPLIT_K: tl.constexpr, PURE: tl.constexpr = True,
):
    pid_n, pid_k, pid_m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    i = tl.arange(0, NB * HALF_BLOCK)  # byte of the tile row
    col = (i // HALF_BLOCK) * 64 + i % HALF_BLOCK  # its low-nibble column in the tile; high = col + 32
    rmask = rows < N
    n_tiles = tl.cdiv(K, 64 * NB)
    per_split = tl.cdiv(n_tiles, SPLIT_K)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for tile in range(pid_k * per_split, tl.minimum((pid_k + 1) * per_split, n_tiles)):
        k0 = tile * 64 * NB
        c_lo = k0 + col
        c_hi = c_lo + HALF_BLOCK
        w_ptrs = w_ptr + rows[:, None] * stride_wn + (tile * HALF_BLOCK * NB + i)[None, :]
        g_lo, g_hi = k0 // GROUP, (k0 + HALF_BLOCK) // GROUP  # one group per plane
        x_ptrs = x_ptr + offs_m[None, :] * stride_xm
        if EVEN_K:
            byte = tl.load(w_ptrs, mask=rmask[:, None], other=0)  # (BLOCK_N, 32 NB) uint8
            m_hi = rmask
            x_lo = tl.load(x_ptrs + c_lo[:, None], mask=offs_m[None, :] < M, other=0.0)  # (32 NB, BLOCK_M)
            x_hi = tl.load(x_ptrs + c_hi[:, None], mask=offs_m[None, :] < M, other=0.0)
        else:
            byte = tl.load(w_ptrs, mask=rmask[:, None] & (c_lo < K)[None, :], other=0)
            m_hi = rmask & (k0 + HALF_BLOCK < K)
            x_lo = tl.load(x_ptrs + c_lo[:, None], mask=(offs_m[None, :] < M) & (c_lo[:, None] < K), other=0.0)
            x_hi = tl.load(x_ptrs + c_hi[:, None], mask=(offs_m[None, :] < M) & (c_hi[:, None] < K), other=0.0)
        s_lo = tl.load(s_ptr + rows * stride_sn + g_lo, mask=rmask, other=0.0).to(tl.float16)  # (BLOCK_N,)
        s_hi = tl.load(s_ptr + rows * stride_sn + g_hi, mask=m_hi, other=0.0).to(tl.float16)
        if HAS_ZEROS:
            z_lo = tl.load(z_ptr + rows * stride_sn + g_lo, mask=rmask, other=0).to(tl.float32)
            z_hi = tl.load(z_ptr + rows * stride_sn + g_hi, mask=m_hi, other=0).to(tl.float32)
        else:  # symmetric codes were stored as q + 8
            z_lo = tl.full((BLOCK_N,), 8.0, tl.float32)
            z_hi = z_lo
        if DEQ_ASM:
            w_lo, w_hi = tl.inline_asm_elementwise(
                ASM_TEXT, CONS,
                [byte, tl.broadcast_to((z_lo + 1024.0).to(tl.float16)[:, None], (BLOCK_N, NB * HALF_BLOCK)),
                 tl.broadcast_to((-(z_hi + 64.0)).to(tl.float16)[:, None], (BLOCK_N, NB * HALF_BLOCK)),
                 tl.broadcast_to(s_lo[:, None], (BLOCK_N, NB * HALF_BLOCK)),
                 tl.broadcast_to(s_hi[:, None], (BLOCK_N, NB * HALF_BLOCK))],
                dtype=(tl.float16, tl.float16), is_pure=PURE, pack=4)  # PURE: see the module docstring
        else:  # the same numbers with Triton operations: (u - z) * s rounded once to x's dtype
            w_lo = (((byte & 0xF).to(tl.float32) - z_lo[:, None]) * s_lo.to(tl.float32)[:, None]).to(DOT_DTYPE)
            w_hi = (((byte >> 4).to(tl.float32) - z_hi[:, None]) * s_hi.to(tl.float32)[:, None]).to(DOT_DTYPE)
        acc = tl.dot(w_lo.to(DOT_DTYPE), x_lo.to(DOT_DTYPE), acc)  # (BLOCK_N, BLOCK_M) = y^T tile, fp32
        acc = tl.dot(w_hi.to(DOT_DTYPE), x_hi.to(DOT_DTYPE), acc)
    if HAS_BIAS:  # only the first K slice adds the bias
        acc += tl.load(b_ptr + rows, mask=rmask & (pid_k == 0), other=0.0).to(tl.float32)[:, None]
    y_ptrs = y_ptr + offs_m[None, :] * stride_ym + rows[:, None]
    mask = rmask[:, None] & (offs_m[None, :] < M)
    if ATOMIC:
        tl.atomic_add(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask, sem="relaxed")
    else:
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)



def eligible(x: torch.Tensor) -> str | None:
    """None if this kernel can run x (..., K), else why not (the launcher's error, the dispatcher's skip reason)."""
    if x.dtype != torch.float16:
        return (f"w4a16_tc_f16x2 takes fp16 activations, got {x.dtype}; use w4a16_gemm (bf16 has too few mantissa "
                "bits for the 1024 + 16 u trick)")
    return None


def w4a16_tc_f16x2(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                   group_size: int = 128, bias: torch.Tensor | None = None,
                   config: triton.Config | None = None, *,
                   checked: tuple[int, int, int] | None = None) -> torch.Tensor:
    """y = x @ W^T (+ bias) for fp16 x (..., K), any number of rows (w4a16_gemm sends it M <= 16, and larger M where
    its tuner timed it faster than the tiled kernel); arguments as w4a16_gemm. The fastest config per shape on a GPU
    (`tune`), or `config`; `checked` as in w4a16_gemv (the dispatcher ran the checks)."""
    if checked is None:
        k, n, group = check_w4_args(x, qweight, scales, zeros, group_size, bias, (torch.float16, torch.bfloat16))
        why = eligible(x)
        if why:
            raise ValueError(why)
    else:
        k, n, group = checked
    if config is not None and not _fits(config, group):
        raise ValueError(f"config NB={config.kwargs['NB']} spans {64 * config.kwargs['NB']} columns, more than one "
                         f"group of {group_size}; use NB = 1")
    x2 = flatten_rows(x)
    m = x2.shape[0]
    interp = interpreting()

    def run(cfg: triton.Config) -> torch.Tensor:
        kw = cfg.kwargs
        split = min(kw["SPLIT_K"], cdiv(k, 64 * kw["NB"]))
        y = (torch.zeros if split > 1 else torch.empty)(m, n, dtype=torch.float16, device=x.device)
        opts = {} if interp else dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        w4a16_tc_f16x2_kernel[(cdiv(n, kw["BLOCK_N"]), split, cdiv(m, kw["BLOCK_M"]))](
            x2, qweight, scales, zeros if zeros is not None else scales, bias if bias is not None else scales, y,
            m, n, k, x2.stride(0), qweight.stride(0), scales.stride(0), y.stride(0),
            GROUP=group, HAS_ZEROS=zeros is not None, HAS_BIAS=bias is not None, ATOMIC=split > 1,
            EVEN_K=k % (64 * kw["NB"]) == 0, DEQ_ASM=not interp, DOT_DTYPE=float_dot_dtype(torch.float16),
            ASM_TEXT=ASM, CONS=CONSTRAINTS, HALF_BLOCK=HALF, BLOCK_M=kw["BLOCK_M"], BLOCK_N=kw["BLOCK_N"],
            NB=kw["NB"], SPLIT_K=split, **opts)
        return y

    if config is None:
        configs = configs_for(group, m > SMALL_M)
        config = (tune("w4a16_tc_f16x2", (n, k, triton.next_power_of_2(m), group, zeros is not None,
                                          bias is not None), list(configs), run)
                  if autotune_enabled() else configs[0])
    return run(config).reshape(*x.shape[:-1], n)


# ------------------------------------------------------------------------------------- the PTX, in numpy
def _pack_half2(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    bits = lambda h: np.asarray(h, np.float16).view(np.uint16).astype(np.uint32)  # noqa: E731
    return bits(lo) | (bits(hi) << np.uint32(16))


def run_ptx(text: str, operands: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute the few PTX instructions `ASM` uses (prmt, lop3 0xEA, mov, sub / mul / fma on f16x2) on uint32 arrays:
    operands maps "$i" to the inputs; returns every register. The CPU tests run the kernel's own PTX text this way."""
    regs = dict(operands)
    val = lambda t: regs[t] if t in regs else np.uint32(int(t, 0))  # noqa: E731
    for line in text.splitlines():
        line = line.strip().rstrip(";")
        if not line or line[0] in "{}.":
            continue
        op, rest = line.split(None, 1)
        args = [a.strip() for a in rest.split(",")]
        src = [val(a) for a in args[1:]]
        if op == "prmt.b32":
            r = _prmt(src[0], int(args[3], 0)) if args[1] == args[2] else None
        elif op == "lop3.b32":
            r = (src[0] & src[1]) | src[2] if args[4] == "0xEA" else None
        elif op == "mov.b32":
            r = np.uint32(src[0])
        elif op in ("sub.f16x2", "mul.rn.f16x2", "fma.rn.f16x2"):  # exact in float64, rounded once to fp16
            halves = [_half2(v) for v in src]
            f = {"sub.f16x2": lambda a, b: a - b, "mul.rn.f16x2": lambda a, b: a * b,
                 "fma.rn.f16x2": lambda a, b, c: a * b + c}[op]
            r = _pack_half2(*(f(*(h[i].astype(np.float64) for h in halves)).astype(np.float16) for i in (0, 1)))
        else:
            r = None
        if r is None:
            raise ValueError(f"run_ptx does not model `{line}`")
        regs[args[0]] = r
    return regs


def emulate_bytes(b4, z_lo, z_hi, s_lo, s_hi, text: str = ASM) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's PTX (`text`) run by `run_ptx` on arrays of 4-byte registers b4 (uint32; byte t = element t):
    returns the fp16 weights (..., 4) of the low plane and of the high plane, element t from byte t. z_*, s_*:
    (..., 4) or broadcastable, per element: nibble-domain zero points (8 for symmetric codes) and fp16 scales."""
    w = np.asarray(b4, dtype=np.uint32)
    shape = w.shape + (4,)
    per = lambda v: np.broadcast_to(np.asarray(v, np.float64), shape).astype(np.float16)  # noqa: E731
    zl, zh, sl, sh = per(1024 + np.asarray(z_lo, np.float64)), per(-(64 + np.asarray(z_hi, np.float64))), \
        per(s_lo), per(s_hi)
    ops = {"$4": w}
    for i, v in enumerate((zl, zh, sl, sh)):  # $5 $6, $7 $8, $9 $10, $11 $12: elements (0, 1) and (2, 3)
        ops[f"${5 + 2 * i}"] = _pack_half2(v[..., 0], v[..., 1])
        ops[f"${6 + 2 * i}"] = _pack_half2(v[..., 2], v[..., 3])
    r = run_ptx(text, ops)
    out = [np.stack(_half2(r["$0"]) + _half2(r["$1"]), -1), np.stack(_half2(r["$2"]) + _half2(r["$3"]), -1)]
    return out[0], out[1]
