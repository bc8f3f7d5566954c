"""QuantLinear and the in-place layer swap `quantize_`: how a QuantConfig is applied to a model.

QuantLinear is a thin shell: it holds integer weight codes, scales and zero points as buffers and calls the
primitives in `forward`. The torch matmul is simulated (float32 on dequantized weights and fake-quantized
activations), which measures accuracy exactly and speeds nothing up; with `backend` "auto" or "triton", fp16 / bf16
CUDA inputs run on the packed low-bit Triton kernels instead (`kernels/linear.py`), equal within a stated tolerance.

Later PTQ methods plug in at two points and need nothing else from this file:
  - `QuantLinear.from_linear(linear, cfg, weight=W', scale=s, zero=z)`: GPTQ / AWQ hand over an updated
    weight and the scales they chose; the codes are recomputed from them (re-quantizing with the same
    scale is idempotent, tests/quant checks this).
  - `act_transform`: a module applied to x before activation quantization (SmoothQuant's 1/s per input
    channel, QuaRot's online Hadamard). The matching weight change is the caller's job.

Sizes: `model_size_report` counts bytes as a deployment would store them (int4 two per byte, int3 at 3/8
byte, fp16 scales, zero points at the weight bit-width) and everything that is not quantized at FP16.

Notation: x (..., K) -> y (..., N); weight (N, K); G = w_group_size (K when per channel).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels import kernel_mode

from ..checks import check_scale_floor
from .config import QuantConfig
from .primitives import _EPS, check_tensor, choose_qparams, dequantize, fake_quantize, quantize

FP16_BYTES = 2


def is_linear(module: nn.Module, fqn: str = "") -> bool:
    """Default filter for quantize_: every nn.Linear, whatever its name."""
    return isinstance(module, nn.Linear)


class QuantLinear(nn.Module):
    """A linear layer with quantized weights and (optionally) fake-quantized input activations.

    Buffers (N = out_features, K = in_features, G = group size, or K when per channel):
      qweight:   (N, K) int8 (symmetric) or uint8 (asymmetric) codes, unpacked; None when w_bits == 16
      w_scale:   (N, K // G) float32; None when w_bits == 16
      w_zero:    (N, K // G) int32, all zero when symmetric; None when w_bits == 16
      weight_fp: (N, K) float, the original weight, only when w_bits == 16 (else None)
      bias:      (N,) float or None, kept in floating point
      act_scale, act_zero: (1,) float32 / int32 static per-tensor activation qparams, set by
                 `calibrate_activations`; None for dynamic per-token activations
    Attributes: cfg (QuantConfig), act_transform (nn.Module or None, applied to x before quantizing),
    backend ("auto" | "torch" | "triton"): "auto" runs fp16/bf16 CUDA inputs on the Triton kernels when one fits
    the config (kernels/linear.py) and everything else on the fake-quant torch path, the reference.
    """

    def __init__(self, in_features: int, out_features: int, cfg: QuantConfig, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.cfg = in_features, out_features, cfg
        self.act_transform: nn.Module | None = None
        for name in ("qweight", "w_scale", "w_zero", "weight_fp", "act_scale", "act_zero"):
            self.register_buffer(name, None)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._observed: tuple[float, float] | None = None  # running (min, max) of x while calibrating
        self.backend = "auto"  # "auto" (kernels for fp16/bf16 CUDA inputs) | "torch" | "triton": kernels/linear.py

    @classmethod
    def from_linear(cls, linear: nn.Linear, cfg: QuantConfig, *, weight: torch.Tensor | None = None,
                    scale: torch.Tensor | None = None, zero: torch.Tensor | None = None,
                    act_transform: nn.Module | None = None) -> QuantLinear:
        """Quantize `linear` (or `weight`, an updated copy of its weight) with `cfg`.

        `scale` / `zero` (shaped like choose_qparams' output for the weight) replace round-to-nearest's
        min-max choice; `zero` may be omitted for symmetric weights.
        """
        w = (linear.weight if weight is None else weight).detach()
        if tuple(w.shape) != (linear.out_features, linear.in_features):
            raise ValueError(f"weight shape {tuple(w.shape)} must match the layer's (out_features, "
                             f"in_features) = {(linear.out_features, linear.in_features)}")
        check_tensor(w, "weight")
        layer = cls(linear.in_features, linear.out_features, cfg, bias=linear.bias is not None)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().clone()
        layer.act_transform = act_transform
        if not cfg.quantize_weights:  # w16: keep the float weight, so W16A16 equals nn.Linear bit for bit
            layer.weight_fp = w.clone()
            return layer.to(w.device)
        if scale is None:
            scale, zero = choose_qparams(w, cfg.w_bits, cfg.w_group_size, cfg.w_symmetric,
                                         clip_ratio=cfg.w_clip_ratio, scale_rule=cfg.w_scale_rule)
        elif scale.ndim != 2 or scale.shape[0] != linear.out_features:
            raise ValueError(f"scale shape {tuple(scale.shape)} must be (out_features, n_groups) with "
                             f"out_features={linear.out_features}; use choose_qparams(weight, ...)")
        elif zero is None:
            if not cfg.w_symmetric:
                raise ValueError("asymmetric weights need `zero` with `scale`; pass both from choose_qparams")
            zero = torch.zeros_like(scale, dtype=torch.int32)
        check_scale_floor(w, scale, _EPS)  # a tiny non-zero row would otherwise quantize to 0 silently
        # codes are recomputed from (w, scale, zero): for a w that is already on that grid (GPTQ's output)
        # this reproduces the caller's codes exactly
        layer.qweight = quantize(w, scale, zero, cfg.w_bits, cfg.w_symmetric)
        layer.w_scale, layer.w_zero = scale.float().clone(), zero.to(torch.int32).clone()
        return layer.to(w.device)

    @property
    def weight(self) -> torch.Tensor:
        """Read-only dequantized weight, for code that inspects `layer.weight` (dtype, shape)."""
        return self.dequantized_weight()

    def dequantized_weight(self) -> torch.Tensor:
        """(N, K) float weight the forward pass multiplies by (float32 unless w_bits == 16)."""
        if self.weight_fp is not None:
            return self.weight_fp
        return dequantize(self.qweight, self.w_scale, self.w_zero)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize the activation per cfg: dynamic per-token, or static per-tensor with stored qparams."""
        cfg = self.cfg
        if x.numel() == 0:  # an empty (0, K) batch has nothing to quantize; nn.Linear accepts it too
            return x
        if not cfg.quantize_activations or self._observed is not None:  # calibration sees float inputs
            return x
        if cfg.a_granularity == "per_token":
            return fake_quantize(x, cfg.a_bits, -1, cfg.a_symmetric, clip_ratio=cfg.a_clip_ratio,
                                 scale_rule=cfg.a_scale_rule)
        if self.act_scale is None:
            raise ValueError(f"{self.extra_repr()}: static per-tensor activations have no calibrated scale; "
                             f"run `with calibrate_activations(model): model(batch)` first")
        return fake_quantize(x, cfg.a_bits, None, cfg.a_symmetric, qparams=(self.act_scale, self.act_zero))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"input of shape {tuple(x.shape)} must end in in_features={self.in_features} "
                             f"({self.extra_repr()}); it reached the wrong layer or needs a reshape")
        if self.act_transform is not None:
            x = self.act_transform(x)  # smoothing / rotation hook, (..., K) -> (..., K)
        if self._observed is not None:
            self._observe(x)
        mode = None if self.weight_fp is not None else kernel_mode(getattr(self, "backend", "auto"), x)
        if mode is not None:  # real low-bit execution; the lines below are the fake-quant reference
            from kernels.linear import quant_linear_forward  # imports Triton, so only when asked for

            y = quant_linear_forward(self, x, strict=mode == "strict")
            if y is not None:
                return y
        x = self.quantize_input(x)
        w = self.dequantized_weight().to(x.dtype)  # simulated: float matmul on the dequantized grid values
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = self._observed
        self._observed = (min(lo, x.detach().min().item()), max(hi, x.detach().max().item()))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.cfg.name}"


@contextmanager
def calibrate_activations(model: nn.Module):
    """Record each QuantLinear's input range while the block runs, then set its static activation qparams.

    Activations are not quantized while observing. Only layers with a_granularity='per_tensor' are touched.
    """
    layers = [m for m in model.modules() if isinstance(m, QuantLinear)
              and m.cfg.quantize_activations and m.cfg.a_granularity == "per_tensor"]
    if not layers:
        raise ValueError("calibrate_activations found no QuantLinear with a_granularity='per_tensor'; "
                         "per-token activations are dynamic and need no calibration")
    for m in layers:
        m._observed = (math.inf, -math.inf)
    try:
        yield model
    finally:
        ranges = [m._observed for m in layers]
        for m in layers:
            m._observed = None
    for m, (lo, hi) in zip(layers, ranges):  # reached only when the block ran without error
        if not math.isfinite(lo):
            raise ValueError(f"QuantLinear({m.extra_repr()}) saw no input during calibration; "
                             f"run the model on a batch inside the `with` block")
        dummy = torch.zeros(1)  # only its shape matters once min/max are given
        m.act_scale, m.act_zero = choose_qparams(dummy, m.cfg.a_bits, None, m.cfg.a_symmetric,
                                                 clip_ratio=m.cfg.a_clip_ratio, min_val=lo, max_val=hi,
                                                 scale_rule=m.cfg.a_scale_rule)


def quantize_(model: nn.Module, cfg: QuantConfig,
              filter_fn: Callable[[nn.Module, str], bool] = is_linear) -> nn.Module:
    """Swap every nn.Linear for which filter_fn(module, fqn) is True with a QuantLinear, in place.

    Example: skip a head by name with `filter_fn=lambda m, n: is_linear(m) and not n.endswith("lm_head")`.
    """
    # collect first, swap after: replacing children while named_modules() iterates would skip some
    targets = [(fqn, m) for fqn, m in model.named_modules() if fqn and filter_fn(m, fqn)]
    if not targets and any(isinstance(m, QuantLinear) for m in model.modules()):
        raise ValueError(f"quantize_ found no nn.Linear left to swap: the model is already quantized "
                         f"({model_size_report(model).cfg_name}); quantize a fresh copy of the float model")
    if isinstance(model, nn.Linear) or not targets:
        n_lin = sum(isinstance(m, nn.Linear) for m in model.modules())
        raise ValueError(f"quantize_ matched no layer to swap ({n_lin} nn.Linear in the model"
                         f"{', and the model itself cannot be swapped in place' if n_lin else ''}); "
                         f"check filter_fn, or use QuantLinear.from_linear for a single layer")
    for fqn, m in targets:
        if not isinstance(m, nn.Linear):
            raise ValueError(f"filter_fn selected {fqn!r} of type {type(m).__name__}; QuantLinear replaces "
                             f"nn.Linear only: make filter_fn return False for it")
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantLinear.from_linear(m, cfg))
    return model


