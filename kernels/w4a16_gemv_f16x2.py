"""W4A16 at M = 1..2 with fp16 activations: dequantization and products two at a time in fp16x2 registers.

Why another GEMV: at M = 1 the fp32 stream kernel (w4a16_gemv.py) is bound by instructions, not by memory. Its
CUDA-core path issues 5.5 instructions per weight in its main loop (nibble to float, multiply-add, block sums;
counted from the sm_90 SASS by kernels/gemv_study.py --sass) and moved 0.7-1.3 TB/s of int4 weights on one H200,
while a kernel that only streams the same words moved 2.0-3.1 TB/s (results/gemv_study/). This kernel does the
arithmetic of two weights per instruction, in fp16x2 (half2) registers, and fixes every tensor's register layout
by hand (Gluon, Triton's explicit-layout dialect), so nothing goes through shared memory.

One int32 word holds 8 codes of one row (layout in int4_pack.py): byte t has column 4j + t in its low nibble and
column 32 + 4j + t in its high nibble. Per word, in inline PTX (`ASM`, read it next to `emulate_word`):
  1. two PRMTs copy bytes (0, 1) and (2, 3) into the low bytes of the two halves of a register, so each register
     holds two *adjacent* columns: (4j, 4j+1) and (4j+2, 4j+3), low and high nibbles;
  2. LOP3 = (r & mask) | 0x6400 puts a nibble into the mantissa of the fp16 1024: the half is 1024 + u (low nibble)
     or 1024 + 16 u (high nibble), exactly, with no int -> float conversion;
  3. subtract 1024 + z (low) or fma by 1/16 and subtract 64 + z (high): u - z exactly; multiply by the group scale:
     the fp16 weight (u - z) s, the same number the torch path's dequantized fp16 weight holds;
  4. four fp16x2 multiply-adds with x, which is read straight from memory as int64 words of 4 fp16 columns (the
     column pairs of step 1 are adjacent in x too), then the two halves go to fp32 and are added.
Each fp32 partial sum therefore holds 8 products of one word, summed 4 per half in fp16; the sums over words,
blocks and K are fp32. Products are of the fp16 weight, so |w x| stays small (no overflow from the 0..15 codes).

Layout (L3 below): each thread owns 4 consecutive words (16-byte loads) of SPT_R rows of one packing block; x and
the per-(row, block) scales and zeros are loaded directly in slices of the same layout and broadcast in registers.
Scales and zeros become half2 bit patterns with integer operations (1024 + z is 0x6400 | z in fp16, -(64 + z) is
0xD400 | 16 z), once per (row, block), or once per block for both planes when G is a multiple of 64.
Grid: (row blocks, K slices, rows of x); K slices meet by fp16 atomic adds in a zeroed output (split-K).

Limits (checked by the launcher, with the fix in the message): fp16 x (bf16 has too few mantissa bits for the
1024 + 16 u trick; use w4a16_gemv), at most 2 rows of x, K a multiple of 4 (int64 loads; a strided or
misaligned x is copied first), a CUDA GPU (inline PTX does not run under TRITON_INTERPRET=1; the CPU tests check
`emulate_word`, the same steps in numpy, against the reference). Measured: results/kernels_f16x2/kernels.md (the
W4A16 f16x2 column) and results/gemv_study/; analysis in kernels/bench_notes.md.

Notation: M rows of x, K input features, N output features, G group size, KW = Kp // 8 words per weight row,
NBLK = Kp // 64 packing blocks.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from ._common import autotune_enabled, cdiv, flatten_rows, interpreting, tune
from .int4_pack import check_w4_args

MAX_M = 2  # above this the tensor-core kernels win: each row of x re-reads the weights here

def dequant_ptx(word: str, z_lo: tuple[str, str], z_hi: tuple[str, str], s_lo: tuple[str, str],
                s_hi: tuple[str, str], out: tuple[str, str, str, str] = ("a0", "a1", "b0", "b1")) -> str:
    """The PTX lines that turn the four bytes of register `word` into eight fp16 weights (u - z) s, as half2 pairs
    (steps 1-3 of the module docstring): out[0] / out[1] = the low nibbles of bytes (0, 1) / (2, 3), out[2] / out[3]
    = the high ones. z_lo, z_hi, s_lo, s_hi name the half2 operands of 1024 + z_lo, -(64 + z_hi), s_lo and s_hi, one
    for bytes (0, 1) and one for (2, 3) (the same operand twice where the four bytes share one row and group). The
    lines use the registers p0, p1, a0, a1, b0, b1 and k; both fp16x2 kernels build their asm from them."""
    return f"""prmt.b32 p0, {word}, {word}, 0x1100;
