"""Round-to-nearest (RTN), the baseline, and the last step that every PTQ method here shares.

RTN picks each group's scale from its min / max (`choose_qparams`) and rounds every weight independently.
It needs no data; calibration inputs are used only to report each layer's output error.

Every other method changes *what* gets rounded and then ends the same way, so that way lives here once:
  1. a `GroupPlan` per input group says how its input x (T, K) and weights W (N, K) are transformed,
         x' = (x / s) T,      W' = (W diag(s)) T,      so x' W'^T = x W^T exactly (T orthogonal),
     with s (K,) a smoothing scale (SmoothQuant, AWQ, DuQuant) and T a rotation (QuaRot, DuQuant);
  2. `quantize_plans` folds 1/s into the group's producer (norm weight or previous linear's rows) or keeps
     it online as a `ChannelScale`; T is always online (the `rotation` module);
  3. it swaps in FP QuantLinears with those transforms and checks the model output is unchanged;
  4. it quantizes every W' (RTN by default, or a method's own weight quantizer: AWQ's clip search, GPTQ)
     and swaps in the final QuantLinears, reporting each layer's error next to plain RTN's.

`search_clip` is the clip-ratio search used by AWQ (output error) and by QuaRot's MSE clip (weight error).

Notation: W (N, K), G = cfg.w_group_size (K when per channel), n_g = K // G groups per row.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import progress
from .calib import InputGroup, InputStats, collect_inputs, find_input_groups
from .config import QuantConfig
from .methods import LayerReport, PTQReport, measure, model_outputs, relative_error
from .primitives import choose_qparams, dequantize, quantize
from .qlinear import QuantLinear, is_linear

FP_CFG = QuantConfig.from_name("fp")


def _w_group(cfg: QuantConfig, k: int) -> int:
    return cfg.w_group_size if cfg.w_group_size > 0 else k


def fake_quant_weight(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    return dequantize(quantize(w, scale, zero, cfg.w_bits, cfg.w_symmetric), scale, zero)


def search_clip(w: torch.Tensor, cfg: QuantConfig, ratios, group_err: Callable[[torch.Tensor], torch.Tensor],
                chunk: int = 8):
    """Per (row, group), the clip ratio r among `ratios` whose quantized weight minimises group_err.

    Shrinking the range by r scales the step by r and keeps the zero point: (s_r, z_r) = (r s, z), so the
    ratios are quantized together on an (R, N, K) stack, `chunk` at a time. group_err(w_hat (R, N, K)) ->
    (R, N, n_g) errors. Returns (scale, zero, best_ratio), all (N, n_g).
    """
    s1, z1 = choose_qparams(w, cfg.w_bits, cfg.w_group_size, cfg.w_symmetric,
                            scale_rule=cfg.w_scale_rule)  # (N, n_g) at r = 1
    ratios = torch.as_tensor(list(ratios), dtype=torch.float32, device=w.device)
    errs = []
    for r in ratios.split(chunk):
        s = (s1[None] * r[:, None, None]).clamp(min=1e-12)  # (R, N, n_g)
        z = z1[None].expand_as(s)
        w_hat = dequantize(quantize(w[None].expand(len(r), *w.shape), s, z, cfg.w_bits, cfg.w_symmetric), s, z)
        errs.append(group_err(w_hat))
    ratio = ratios[torch.cat(errs).argmin(0)]  # (N, n_g): the best ratio of each group
    return (s1 * ratio).clamp(min=1e-12), z1, ratio


def mse_qparams(w: torch.Tensor, cfg: QuantConfig, grid: int = 80, norm: float = 2.4):
    """QuaRot / GPTQ `--w_clip`: shrink p = 1 - i/100, i < grid, minimising sum |Q(w) - w|^norm per group."""
    g = _w_group(cfg, w.shape[1])

    def err(w_hat):  # (R, N, K) -> (R, N, n_g)
        return (w_hat - w).abs().pow(norm).reshape(*w_hat.shape[:2], -1, g).sum(-1)
    scale, zero, _ = search_clip(w, cfg, [1 - i / 100 for i in range(grid)], err)
    return scale, zero


def rtn_qparams(w: torch.Tensor, cfg: QuantConfig, mse_clip: bool = False):
    """(scale, zero) for W: min-max (with cfg.w_clip_ratio) or the MSE clip search."""
    if mse_clip:
        return mse_qparams(w, cfg)
    return choose_qparams(w, cfg.w_bits, cfg.w_group_size, cfg.w_symmetric, clip_ratio=cfg.w_clip_ratio,
                          scale_rule=cfg.w_scale_rule)


class ChannelScale(nn.Module):
    """Online x -> x / s: the smoothing scale of a group with no producer to fold it into. Buffer s (K,)."""

    def __init__(self, s: torch.Tensor):
        super().__init__()
        self.register_buffer("s", s.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.s.to(x.dtype)

    def extra_repr(self) -> str:
        return f"K={self.s.numel()}"


@dataclass
class GroupPlan:
    """x' = (x / s) T and W' = (W diag(s)) T for every linear of `group`; None means identity."""
    group: InputGroup
    s: torch.Tensor | None = None              # (K,) smoothing scale
    rotation: nn.Module | None = None          # online x -> x T, with .matrix() -> T (K, K)
    label: str = ""                            # "smooth", "hadamard", "awq", ...
    info: dict = field(default_factory=dict)   # reported for every layer of the group

    @property
    def folded(self) -> bool:
        return self.s is not None and self.group.kind != "online"

    def online(self) -> nn.Module | None:
        mods = ([ChannelScale(self.s)] if self.s is not None and not self.folded else []) + \
               ([self.rotation] if self.rotation is not None else [])
        return None if not mods else mods[0] if len(mods) == 1 else nn.Sequential(*mods)

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        """W' = (W diag(s)) T."""
        w = w if self.s is None else w * self.s[None, :].to(w)
        return w if self.rotation is None else w @ self.rotation.matrix().to(w)

    def input_matrix(self, k: int) -> torch.Tensor:
        """M (K, K) with x' = x M = (x / s) T, float64 (to map a Hessian: H' = M^T H M)."""
        m = torch.eye(k, dtype=torch.float64) if self.s is None else torch.diag(1 / self.s.double().cpu())
        return m if self.rotation is None else m @ self.rotation.matrix().double().cpu()  # on the CPU

    def describe(self) -> str:
        parts = []
        if self.s is not None:
            parts.append(f"{self.label or 'scale'} {self.group.describe() if self.folded else 'online'}")
        if self.rotation is not None:
            parts.append(f"{type(self.rotation).__name__} online ({self.rotation.extra_repr()})")
        return ", ".join(parts) or "none"


