"""Quantization primitives: the fixed vocabulary every quantizer in this repo is written in.

    choose_qparams(x, bits, group_size, symmetric)  -> (scale, zero)
    quantize(x, scale, zero, bits, symmetric)        -> integer codes q
    dequantize(q, scale, zero)                       -> x_hat = (q - zero) * scale
    fake_quantize(x, bits, group_size, symmetric)    =  dequantize(quantize(x)), straight-through gradient
    round_ste(x)                                     =  round with an identity gradient

Everything is "simulated" (fake) quantization: integer codes are real, but the matmul that follows runs in
float32 on dequantized values. That is enough to measure accuracy, which is what this repo studies; the
Triton kernels in `kernels/` are the place where codes are packed and multiplied as integers, and they use
these functions as their reference.

Notation: x is (..., K), K the last (input / feature) dimension; G the group size; B the bit-width;
N the output features of a weight (N, K). Scales are float32 and zero points int32 whatever x's dtype.

Conventions. Codes are q = clamp(round(x * (1/s)) + z, qmin, qmax) (round half to even, multiplication by
the reciprocal scale, as torchao's `quantize_affine` does), and x_hat = (q - z) * s. Scales:
  symmetric, scale_rule="torchao" (default)  s = max|x| / ((qmax - qmin) / 2) = max|x| / 7.5 for int4,
                                              z = 0, q in [-2^(B-1), 2^(B-1) - 1]: all 2^B levels used
  symmetric, scale_rule="qmax"                s = max|x| / (2^(B-1) - 1) = max|x| / 7 for int4, z = 0: the
                                              most negative level is never reached (QuaRot's convention,
                                              and torchao's reduced-range [-127, 127] int8 activations)
  asymmetric                                  s = (max - min) / (2^B - 1), z = round(-min / s), q in [0, 2^B - 1]
with min <= 0 <= max forced, so 0.0 is always exactly representable (zero padding and ReLU zeros stay 0).
The "torchao" symmetric grid is 7% finer for int4 but clips the largest positive value by half a step
(max|x| / s = 7.5 rounds to 8, clamped to 7); "qmax" keeps +max and -max exact. Asymmetric codes here are
unsigned [0, 2^B - 1]; torchao stores the same int8 activations as signed [-128, 127] with z - 128, which
dequantizes to the same values. Scales are floored at float32 eps (torchao's default `eps`).

References: Jacob et al. 2018 (integer-arithmetic-only inference, the affine scheme);
torchao `quantize_affine` (block-size view of granularity); Bengio et al. 2013 (straight-through estimator).
"""
from __future__ import annotations

import math
from numbers import Integral

import torch

MIN_BITS, MAX_BITS = 2, 8
_EPS = float(torch.finfo(torch.float32).eps)  # scale floor (torchao's default eps): an all-zero row gives zeros
SCALE_RULES = ("torchao", "qmax")  # symmetric scale conventions, see the module docstring


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer (ties to even); the gradient passes through unchanged."""
    return _RoundSTE.apply(x)


# ----------------------------------------------------------------------------------------- validation
def check_bits(bits) -> int:
    """Return `bits` if it is a plain int in 2..8, else raise a ValueError that says what to pass."""
    if isinstance(bits, bool) or not isinstance(bits, Integral):
        raise ValueError(f"bits={bits!r} ({type(bits).__name__}) must be a plain int in {MIN_BITS}..{MAX_BITS}, "
                         f"e.g. bits=4; pass int(bits) if it came from a float")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits={bits} is outside {MIN_BITS}..{MAX_BITS}; pick a value in that range "
                         f"(16 means 'not quantized' and is handled by QuantConfig, not here)")
    return int(bits)


def _divisors_near(k: int, g: int) -> list[int]:
    """The divisors of k closest to g, so error messages can suggest a fix."""
    divs = [d for d in range(2, k) if k % d == 0]
    return sorted(sorted(divs, key=lambda d: (abs(d - g), d))[:2])


def check_group_size(group_size, k: int) -> None:
    """group_size must be None (per-tensor), -1 (per-row) or a positive divisor of k (per-group)."""
    is_int = isinstance(group_size, Integral) and not isinstance(group_size, bool)
    if group_size is None or (is_int and group_size == -1):
        return
    if not is_int or group_size <= 0:
        raise ValueError(f"group_size={group_size!r} is not a granularity; use None for per-tensor, -1 for "
                         f"per-channel / per-token, or a positive int G dividing the last dim ({k})")
    if k % group_size:
        near = _divisors_near(k, group_size)
        hint = f"a divisor such as {' or '.join(map(str, near))}, " if near else ""
        raise ValueError(f"group_size={group_size} must divide in_features={k}; pick {hint}"
                         f"or -1 for per-channel (padding is never done silently)")


def check_tensor(x: torch.Tensor, name: str = "x", finite: bool = True) -> None:
    """x must be a non-empty floating tensor with only finite values (finite=False: the caller checks those)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} has integer dtype {x.dtype}; quantizers take floating tensors: pass "
                         f"{name}.float() (to turn integer codes back into floats use dequantize)")
    if x.ndim == 0 or x.numel() == 0:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; it needs at least one dim and one element")
    if not finite:
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_nan, n_inf = int(torch.isnan(x).sum()), int((~finite).sum() - torch.isnan(x).sum())
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} inf values; quantization needs finite "
                         f"values: fix the producer (or torch.nan_to_num) before quantizing")


