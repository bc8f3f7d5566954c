"""Quantizing the attention inputs Q, K, V under weight-activation PTQ, as each method of the study does.

The seven linears cover the matmuls with weights; attention's own matmuls (Q K^T and P V) multiply two
activations. The study quantizes their inputs to the activation bit-width (dllm_ptq.md §1.4), after RoPE,
each method in its own way; attention probabilities P stay in 16 bit:

| style       | used by             | Q                        | K                         | V                      |
|-------------|---------------------|--------------------------|---------------------------|------------------------|
| "per_head"  | RTN, SmoothQuant    | per (token, head), asym  | per (token, head), asym   | per (token, head), asym |
| "duquant"   | DuQuant             | Hadamard(D), then per (token, head), asym, clip 0.9 | same as Q | per (token, head), asym |
| "quarot"    | QuaRot              | Hadamard(D), kept FP     | Hadamard(D), per token over all heads, sym | per token, sym |

The Hadamard on the head dimension D is orthogonal and applied to Q and K alike, so Q K^T is unchanged in
FP; it only spreads outliers before K (and Q) are rounded. QuaRot quantizes V at the v_proj output; here V
is rounded after the head split, which is the same per-token grouping.
Notation: q, k, v (B, H, L, D).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from ..quant.hadamard import hadamard_transform
from ..quant.primitives import fake_quantize

STYLES = ("per_head", "duquant", "quarot")
_HAS_RULE = "scale_rule" in inspect.signature(fake_quantize).parameters


def _fq(x: torch.Tensor, bits: int, symmetric: bool, clip: float = 1.0) -> torch.Tensor:
    """Fake-quantize along the last dim; symmetric uses QuaRot's s = max / (2^(b-1) - 1) ('qmax' rule)."""
    extra = {"scale_rule": "qmax"} if (symmetric and _HAS_RULE) else {}
    return fake_quantize(x, bits, -1, symmetric, clip_ratio=clip, **extra)


def _per_token(x: torch.Tensor, bits: int) -> torch.Tensor:
    b, h, length, d = x.shape
    flat = x.transpose(1, 2).reshape(b, length, h * d)  # (B, H, L, D) -> (B, L, H*D): one scale per token
    return _fq(flat, bits, True).reshape(b, length, h, d).transpose(1, 2)


class AttnActQuant(nn.Module):
    """(q, k, v) -> fake-quantized (q, k, v) at `bits`, in one of STYLES."""

    def __init__(self, bits: int, style: str):
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"style={style!r} must be one of {STYLES}")
        self.bits, self.style = bits, style

    def forward(self, q, k, v):
        if self.style == "per_head":
            return _fq(q, self.bits, False), _fq(k, self.bits, False), _fq(v, self.bits, False)
        q, k = hadamard_transform(q), hadamard_transform(k)  # same orthogonal map: Q K^T unchanged
        if self.style == "duquant":
            return _fq(q, self.bits, False, 0.9), _fq(k, self.bits, False, 0.9), _fq(v, self.bits, False)
        return q, _per_token(k, self.bits), _per_token(v, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, style={self.style}"


def set_attn_quant(model, bits: int | None, style: str = "per_head") -> None:
    """Install AttnActQuant(bits, style) in every block (bits=None removes it)."""
    for blk in model.blocks:
        blk.attn_act_quant = None if bits is None else AttnActQuant(bits, style)