prmt.b32 p1, {word}, {word}, 0x3322;
lop3.b32 a0, p0, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 b0, p0, 0x00F000F0, 0x64006400, 0xEA;
lop3.b32 a1, p1, 0x000F000F, 0x64006400, 0xEA;
lop3.b32 b1, p1, 0x00F000F0, 0x64006400, 0xEA;
sub.f16x2 a0, a0, {z_lo[0]};
sub.f16x2 a1, a1, {z_lo[1]};
mov.b32 k, 0x2C002C00;
fma.rn.f16x2 b0, b0, k, {z_hi[0]};
fma.rn.f16x2 b1, b1, k, {z_hi[1]};
mul.rn.f16x2 {out[0]}, a0, {s_lo[0]};
mul.rn.f16x2 {out[1]}, a1, {s_lo[1]};
mul.rn.f16x2 {out[2]}, b0, {s_hi[0]};
mul.rn.f16x2 {out[3]}, b1, {s_hi[1]};
"""


# $0: fp32 sum of the word's 8 products; $1 word; $2 / $3: half2 of (1024 + z_lo) / -(64 + z_hi);
# $4 / $5: half2 of s_lo / s_hi; $6 / $7: x columns 4j..4j+3 / 32+4j..32+4j+3 as int64 (4 fp16 each)
ASM = """{
.reg .b32 p0, p1, a0, a1, b0, b1, k, t, xl0, xl1, xh0, xh1;
.reg .b16 l0, l1;
.reg .f32 f0, f1;
mov.b64 {xl0, xl1}, $6;
mov.b64 {xh0, xh1}, $7;
""" + dequant_ptx("$1", ("$2", "$2"), ("$3", "$3"), ("$4", "$4"), ("$5", "$5")) + """mul.rn.f16x2 t, a0, xl0;
fma.rn.f16x2 t, a1, xl1, t;
fma.rn.f16x2 t, b0, xh0, t;
fma.rn.f16x2 t, b1, xh1, t;
mov.b32 {l0, l1}, t;
cvt.f32.f16 f0, l0;
cvt.f32.f16 f1, l1;
add.f32 $0, f0, f1;
}"""


@lru_cache(maxsize=1)
def get_autotune_configs() -> list[triton.Config]:
    """Candidates timed per shape: BLOCK_N rows and NB packing blocks per tile, SPT_R rows per thread, TB threads
    along the blocks (the other 32 / (2 TB) along rows), SPLIT_K slices of K. Each thread owns 4 words per row and
    block; the first config was the fastest on most large layers of one H200 run (kernels/bench_notes.md)."""
    table = [(2, 16, 1, 16, 1, 1), (4, 16, 1, 16, 2, 1), (4, 16, 2, 16, 2, 1), (8, 16, 1, 16, 4, 1),
             (4, 8, 1, 8, 1, 1), (8, 8, 1, 8, 2, 1), (2, 16, 1, 16, 1, 2), (4, 16, 2, 16, 2, 2), (4, 16, 1, 16, 2, 2)]
    return [triton.Config({"F16X2": 1, "BLOCK_N": bn, "NB": nb, "SPT_R": spt, "TB": tb, "SPLIT_K": sk}, num_warps=w)
            for bn, nb, spt, tb, w, sk in table]


@gluon.jit
def _pair(h):
    """The 16 low bits h of an int32 twice: the bits of the half2 (v, v) when h holds the bits of the fp16 v."""
    return h | (h << 16)


@gluon.jit
def w4a16_gemv_f16x2_kernel(
    # pointers (x_ptr: x read as int64, 4 fp16 columns each; w_ptr: the packed weight read as int32 words)
    x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr,
    # sizes (K4 = K // 4 int64 words of x per row)
    N, K, K4, KW,
    # strides (x in int64 words)
    stride_xm, stride_wn, stride_sn, stride_ym,
    # meta-parameters
    GROUP: gl.constexpr, HAS_ZEROS: gl.constexpr, HAS_BIAS: gl.constexpr, ATOMIC: gl.constexpr,
    EVEN_K: gl.constexpr, BLOCK_N: gl.constexpr, NB: gl.constexpr, SPT_R: gl.constexpr, TB: gl.constexpr,
    WARPS: gl.constexpr, ASM_TEXT: gl.constexpr,
):
    # (rows, blocks, words of a block): 4 words per thread, TB threads along the blocks, warps along the rows
    L3: gl.constexpr = gl.BlockedLayout([SPT_R, 1, 4], [32 // (2 * TB), TB, 2], [WARPS, 1, 1], [2, 1, 0])
    L2: gl.constexpr = gl.SliceLayout(2, L3)  # (rows, blocks): scales, zeros
    LR: gl.constexpr = gl.SliceLayout(1, L2)  # (rows,): the output
    LB: gl.constexpr = gl.SliceLayout(0, L2)  # (blocks,)
    LJ: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(1, L3))  # (words,)
    pid_n = gl.program_id(0)
    pid_k = gl.program_id(1)
    pid_m = gl.program_id(2)
    rows = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=LR)
    r2 = gl.expand_dims(rows, 1)  # (BN, 1)
    b2 = gl.expand_dims(gl.arange(0, NB, layout=LB), 0)  # (1, NB)
    j3 = gl.expand_dims(gl.expand_dims(gl.arange(0, 8, layout=LJ), 0), 1)  # (1, 1, 8)
    r3 = gl.expand_dims(r2, 2)  # (BN, 1, 1)
    x_row = x_ptr + pid_m * stride_xm
    n_blocks = KW // 8
    n_tiles = (n_blocks + NB - 1) // NB
    per_split = (n_tiles + gl.num_programs(1) - 1) // gl.num_programs(1)
    acc3 = gl.zeros((BLOCK_N, NB, 8), gl.float32, L3)
    for tile in range(pid_k * per_split, gl.minimum((pid_k + 1) * per_split, n_tiles)):
        blk2 = tile * NB + b2  # (1, NB) packing blocks of this tile
        blk3 = gl.expand_dims(blk2, 2)
        if EVEN_K:  # the tile lies inside K: only rows are masked
            words = gl.load(w_ptr + r3 * stride_wn + blk3 * 8 + j3, mask=r3 < N, other=0)  # (BN, NB, 8)
            m_lo = r2 < N
            m_hi = m_lo
        else:
            words = gl.load(w_ptr + r3 * stride_wn + blk3 * 8 + j3, mask=(r3 < N) & (blk3 < n_blocks), other=0)
            m_lo = (r2 < N) & (blk2 * 64 < K)  # (BN, NB): the plane holds columns of the layer
            m_hi = (r2 < N) & (blk2 * 64 + 32 < K)
        # per (row, block) and plane, as fp16 bits: the scale, 1024 + z (= 0x6400 | z) and -(64 + z) (= 0xD400 | 16 z)
        if GROUP % 64 == 0:  # both planes of a block lie in one group: one scale and one zero per (row, block)
            g_lo = blk2 // (GROUP // 64)
            g_hi = g_lo
        else:
            g_lo = (blk2 * 64) // GROUP
            g_hi = (blk2 * 64 + 32) // GROUP
        s_lo = gl.load(s_ptr + r2 * stride_sn + g_lo, mask=m_lo, other=0.0).to(gl.float16)
        s_lo = s_lo.to(gl.int16, bitcast=True).to(gl.int32) & 0xFFFF
        if GROUP % 64 == 0:
            s_hi = s_lo
        else:
            s_hi = gl.load(s_ptr + r2 * stride_sn + g_hi, mask=m_hi, other=0.0).to(gl.float16)
            s_hi = s_hi.to(gl.int16, bitcast=True).to(gl.int32) & 0xFFFF
        if HAS_ZEROS:
            z_lo = gl.load(z_ptr + r2 * stride_sn + g_lo, mask=m_lo, other=0).to(gl.int32)
            if GROUP % 64 == 0:
                z_hi = z_lo
            else:
                z_hi = gl.load(z_ptr + r2 * stride_sn + g_hi, mask=m_hi, other=0).to(gl.int32)
        else:  # symmetric codes were stored as q + 8
            z_lo = gl.full((BLOCK_N, NB), 8, gl.int32, L2)
            z_hi = z_lo
        xi_lo = blk3 * 16 + j3  # (1, NB, 8) int64 word of x holding columns 4 xi .. 4 xi + 3
        xi_hi = xi_lo + 8
        if EVEN_K:
            x_lo = gl.load(x_row + xi_lo)
            x_hi = gl.load(x_row + xi_hi)
        else:
            x_lo = gl.load(x_row + xi_lo, mask=xi_lo < K4, other=0)
            x_hi = gl.load(x_row + xi_hi, mask=xi_hi < K4, other=0)
        w0 = words * 0  # broadcasts every operand to the word tile, in registers
        w064 = w0.to(gl.int64)
        acc3 += gl.inline_asm_elementwise(
            ASM_TEXT, "=f,r,r,r,r,r,l,l",
            [words, gl.expand_dims(_pair(z_lo | 0x6400), 2) + w0, gl.expand_dims(_pair((z_hi << 4) | 0xD400), 2) + w0,
             gl.expand_dims(_pair(s_lo), 2) + w0, gl.expand_dims(_pair(s_hi), 2) + w0, x_lo + w064, x_hi + w064],
            dtype=gl.float32, is_pure=True, pack=1)
    acc = gl.sum(gl.sum(acc3, axis=2), axis=1)  # (BN,)
    if HAS_BIAS:  # only the first K slice adds the bias
        acc += gl.load(b_ptr + rows, mask=(rows < N) & (pid_k == 0), other=0.0).to(gl.float32)
    y_ptrs = y_ptr + pid_m * stride_ym + rows
    if ATOMIC:
        gl.atomic_add(y_ptrs, acc.to(gl.float16), mask=rows < N, sem="relaxed")
    else:
        gl.store(y_ptrs, acc.to(gl.float16), mask=rows < N)


def eligible(x: torch.Tensor) -> str | None:
    """None if this kernel can run x (..., K), else why not (the launcher's error, the dispatcher's skip reason)."""
    if x.dtype != torch.float16:
        return f"w4a16_gemv_f16x2 takes fp16 activations, got {x.dtype}; use w4a16_gemv (fp32 arithmetic)"
    m = x.numel() // max(x.shape[-1], 1)
    if m > MAX_M:
        return f"w4a16_gemv_f16x2 takes at most {MAX_M} rows of x, got M={m}; use w4a16_gemm"
    if x.shape[-1] % 4:
        return (f"w4a16_gemv_f16x2 reads x as int64 words of 4 columns: K={x.shape[-1]} is not a multiple of 4; "
                "use w4a16_gemv")
    if interpreting() or not x.is_cuda:
        return ("w4a16_gemv_f16x2 runs inline PTX on an NVIDIA GPU, not under TRITON_INTERPRET=1 or on the CPU; "
                "use w4a16_gemv")
    return None


def w4a16_gemv_f16x2(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                     group_size: int = 128, bias: torch.Tensor | None = None,
                     config: triton.Config | None = None, *,
                     checked: tuple[int, int, int] | None = None) -> torch.Tensor:
    """y = x @ W^T (+ bias) for fp16 x (..., K) with at most 2 rows; arguments as w4a16_gemm (layout in
    int4_pack.py). The fastest config per shape on a GPU (`tune`), or `config`. `checked` = (K, N, group) from a
    caller that ran `check_w4_args` and `eligible` on these arguments: both are skipped (see w4a16_gemv)."""
    if checked is None:
        k, n, group = check_w4_args(x, qweight, scales, zeros, group_size, bias, (torch.float16, torch.bfloat16))
        why = eligible(x)
        if why:
            raise ValueError(why)
    else:
        k, n, group = checked
    x2 = flatten_rows(x)  # (M, K), unit stride along K
    m = x2.shape[0]
    if x2.data_ptr() % 8 or x2.stride(0) % 4 or not x2.is_contiguous():  # int64 loads: 8-byte aligned rows
        x2 = x2.clone(memory_format=torch.contiguous_format)  # a view into a larger tensor: a fresh copy
    x64 = x2.view(torch.int64)  # (M, K // 4): 4 fp16 columns per word
    words = qweight.view(torch.int32)  # (N, Kp // 2) uint8 -> (N, KW) int32

    def run(cfg: triton.Config) -> torch.Tensor:
        kw = cfg.kwargs
        n_tiles = cdiv(words.shape[1] // 8, kw["NB"])
        split = min(kw["SPLIT_K"], n_tiles)
        y = (torch.zeros if split > 1 else torch.empty)(m, n, dtype=torch.float16, device=x.device)
        grid = (cdiv(n, kw["BLOCK_N"]), split, m)
        w4a16_gemv_f16x2_kernel[grid](
            x64, words, scales, zeros if zeros is not None else scales, bias if bias is not None else scales, y,
            n, k, k // 4, words.shape[1], x64.stride(0), words.stride(0), scales.stride(0), y.stride(0),
            GROUP=group, HAS_ZEROS=zeros is not None, HAS_BIAS=bias is not None, ATOMIC=split > 1,
            EVEN_K=k % (64 * kw["NB"]) == 0,
            BLOCK_N=kw["BLOCK_N"], NB=kw["NB"], SPT_R=kw["SPT_R"], TB=kw["TB"], WARPS=cfg.num_warps, ASM_TEXT=ASM,
            num_warps=cfg.num_warps)
        return y

    if config is None:
        configs = get_autotune_configs()
        config = (tune("w4a16_f16x2", (n, k, m, group, zeros is not None, bias is not None), configs, run)
                  if autotune_enabled() else configs[0])
    return run(config).reshape(*x.shape[:-1], n)


# ------------------------------------------------------------------------------------- the PTX, in numpy
def _half2(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint32 -> its (low, high) fp16 halves."""
    b = np.asarray(bits, dtype=np.uint32)
    lo = (b & np.uint32(0xFFFF)).astype(np.uint16).view(np.float16)
    hi = (b >> np.uint32(16)).astype(np.uint16).view(np.float16)
    return lo, hi