def check_scale_rule(scale_rule) -> str:
    """scale_rule must be one of SCALE_RULES ("torchao": max / ((qmax - qmin) / 2); "qmax": max / qmax)."""
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule={scale_rule!r} is unknown; use 'torchao' (s = max / ((qmax - qmin) / 2), "
                         f"the default) or 'qmax' (s = max / qmax, QuaRot's convention)")
    return scale_rule


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range (qmin, qmax): [-2^(B-1), 2^(B-1)-1] if symmetric, else [0, 2^B - 1]."""
    bits = check_bits(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)


def code_dtype(symmetric: bool) -> torch.dtype:
    """int8 holds every symmetric code for B <= 8, uint8 every asymmetric one."""
    return torch.int8 if symmetric else torch.uint8


# ------------------------------------------------------------------------------------------- qparams
def _grouped(x: torch.Tensor, n_groups: int) -> torch.Tensor:
    # (..., K) -> (..., n_groups, K // n_groups)
    return x.reshape(*x.shape[:-1], n_groups, x.shape[-1] // n_groups)


def _reduce_minmax(x: torch.Tensor, group_size) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor: (1,)*ndim; per-row: (..., 1); per-group: (..., K // G)."""
    if group_size is None:
        flat = x.reshape(*(1,) * (x.ndim - 1), 1, -1)  # (..., K) -> (1, ..., 1, numel)
    else:
        flat = _grouped(x, 1 if group_size == -1 else x.shape[-1] // group_size)
    return flat.amin(-1), flat.amax(-1)


def choose_qparams(x: torch.Tensor, bits: int, group_size: int | None = -1, symmetric: bool = True, *,
                   clip_ratio: float = 1.0, min_val: torch.Tensor | float | None = None,
                   max_val: torch.Tensor | float | None = None,
                   scale_rule: str = "torchao") -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point for `x` (..., K) at `bits`, one pair per group picked by `group_size`.

    The one granularity knob, `group_size`, always groups along the last dim:

        | granularity                                  | group_size | scale shape for x (..., K) |
        |----------------------------------------------|------------|----------------------------|
        | per-tensor (static activations)              | None       | (1,) * x.ndim              |
        | per-channel (weights) = per-token (acts)     | -1         | (..., 1): one per row      |
        | per-group of G consecutive input channels    | G > 0      | (..., K // G)              |

    Per-channel for a weight (N, K) and per-token for an activation (T, K) are the same reduction: one
    scale per vector along K. G must divide K; nothing is padded.

    Worked example, int4, values spanning [-3.5, 10.2]:
      symmetric, torchao: s = 10.2 / 7.5 = 1.36, z = 0. The grid [-8, 7] covers floats [-10.88, 9.52]: 10.2
                  itself lands on q = 7 (9.52, clipped by half a step), and the data only reach
                  q = round(-3.5 / 1.36) = -3, so 11 of the 16 levels are used.
      symmetric, qmax:    s = 10.2 / 7 = 1.457: 10.2 is exact, the step is 7% coarser, level -8 unused.
      asymmetric: s = 13.7 / 15 = 0.913, z = round(3.5 / 0.913) = 4. Codes [0, 15] cover [-3.65, 10.05]
                  (the top is clipped by z's rounding): all 16 levels used, a 1.5x finer step.
    Symmetric needs no zero-point arithmetic in an integer GEMM, which is why weights usually use it.
    `scale_rule` ("torchao" | "qmax") picks the symmetric scale; it is ignored when symmetric=False.

    clip_ratio in (0, 1] shrinks the range before the scale is computed (AWQ / DuQuant clip search).
    min_val / max_val replace the observed range (static calibration); they must broadcast to the scale.
    Returns scale float32 and zero int32, both of the shape in the table.
    """
    bits = check_bits(bits)
    check_tensor(x, finite=False)
    check_group_size(group_size, x.shape[-1])
    if not 0.0 < clip_ratio <= 1.0:
        raise ValueError(f"clip_ratio={clip_ratio} must be in (0, 1]; 1.0 keeps the full min-max range")
    check_scale_rule(scale_rule)
    lo, hi = _reduce_minmax(x.detach().float(), group_size)
    # x is finite exactly when every group's min and max are (amin / amax propagate NaN; an inf is an extreme):
    # one small check instead of isfinite over all of x, which took ~17% of a CPU cell, and one host sync on a GPU
    if not bool((torch.isfinite(lo) & torch.isfinite(hi)).all()):
        check_tensor(x)  # raises, counting the NaN and inf values
    if min_val is not None or max_val is not None:  # an observed range has lo <= hi by construction
        lo = lo if min_val is None else torch.as_tensor(min_val, dtype=torch.float32).expand_as(lo)
        hi = hi if max_val is None else torch.as_tensor(max_val, dtype=torch.float32).expand_as(hi)
        if bool((lo > hi).any()):
            raise ValueError(f"min_val > max_val somewhere (min {lo.min().item():.4g}, max {hi.max().item():.4g}); "
                             f"pass min_val <= max_val")
    lo, hi = lo.clamp(max=0) * clip_ratio, hi.clamp(min=0) * clip_ratio  # keep 0.0 representable
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        levels = (qmax - qmin) / 2 if scale_rule == "torchao" else qmax  # 7.5 or 7 for int4
        scale = (torch.maximum(-lo, hi) / levels).clamp(min=_EPS)
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    scale = ((hi - lo) / (qmax - qmin)).clamp(min=_EPS)
    zero = torch.clamp(torch.round(-lo / scale), qmin, qmax).to(torch.int32)
    return scale, zero


# --------------------------------------------------------------------------- quantize / dequantize
def _n_groups(scale: torch.Tensor, k: int) -> int:
    n = scale.shape[-1] if scale.ndim else 1
    if k % n:
        raise ValueError(f"scale has {n} groups along the last dim but the tensor has {k} columns; "
                         f"pass the scale that choose_qparams returned for this tensor")
    return n


def _codes(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool):
    """Float-valued codes clamp(round(x / s) + z, qmin, qmax), shaped like x; differentiable via round_ste."""
    qmin, qmax = qrange(bits, symmetric)
    n = _n_groups(scale, x.shape[-1])
    s, z = scale.reshape(*scale.shape[:-1], n, 1), zero.reshape(*zero.shape[:-1], n, 1)  # (..., n, 1)
    scaled = _grouped(x.float(), n) * (1.0 / s)  # (..., n, K // n); reciprocal as torchao
    if not (torch.is_grad_enabled() and scaled.requires_grad):  # inference: the same values, four fewer passes
        return (torch.round(scaled) + z).clamp(qmin, qmax).reshape(x.shape)
    q = round_ste(scaled) + z
    inside = (q >= qmin) & (q <= qmax)  # torch.clamp would zero the gradient at qmin / qmax themselves
    return torch.where(inside, q, q.detach().clamp(qmin, qmax)).reshape(x.shape)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int,
             symmetric: bool = True) -> torch.Tensor:
    """Integer codes of x: int8 when symmetric, uint8 when asymmetric; same shape as x."""
    check_tensor(x)
    with torch.no_grad():
        return _codes(x, scale, zero, bits, symmetric).to(code_dtype(symmetric))


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """x_hat = (q - zero) * scale in float32, with q (..., K) and scale / zero as choose_qparams returns."""
    n = _n_groups(scale, q.shape[-1])
    s, z = scale.reshape(*scale.shape[:-1], n, 1), zero.reshape(*zero.shape[:-1], n, 1)
    x_hat = (_grouped(q.float(), n) - z.float()) * s  # (..., n, K // n)
    return x_hat.reshape(q.shape)


def fake_quantize(x: torch.Tensor, bits: int, group_size: int | None = -1, symmetric: bool = True, *,
                  clip_ratio: float = 1.0, min_val=None, max_val=None, scale_rule: str = "torchao",
                  qparams: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """dequantize(quantize(x)) in x's dtype, with a straight-through gradient.

    The gradient w.r.t. x is 1 inside the clipping range and 0 where a value was clamped; the scale is
    treated as a constant. Pass `qparams=(scale, zero)` to reuse stored parameters (static activations)
    instead of choosing them from x.
    """
    if qparams is None:
        qparams = choose_qparams(x, bits, group_size, symmetric, clip_ratio=clip_ratio,
                                 min_val=min_val, max_val=max_val, scale_rule=scale_rule)
    else:
        check_tensor(x)
    scale, zero = qparams
    return dequantize(_codes(x, scale, zero, bits, symmetric), scale, zero).to(x.dtype)


def quant_error(x: torch.Tensor, bits: int, group_size: int | None = -1, symmetric: bool = True,
                **kwargs) -> float:
    """Relative error ||fake_quantize(x) - x|| / ||x|| (a scale-free number for tables and plots)."""
    with torch.no_grad():
        x_hat = fake_quantize(x, bits, group_size, symmetric, **kwargs)
        return float((x_hat.float() - x.float()).norm() / x.float().norm().clamp(min=_EPS))


def snr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(||x||^2 / ||x - x_hat||^2)."""
    noise = (x.float() - x_hat.float()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(x.float().pow(2).sum().item() / noise)