def scaled_plans(model: nn.Module, calib, filter_fn, fold: bool, online: bool, tokens_per_call: int,
                 scale_fn: Callable[[InputGroup, InputStats], GroupPlan]) -> tuple[list[GroupPlan], list[InputStats]]:
    """The input groups of `model` (folded into their producer where `fold` allows), their calibration statistics,
    and one plan per group from `scale_fn(group, stats)`; with online=False a group that has no producer to fold
    into keeps the identity (SmoothQuant's and AWQ's shared skeleton)."""
    groups = find_input_groups(model, calib, filter_fn, fold)
    stats = collect_inputs(model, groups, calib, tokens_per_call=tokens_per_call)
    plans = [GroupPlan(g) if g.kind == "online" and not online else scale_fn(g, st) for g, st in zip(groups, stats)]
    return plans, stats


def fold_into_producer(model: nn.Module, group: InputGroup, s: torch.Tensor) -> None:
    """Divide the producer's output channels by s: norm weight and bias, or a linear's output rows."""
    prod = model.get_submodule(group.producer)
    with torch.no_grad():
        if group.kind == "norm":
            prod.weight.div_(s.to(prod.weight))
            if getattr(prod, "bias", None) is not None:
                prod.bias.div_(s.to(prod.bias))
        elif group.kind == "linear":
            a, b = group.rows
            prod.weight[a:b].div_(s.to(prod.weight)[:, None])
            if prod.bias is not None:
                prod.bias[a:b].div_(s.to(prod.bias))
        else:
            raise ValueError(f"group {group.consumers} has no producer to fold into (kind {group.kind!r})")


def _swap(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, layer)


@dataclass
class WeightResult:
    scale: torch.Tensor                        # (N, n_g)
    zero: torch.Tensor                         # (N, n_g)
    weight: torch.Tensor | None = None         # updated W' (GPTQ); None = round W' itself
    info: dict = field(default_factory=dict)


def rtn_weights(mse_clip: bool = False):
    """The default weight quantizer of quantize_plans: RTN of W' (optionally with the MSE clip search)."""
    def fn(name: str, w: torch.Tensor, plan: GroupPlan, stats: InputStats, cfg: QuantConfig) -> WeightResult:
        return WeightResult(*rtn_qparams(w, cfg, mse_clip))
    return fn


