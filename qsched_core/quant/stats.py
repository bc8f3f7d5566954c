"""Activation statistics for outlier analysis: where are the large inputs of each linear layer?

Low-bit activation quantization fails when a few values dominate the range. They come in two kinds, and
the kind decides the fix:
  - outlier *channels*: the same few input features are large for every token (LLMs, and the attention /
    feed-forward inputs of diffusion UNets). Per-token scales do not help, since every token contains the
    outlier; per-group scales, SmoothQuant's migration into the weights, or a rotation (QuaRot, DuQuant) do.
  - outlier *tokens*: a few rows are large everywhere. Per-token scales isolate them.

`record_act_stats` hooks the chosen layers and keeps, per layer and in O(K) memory:
  channel_absmax (K,)   running max |x| of each input channel over all tokens seen
  token_absmax   (T',)  max |x| of each token (row of the flattened (T, K) input), first `max_tokens` kept
  kurtosis              E[(x - mu)^4] / sigma^4 over all elements (3 for a Gaussian; heavy tails >> 3),
                        from running float64 power sums, so nothing but five numbers is stored
`outlier_summary` turns them into one row per layer (top-k channels, max / median ratios);
`capture_inputs` returns the raw input tensors of a few named layers, for plots and calibration.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .qlinear import QuantLinear, is_linear


def is_linear_or_quant(module: nn.Module, fqn: str = "") -> bool:
    """Default layer filter for statistics: nn.Linear and QuantLinear inputs alike."""
    return is_linear(module, fqn) or isinstance(module, QuantLinear)


@dataclass
class ActStats:
    """Running statistics of one layer's input; `update` takes x (..., K)."""

    max_tokens: int = 8192
    channel_absmax: torch.Tensor | None = None   # (K,) float32
    token_absmax: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (<= max_tokens,)
    n_tokens: int = 0
    power_sums: torch.Tensor = field(default_factory=lambda: torch.zeros(5, dtype=torch.float64))  # n, S1..S4

    def update(self, x: torch.Tensor) -> None:
        a = x.detach().reshape(-1, x.shape[-1]).float()  # (..., K) -> (T, K)
        a_abs = a.abs()
        ch = a_abs.amax(0).cpu()
        self.channel_absmax = ch if self.channel_absmax is None else torch.maximum(self.channel_absmax, ch)
        room = self.max_tokens - self.token_absmax.numel()  # keep the first max_tokens rows only
        if room > 0:
            self.token_absmax = torch.cat([self.token_absmax, a_abs[:room].amax(1).cpu()])
        self.n_tokens += a.shape[0]
        d = a.double().flatten()  # float64: sums of 4th powers of outliers lose precision in float32
        self.power_sums += torch.stack([torch.tensor(float(d.numel()), dtype=torch.float64),
                                        d.sum(), d.pow(2).sum(), d.pow(3).sum(), d.pow(4).sum()]).cpu()

    @property
    def kurtosis(self) -> float:
        """Pearson kurtosis m4 / m2^2 from the running power sums (3.0 for Gaussian data)."""
        n, s1, s2, s3, s4 = self.power_sums.tolist()
        mu = s1 / n
        m2 = s2 / n - mu**2
        m4 = s4 / n - 4 * mu * s3 / n + 6 * mu**2 * s2 / n - 3 * mu**4  # central 4th moment
        return m4 / m2**2 if m2 > 0 else float("nan")

    def top_channels(self, k: int = 5) -> list[int]:
        """Indices of the k input channels with the largest max |x|, largest first."""
        return self.channel_absmax.topk(min(k, self.channel_absmax.numel())).indices.tolist()

    @property
    def channel_ratio(self) -> float:
        """max / median of channel_absmax: ~1-3 for well-behaved inputs, >> 10 with outlier channels."""
        return float(self.channel_absmax.max() / self.channel_absmax.median().clamp(min=1e-12))

    @property
    def token_ratio(self) -> float:
        """max / median of token_absmax: large when a few tokens are outliers."""
        return float(self.token_absmax.max() / self.token_absmax.median().clamp(min=1e-12))


@contextmanager
def record_act_stats(model: nn.Module, filter_fn: Callable[[nn.Module, str], bool] = is_linear_or_quant,
                     max_tokens: int = 8192):
    """Context manager: `with record_act_stats(model) as stats: model(x)` fills {layer name: ActStats}.

    The hooks are removed on exit, also when the block raises.
    """
    stats: dict[str, ActStats] = {}
    handles = []
    for name, module in model.named_modules():
        if name and filter_fn(module, name):
            stats[name] = ActStats(max_tokens=max_tokens)
            handles.append(module.register_forward_pre_hook(_make_hook(stats[name])))
    if not handles:
        raise ValueError("record_act_stats matched no layer; check filter_fn (default: nn.Linear / QuantLinear)")
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


def _make_hook(stat: ActStats):
    def hook(module, args):  # forward *pre*-hook: sees the layer input, before any act_transform
        stat.update(args[0])
    return hook


def collect_act_stats(model: nn.Module, batches, filter_fn=is_linear_or_quant, max_tokens: int = 8192):
    """Run `model` on each batch in `batches` (no grad) and return {layer name: ActStats}."""
    with torch.no_grad(), record_act_stats(model, filter_fn, max_tokens) as stats:
        for batch in batches:
            model(batch)
    empty = [name for name, s in stats.items() if s.channel_absmax is None]
    if empty:
        raise ValueError(f"layers {empty[:3]} never ran on these batches; narrow filter_fn to layers that run")
    return stats


def capture_inputs(model: nn.Module, names: list[str], *args, **kwargs) -> dict[str, torch.Tensor]:
    """Run model(*args, **kwargs) once (no grad) and return the input of each named module (last call's)."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"modules {missing} not found; pick names from model.named_modules(), e.g. "
                         f"{[n for n in modules if n][:5]}")
    captured: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_pre_hook(lambda m, a, n=n: captured.__setitem__(n, a[0].detach()))
             for n in names]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return captured


def outlier_summary(stats: dict[str, ActStats], top_k: int = 3) -> list[dict]:
    """One row per layer: name, K, top-k outlier channels with their max |x|, ratios and kurtosis."""
    rows = []
    for name, s in stats.items():
        top = s.top_channels(top_k)
        rows.append(dict(layer=name, in_features=s.channel_absmax.numel(), top_channels=top,
                         top_absmax=[round(float(s.channel_absmax[i]), 3) for i in top],
                         channel_max_over_median=round(s.channel_ratio, 2),
                         token_max_over_median=round(s.token_ratio, 2), kurtosis=round(s.kurtosis, 2)))
    return rows
