"""Checks for notebook 07: packing int4 codes by hand, and the batch size where a layer becomes compute-bound."""
from __future__ import annotations

import torch

from .common import _close, _unanswered, _verdict


def check_packed_bytes(answer, codes: torch.Tensor) -> bool:
    """`answer`: the bytes (ints 0-255) of the first row of `pack_int4(codes)`, one per column pair (j, j + 32)."""
    from kernels.int4_pack import pack_int4

    if _unanswered(answer, "a list of byte values (ints 0-255)"):
        return False
    want = pack_int4(codes)[0].tolist()
    try:
        got = [int(v) for v in answer]
    except (TypeError, ValueError):
        return _verdict(False, "", "give a list of ints, e.g. [0x80, 0x81, ...]")
    if got != want[:len(got)] or not got:
        swapped = [(w >> 4) | ((w & 15) << 4) for w in want]
        hint = ("low and high nibbles are swapped: column j goes in the low half, column j + 32 in the high half"
                if got == swapped[:len(got)] else "each byte is (q[j + 32] + 8) << 4 | (q[j] + 8), with "
                "q the signed codes (-8..7)")
        return _verdict(False, "", hint)
    return _verdict(True, f"the first {len(got)} bytes match pack_int4 ({', '.join(hex(v) for v in got[:4])}, ...)", "")


def ridge_batch(bandwidth_tbps: float, peak_tflops: float, n: int = 8192, k: int = 8192, nbytes: int = 2) -> float:
    """The batch M at which an (N, K) fp16 GEMM's intensity 2MNK / (nbytes (NK + MK + MN)) equals peak / bandwidth."""
    ridge = peak_tflops / bandwidth_tbps * nbytes / 2        # flop per byte at the ridge, in units of 2 / nbytes
    if n * k <= ridge * (n + k):
        return float("inf")                               # never compute-bound: the output traffic grows as fast
    return ridge * n * k / (n * k - ridge * (n + k))


def check_ridge_batch(answer, bandwidth_tbps: float, peak_tflops: float, n: int = 8192, k: int = 8192) -> bool:
    """`answer`: the batch M where an n x k fp16 layer crosses the roofline's ridge (weights, inputs, outputs)."""
    if _unanswered(answer, "a batch size M (a number)"):
        return False
    want, ridge = ridge_batch(bandwidth_tbps, peak_tflops, n, k), peak_tflops / bandwidth_tbps
    if _close(answer, ridge, 0.02) and not _close(ridge, want, 0.03):
        return _verdict(False, "", f"{ridge:.0f} counts the weight bytes only; the activations (M x K) and outputs "
                        "(M x N) are read and written too")
    return _verdict(_close(answer, want, 0.03),
                    f"M = {want:.0f}: below it the layer waits for memory, above it for the tensor cores "
                    f"(ridge {ridge:.0f} flop/byte)",
                    "set the intensity 2MNK / (2 (NK + MK + MN)) equal to peak / bandwidth and solve for M")


def check_scale_column(answer, q_x, s_x, z_x, q_w, s_w, entry: int) -> bool:
    """`answer`: (output column, factor): what doubling weight scale `s_w[entry]` does to `w8a8_gemm_ref`'s output."""
    from kernels.w8a8_gemm import w8a8_gemm_ref

    if _unanswered(answer, "a pair (output column, factor)"):
        return False
    bad = s_w.clone()
    bad.view(-1)[entry] *= 2
    y, y_bad = (w8a8_gemm_ref(q_x, s_x, z_x, q_w, s).float() for s in (s_w, bad))  # (M, N)
    changed = ((y_bad - y).abs().amax(0) > 1e-3 * y.abs().max()).nonzero().flatten().tolist()
    factor = float((y_bad[:, changed[0]] / y[:, changed[0]]).median())
    try:
        col, f = int(answer[0]), float(answer[1])
    except (TypeError, ValueError, IndexError):
        return _verdict(False, "", "give a pair (output column, factor), e.g. (3, 0.5)")
    return _verdict(col == changed[0] and len(changed) == 1 and _close(f, factor, 0.02),
                    f"only column {changed[0]} changes, by x{factor:.3f}: y_mn = s^x_m s^w_n (integer dot), so s^w_n "
                    "scales output column n and nothing else",
                    "compare the two outputs column by column ((y_bad - y_ref).abs().amax(0)), then divide the "
                    "changed column by its reference")
