"""AWQ (Lin et al. 2024, arXiv 2306.00978): protect the weights that meet large activations, by scaling.

Not all weights matter equally: column j of W multiplies input channel j, so its rounding error is amplified
by |x_j|. AWQ scales column j up by s_j before rounding (finer relative step for the salient columns) and the
input down by s_j, which is exact in FP:

    y = x W^T = (x diag(s)^-1) Q(W diag(s))^T + rounding error,     s = a^alpha / sqrt(max(a^alpha) min(a^alpha))

with a_j = mean_t |x_tj| over the calibration tokens (a mean, not SmoothQuant's max) floored at 1e-4, and
alpha searched on a grid of 20 values {0, 0.05, ..., 0.95} to minimise the group's output error

    L(alpha) = sum over the linears of the group || x W^T - (x / s) Q(W diag(s))^T ||^2 / (T N),

on the calibration rows (activations quantized too if cfg asks for it). alpha = 0 gives s = 1, i.e. RTN, so
the search can only match or beat RTN on these rows. Then a **clip search**: for every (row, group of G) of
W diag(s), the shrink ratio r in {1.0, 0.95, ..., 0.55} of the quantization range that minimises that group's
partial output error || x_g (w_g - Q_r(w_g))^T ||^2 (skipped for q and k, whose errors the softmax reshapes;
dllm_ptq.md §2.2). The scale is folded into the producer as in SmoothQuant, or kept online on the
QuantLinear where there is none.

Differences from llm-awq: the loss is each group's own linear outputs (the "inspect module" of llm-awq is
the whole attention block for q/k/v; dllm_ptq.md recommends the MLP for the gate/up group, which is these
linears' output up to the activation); clip ratios shrink min and max together (`choose_qparams(clip_ratio)`)
where llm-awq clamps to +-r max|w| and refits; groups are processed from one FP calibration pass.

Notation: x (T, K) calibration rows, W (N, K), a and s (K,), G group size, n_g = K // G.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import QuantConfig
from .methods import PTQReport, measure
from .primitives import fake_quantize
from .qlinear import is_linear
from .rtn import (GroupPlan, WeightResult, fake_quant_weight, quantize_plans, rtn_qparams, scaled_plans,
                  search_clip)

CLIP_RATIOS = tuple(1.0 - 0.05 * i for i in range(10))   # 1.0, 0.95, ..., 0.55
NO_CLIP = ("to_q", "to_k", "q_proj", "k_proj")            # query / key projections skip the clip search


def _act(x: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    if cfg.quantize_activations and cfg.a_granularity == "per_token":
        return fake_quantize(x, cfg.a_bits, -1, cfg.a_symmetric, clip_ratio=cfg.a_clip_ratio,
                             scale_rule=cfg.a_scale_rule)
    return x


def check_weight_bits(cfg: QuantConfig) -> None:
    if not cfg.quantize_weights:
        raise ValueError(f"AWQ searches weight scales but cfg has w_bits={cfg.w_bits}; use e.g. "
                         f"QuantConfig.from_name('w4a16-g128')")


def awq_scale(x: torch.Tensor, a: torch.Tensor, weights: list[torch.Tensor], cfg: QuantConfig,
              n_grid: int = 20) -> tuple[torch.Tensor, float, list[float]]:
    """Search alpha on {i / n_grid}; return (s (K,), best alpha, loss per alpha)."""
    check_weight_bits(cfg)
    if not isinstance(n_grid, int) or n_grid < 1:
        raise ValueError(f"n_grid={n_grid!r} must be a positive int (the study uses 20)")
    refs = [x @ w.T for w in weights]  # (T, N) FP outputs, bias omitted (it cancels)
    losses, best = [], (float("inf"), None, 0.0)
    for i in range(n_grid):
        alpha = i / n_grid
        s = a.float().pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        xs = _act(x / s, cfg)
        loss = 0.0
        for w, ref in zip(weights, refs):
            ws = w * s[None, :]
            sc, z = rtn_qparams(ws, cfg)
            loss += float((xs @ fake_quant_weight(ws, sc, z, cfg).T - ref).pow(2).mean())
        losses.append(loss)
        if loss < best[0]:
            best = (loss, s, alpha)
    return best[1], best[2], losses


def awq_clip(w: torch.Tensor, x: torch.Tensor, cfg: QuantConfig, ratios=CLIP_RATIOS):
    """Per (row, group) clip ratio minimising || x_g (w_g - Q(w_g))^T ||^2; returns (scale, zero, ratio)."""
    n, k = w.shape
    g = cfg.w_group_size if cfg.w_group_size > 0 else k
    xg = x.reshape(x.shape[0], k // g, g)  # (T, K) -> (T, n_g, G)

    def err(w_hat):  # (R, N, K) -> (R, N, n_g)
        d = (w - w_hat).reshape(-1, n, k // g, g)
        return torch.einsum("tjg,rnjg->rtnj", xg, d).pow(2).mean(1)
    return search_clip(w, cfg, ratios, err)


def awq_weights(clip: bool, clip_tokens: int):
    """A quantize_plans weight quantizer: RTN of W diag(s) with AWQ's per-group clip ratios."""
    def fn(name, w, plan: GroupPlan, stats, cfg) -> WeightResult:
        if not clip or name.rsplit(".", 1)[-1] in NO_CLIP:
            return WeightResult(*rtn_qparams(w, cfg), info=dict(mean_clip=1.0))
        x = stats.x[:: max(1, stats.x.shape[0] // clip_tokens)][:clip_tokens]
        x = x / plan.s if plan.s is not None else x  # W' = W diag(s) reads x / s
        scale, zero, ratio = awq_clip(w, x, cfg)
        return WeightResult(scale, zero, info=dict(mean_clip=round(float(ratio.mean()), 3)))
    return fn


def awq_quantize(model: nn.Module, cfg: QuantConfig, calib, *, n_grid: int = 20, clip: bool = True,
                 clip_tokens: int = 512, filter_fn=is_linear, fold: bool = True, online: bool = True,
                 tokens_per_call: int = 256, check_tol: float = 1e-3) -> tuple[nn.Module, PTQReport]:
    """AWQ: per input group, the alpha-grid scale search, then the clip search and RTN (folded where possible)."""
    check_weight_bits(cfg)
    with measure() as m:
        def plan(g, st):
            ws = [model.get_submodule(n).weight.detach() for n in g.consumers]
            s, alpha, _ = awq_scale(st.x, st.absmean, ws, cfg, n_grid)
            return GroupPlan(g, s=s, label="awq", info={"alpha": alpha})
        plans, stats = scaled_plans(model, calib, filter_fn, fold, online, tokens_per_call, plan)
        report = quantize_plans(model, cfg, calib, plans, stats, "awq", awq_weights(clip, clip_tokens), check_tol)
    report.seconds, report.peak_mem_mb = m.seconds, m.peak_mem_mb
    return model, report