# ----------------------------------------------------------------------------------------- sizes
def _qlinear_bytes(m: QuantLinear) -> int:
    bias = m.bias.numel() * FP16_BYTES if m.bias is not None else 0
    if m.weight_fp is not None:
        return m.weight_fp.numel() * FP16_BYTES + bias
    bits = m.cfg.w_bits
    codes = math.ceil(m.qweight.numel() * bits / 8)  # int4: 2 per byte, int3: 3/8 byte
    scales = m.w_scale.numel() * FP16_BYTES
    zeros = 0 if m.cfg.w_symmetric else math.ceil(m.w_zero.numel() * bits / 8)
    return codes + scales + zeros + bias


def packed_size_bytes(module: nn.Module) -> int:
    """Bytes as stored: QuantLinear packed (codes + fp16 scales + packed zeros + fp16 bias), parameters
    of every other module at FP16. Non-parameter buffers (e.g. BatchNorm statistics) are not counted."""
    if isinstance(module, QuantLinear):
        return _qlinear_bytes(module)
    total = sum(p.numel() * FP16_BYTES for p in module.parameters(recurse=False))
    return total + sum(packed_size_bytes(child) for child in module.children())


def fp16_size_bytes(module: nn.Module) -> int:
    """Bytes of the same module with every weight (quantized or not) stored at FP16."""
    if isinstance(module, QuantLinear):
        return (module.in_features * module.out_features + (module.out_features if module.bias is not None
                                                             else 0)) * FP16_BYTES
    total = sum(p.numel() * FP16_BYTES for p in module.parameters(recurse=False))
    return total + sum(fp16_size_bytes(child) for child in module.children())


@dataclass(frozen=True)
class SizeReport:
    quantized_bytes: int
    fp16_bytes: int
    n_quantized_layers: int
    cfg_name: str

    @property
    def ratio(self) -> float:
        return self.fp16_bytes / self.quantized_bytes

    def __str__(self) -> str:
        return (f"{self.cfg_name}: {_fmt_bytes(self.quantized_bytes)} vs FP16 {_fmt_bytes(self.fp16_bytes)} "
                f"({self.ratio:.2f}x smaller, {self.n_quantized_layers} quantized linear layers)")


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024**2:.2f} MB" if n >= 1024**2 else f"{n / 1024:.1f} KB"


def model_size_report(model: nn.Module) -> SizeReport:
    """Packed size vs FP16 size of a (partly) quantized model, e.g. 'w4a8-g32: 0.26 MB vs FP16 1.03 MB'."""
    qlayers = [m for m in model.modules() if isinstance(m, QuantLinear)]
    names = sorted({m.cfg.name for m in qlayers}) or ["fp16"]
    return SizeReport(packed_size_bytes(model), fp16_size_bytes(model), len(qlayers), "+".join(names))
