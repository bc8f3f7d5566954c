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

Paley sizes (K = m 2^k, m = 12, 20, ...) have a third form, `fwht_paley_kernel`. With two factors, a = m 2^j is
padded up to a power of two for the dots: K = 12288 ran as (96 -> 128) x 128 tiles, ~680 tensor flops per element,
and reached 37% of the copy bandwidth on one H200 (results/kernels.md). Three factors,
H_K = P_m (x) H_c2 (x) H_c1 with c1 c2 = 2^k, view a row as X (m, c2, c1) and contract one index per dot:

    l: X (m c2, c1) H_c1        j: (permuted to [i, l, j]) (m c1, c2) H_c2        i: P_m^T (m, c1 c2)

about 2 (c1 + c2 + 16) flops per element with m padded to 16 (~213 at K = 12288). The first product is scaled by
1 / c1 (a power of two: exact) so the fp16 intermediates stay near the size of x; the last one carries the rest of
1 / sqrt(K). Two intermediates are rounded to x's dtype instead of one.

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


def get_paley_configs() -> list[triton.Config]:
    """Configs of the three-factor kernel (PALEY marks them): ROWS rows per program, STAGES rows in flight."""
    return [triton.Config({"PALEY": 1, "ROWS": r, "STAGES": st, "BATCHED": b}, num_warps=w)
            for r, w, st, b in [(4, 8, 2, 0), (16, 8, 3, 0), (2, 4, 1, 0), (8, 8, 3, 0), (4, 8, 2, 1), (16, 8, 3, 1),
                                (8, 4, 3, 1), (8, 8, 4, 1), (16, 16, 3, 1)]]