def _prmt(a: np.ndarray, sel: int) -> np.ndarray:
    """PTX prmt.b32 d, a, a, sel (default mode, selector nibbles < 4): byte i of d = byte sel[4i:4i+4] of a."""
    by = [(a >> np.uint32(8 * i)) & np.uint32(0xFF) for i in range(4)]
    return sum(by[(sel >> (4 * i)) & 0x3] << np.uint32(8 * i) for i in range(4)).astype(np.uint32)


def emulate_word(word, x_lo4, x_hi4, z_lo, z_hi, s_lo, s_hi) -> np.ndarray:
    """`ASM` step by step in numpy fp16 arithmetic, for arrays of words: the fp32 sum of each word's 8 products.

    word: uint32; x_lo4 / x_hi4: (..., 4) fp16 columns 4j..4j+3 / 32+4j..32+4j+3 of x; z_*: nibble-domain zero
    points (8 for symmetric codes); s_*: fp16 group scales of the low / high plane."""
    f16, f64 = np.float16, np.float64
    fma = lambda a, b, c: (a.astype(f64) * b.astype(f64) + c.astype(f64)).astype(f16)  # noqa: E731 one rounding
    w = np.asarray(word, dtype=np.uint32)
    p0, p1 = _prmt(w, 0x1100), _prmt(w, 0x3322)  # bytes (0, 1) and (2, 3) into the two halves
    lop = lambda r, mask: _half2((r & np.uint32(mask)) | np.uint32(0x64006400))  # noqa: E731
    a0, b0, a1, b1 = lop(p0, 0x000F000F), lop(p0, 0x00F000F0), lop(p1, 0x000F000F), lop(p1, 0x00F000F0)
    zl = (f16(1024) + np.asarray(z_lo, f64)).astype(f16)
    zh = (-(64 + np.asarray(z_hi, f64))).astype(f16)
    sl, sh = np.asarray(s_lo, f16), np.asarray(s_hi, f16)
    lo = [((h - zl).astype(f16) * sl).astype(f16) for h in a0 + a1]  # (u - z) s, columns 4j .. 4j + 3
    hi = [(fma(h, f16(0.0625), zh) * sh).astype(f16) for h in b0 + b1]  # columns 32 + 4j .. 32 + 4j + 3
    xl, xh = np.asarray(x_lo4, f16), np.asarray(x_hi4, f16)
    # half 0 of the accumulator sums columns 4j, 4j+2, 32+4j, 32+4j+2; half 1 the odd ones, in this order
    t0, t1 = (lo[0] * xl[..., 0]).astype(f16), (lo[1] * xl[..., 1]).astype(f16)
    t0, t1 = fma(lo[2], xl[..., 2], t0), fma(lo[3], xl[..., 3], t1)
    t0, t1 = fma(hi[0], xh[..., 0], t0), fma(hi[1], xh[..., 1], t1)
    t0, t1 = fma(hi[2], xh[..., 2], t0), fma(hi[3], xh[..., 3], t1)
    return t0.astype(np.float32) + t1.astype(np.float32)