def quantize_plans(model: nn.Module, cfg: QuantConfig, calib, plans: list[GroupPlan], stats: list[InputStats],
                   method: str, weight_fn=None, check_tol: float = 1e-3) -> PTQReport:
    """Fold, check, quantize and swap every linear of every plan (steps 2-4 of the module docstring)."""
    weight_fn = weight_fn or rtn_weights()
    transformed = any(p.s is not None or p.rotation is not None for p in plans)
    y_ref = model_outputs(model, calib, first_only=True) if transformed else None
    linears = {n: model.get_submodule(n) for p in plans for n in p.group.consumers}
    orig = {n: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
            for n, m in linears.items()}
    for p in plans:
        if p.folded:
            fold_into_producer(model, p.group, p.s)
    w_new = {n: p.weight(linears[n].weight.detach()) for p in plans for n in p.group.consumers}
    online = {id(p): p.online() for p in plans}
    report = PTQReport(method, cfg.name, [])
    if transformed:  # 3. the transforms alone must leave the FP model unchanged
        for p in plans:
            for n in p.group.consumers:
                fp_layer = QuantLinear.from_linear(linears[n], FP_CFG, weight=w_new[n], act_transform=online[id(p)])
                _swap(model, n, fp_layer)
        y = model_outputs(model, calib, first_only=True)
        report.fp_max_abs_diff = max(float((a - b).abs().max()) for a, b in zip(y, y_ref))
        rel = max(relative_error(a, b) for a, b in zip(y, y_ref))
        if rel > check_tol:
            raise ValueError(f"{method}: the exact transforms changed the FP output by {rel:.2e} (relative) > "
                             f"check_tol={check_tol}: a fold does not hold for this model. The model was changed in "
                             f"place: start again from a fresh copy with fold=False (every scale online), or narrow "
                             f"filter_fn")
    for p, st in progress(list(zip(plans, stats)), desc=f"{method}: quantize"):  # 4. quantize W', report vs RTN
        x = st.x
        x_seen = x / p.s if p.folded else x  # what the new layer receives from its (folded) producer
        for n in p.group.consumers:
            res = weight_fn(n, w_new[n], p, st, cfg) if cfg.quantize_weights else WeightResult(None, None)
            lin = linears[n]
            layer = QuantLinear.from_linear(lin, cfg, weight=res.weight if res.weight is not None else w_new[n],
                                            scale=res.scale, zero=res.zero, act_transform=online[id(p)])
            _swap(model, n, layer)
            report.layers.append(_layer_report(n, layer, lin, x, x_seen, orig[n], cfg, p, res.info))
    return report


def _shell(w: torch.Tensor) -> nn.Linear:
    """A bias-free nn.Linear of w's shape on the meta device (no memory, no RNG draw), for from_linear(weight=w)."""
    return nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")


def _layer_report(name, layer, lin, x, x_seen, orig, cfg, plan: GroupPlan, info: dict) -> LayerReport:
    with torch.no_grad():
        ref = F.linear(x, lin.weight, lin.bias)  # the live FP layer (its rows may carry another group's fold)
        err = relative_error(layer(x_seen), ref)
        w0, b0 = orig
        rtn = QuantLinear.from_linear(_shell(w0), cfg, weight=w0)
        rtn.bias = b0
        err_rtn = relative_error(rtn(x), F.linear(x, w0, b0))
    return LayerReport(name, tuple(w0.shape), plan.describe(), err, err_rtn, dict(plan.info) | info)


def rtn_quantize(model: nn.Module, cfg: QuantConfig, calib=None, *, filter_fn=is_linear, mse_clip: bool = False,
                 tokens_per_call: int = 256) -> tuple[nn.Module, PTQReport]:
    """Plain round-to-nearest of every selected linear; calib (optional) only feeds the report's errors.

    mse_clip=True chooses each group's range by QuaRot's MSE clip search instead of min-max.
    """
    with measure() as m:
        if calib is None:
            targets = [n for n, mod in model.named_modules() if n and isinstance(mod, nn.Linear) and filter_fn(mod, n)]
            if not targets:
                raise ValueError("no nn.Linear matched filter_fn; nothing to quantize (check filter_fn)")
            report = PTQReport("rtn", cfg.name, [], notes=["no calibration data: layer errors not measured"])
            for n in targets:
                lin = model.get_submodule(n)
                s, z = rtn_qparams(lin.weight.detach(), cfg, mse_clip) if cfg.quantize_weights else (None, None)
                _swap(model, n, QuantLinear.from_linear(lin, cfg, scale=s, zero=z))
                report.layers.append(LayerReport(n, tuple(lin.weight.shape), "none", None, None))
        else:
            groups = find_input_groups(model, calib, filter_fn, fold=False)
            stats = collect_inputs(model, groups, calib, tokens_per_call=tokens_per_call)
            report = quantize_plans(model, cfg, calib, [GroupPlan(g) for g in groups], stats, "rtn",
                                    rtn_weights(mse_clip))
    report.seconds, report.peak_mem_mb = m.seconds, m.peak_mem_mb
    return model, report