@lru_cache(maxsize=32)
def paley_factors(k: int) -> tuple[int, int, int] | None:
    """(m, c2, c1) with H_K = P_m (x) H_c2 (x) H_c1 for a Paley size K = m 2^k, c1 = 2^ceil(k/2), c2 = 2^k / c1;
    None where K is a power of two or c2 < 16 (a tensor-core dot needs 16 on every side): the two-factor kernel."""
    f = factor_size(k)
    if f is None or f[0] == 1:
        return None
    m, p = f
    c1 = 1 << -(-(p.bit_length() - 1) // 2)
    return (m, p // c1, c1) if p // c1 >= 16 else None


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


@triton.jit
def fwht_paley_kernel(
    # pointers
    x_ptr, d_ptr, pt_ptr, h2_ptr, h1_ptr, y_ptr,
    # sizes
    M,
    # strides
    stride_xm, stride_ym,
    # numbers
    scale_1, scale_3,
    # meta-parameters
    MP: tl.constexpr, BP: tl.constexpr, C2: tl.constexpr, C1: tl.constexpr, HAS_SIGNS: tl.constexpr,
    DOT_DTYPE: tl.constexpr, ROWS: tl.constexpr, STAGES: tl.constexpr, BATCHED: tl.constexpr = 0,
):
    ip, jj, ll = tl.arange(0, BP), tl.arange(0, C2), tl.arange(0, C1)
    pt = tl.load(pt_ptr + ip[:, None] * MP + ip[None, :], mask=(ip < MP)[:, None] & (ip < MP)[None, :],
                 other=0.0).to(DOT_DTYPE)  # P_m^T padded to (BP, BP) with zeros
    h2 = tl.load(h2_ptr + jj[:, None] * C2 + jj[None, :]).to(DOT_DTYPE)
    h1 = tl.load(h1_ptr + ll[:, None] * C1 + ll[None, :]).to(DOT_DTYPE)
    offs = ip[:, None, None] * (C2 * C1) + jj[None, :, None] * C1 + ll[None, None, :]  # X[i, j, l] in the row
    offs_o = ip[:, None, None] * (C2 * C1) + ll[None, :, None] + jj[None, None, :] * C1  # Y[i, l, j] in the row
    mask, mask_o = offs < MP * C2 * C1, offs_o < MP * C2 * C1  # rows i >= m are padding
    if HAS_SIGNS:
        d = tl.load(d_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    for r in tl.range(0, ROWS, num_stages=STAGES):
        row = tl.program_id(0) * ROWS + r
        xt = tl.load(x_ptr + row * stride_xm + offs, mask=mask & (row < M), other=0.0).to(tl.float32)
        if HAS_SIGNS:
            xt = xt * d
        t = tl.dot(tl.reshape(xt.to(DOT_DTYPE), (BP * C2, C1)), h1) * scale_1  # l contracted: [i j, l]
        if BATCHED:  # j contracted by a batched dot, H_c2 X_i for every i: no transpose, the store in row order
            t = tl.dot(tl.broadcast_to(h2[None, :, :], (BP, C2, C2)), tl.reshape(t.to(DOT_DTYPE), (BP, C2, C1)))
            t = tl.dot(pt, tl.reshape(t.to(DOT_DTYPE), (BP, C2 * C1))) * scale_3  # i contracted: [i, j l]
            tl.store(y_ptr + row * stride_ym + offs, tl.reshape(t, (BP, C2, C1)).to(y_ptr.dtype.element_ty),
                     mask=mask & (row < M))
        else:  # j contracted after a transpose to [i, l, j]
            t = tl.permute(tl.reshape(t.to(DOT_DTYPE), (BP, C2, C1)), (0, 2, 1))
            t = tl.dot(tl.reshape(t, (BP * C1, C2)), h2)  # [i l, j]
            t = tl.dot(pt, tl.reshape(t.to(DOT_DTYPE), (BP, C1 * C2))) * scale_3  # i contracted: [i, l j]
            tl.store(y_ptr + row * stride_ym + offs_o, tl.reshape(t, (BP, C1, C2)).to(y_ptr.dtype.element_ty),
                     mask=mask_o & (row < M))


@lru_cache(maxsize=32)
def _paley_on(k: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P_m^T, H_c2, H_c1) float32 on `device`, copied once."""
    m, c2, c1 = paley_factors(k)
    return tuple(t.float().contiguous().to(device) for t in (paley(m - 1).T, sylvester(c2), sylvester(c1)))


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
    three = paley_factors(k)
    if config is not None and "PALEY" in config.kwargs and three is None:
        raise ValueError(f"config {config} is a three-factor (Paley) config; K={k} has no such factoring "
                         "(K = m * 2^k with m > 1 and 2^k >= 256); use a config of get_autotune_configs()")

    def run(cfg: triton.Config) -> None:
        opts = {} if interpreting() else dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        kw = dict(cfg.kwargs)
        if kw.pop("PALEY", 0):
            mp, c2, c1 = three
            pt, h2, h1 = _paley_on(k, str(x.device))
            fwht_paley_kernel[(cdiv(m, kw["ROWS"]),)](
                x2, signs if signs is not None else pt, pt, h2, h1, y, m, x2.stride(0), y.stride(0), 1.0 / c1,
                c1 / math.sqrt(k), MP=mp, BP=max(16, triton.next_power_of_2(mp)), C2=c2, C1=c1,
                HAS_SIGNS=signs is not None, DOT_DTYPE=meta["DOT_DTYPE"], **kw, **opts)
        else:
            fwht_kernel[(cdiv(m, kw["ROWS"]),)](*args, **meta, **kw, **opts)

    if config is None:
        if autotune_enabled():
            configs = get_autotune_configs() + (get_paley_configs() if three else [])
            config = tune("fwht", (m, a, b, x.dtype, signs is not None), configs, run)
        else:  # interpreter / QSCHED_AUTOTUNE=0: one row per dot pair, which fits shared memory at every K tried
            config = UNTUNED_CONFIG
    run(config)
    return y.reshape(x.shape)


def fwht_ref(x: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """The library's hadamard_transform in fp32 (butterflies + Paley block), cast to x's dtype."""
    xf = x.float() if signs is None else x.float() * signs.float()
    return hadamard_transform(xf).to(x.dtype)
