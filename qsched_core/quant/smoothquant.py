"""SmoothQuant (Xiao et al. 2023, arXiv 2211.10438): move the activation outliers into the weights.

Per-token activation quantization fails on outlier *channels*: every token carries them, so every token's
step is large. Weights have no such channels. SmoothQuant divides input channel j by s_j and multiplies the
matching weight column by s_j, which leaves x W^T unchanged:

    y = x W^T = (x diag(s)^-1) (W diag(s))^T,        s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

alpha = 0.5 splits the difficulty evenly: after smoothing, channel j of the activation and column j of the
weight both have range sqrt(max|X_j| max|W_j|). max|X_j| is over every calibration token; max|W_j| is over
every linear that reads X (the original SmoothQuant; the study's code uses only q_proj / up_proj, ⚠
dllm_ptq.md §2.3), and s is clamped to >= 1e-5.

The division by s is free when folded into the producer of X (calib.find_input_groups): a LayerNorm /
RMSNorm / GroupNorm weight and bias, or the rows of a previous linear (V -> output projection, the value
half of GEGLU -> down projection). Inputs without one (the UNet's time-embedding MLP, proj_out after the
residual adds, cross-attention K/V reading the text embeddings) keep s online, as a `ChannelScale` on the
QuantLinear: one extra multiply per element at run time (`online=False` leaves those layers unsmoothed, as the
original SmoothQuant does). Weights and activations are then quantized per cfg; the study uses per-channel
asymmetric weights and per-token asymmetric activations:
`QuantConfig.from_name("w8a8", w_symmetric=False, a_symmetric=False)`.

`smooth_scales` is shared with DuQuant (which smooths, then rotates).
Notation: X (T, K) input, W (N, K), s (K,).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import QuantConfig
from .methods import PTQReport, measure
from .qlinear import is_linear
from .rtn import GroupPlan, quantize_plans, scaled_plans

S_MIN = 1e-5


def check_alpha(alpha: float, name: str = "alpha") -> float:
    if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name}={alpha!r} must be in [0, 1] (0.5 splits the range evenly between X and W)")
    return float(alpha)


def smooth_scales(act_absmax: torch.Tensor, weights: list[torch.Tensor], alpha: float = 0.5) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha), W_j over every weight in `weights`; (K,) float32, >= 1e-5."""
    check_alpha(alpha)
    w_absmax = torch.stack([w.detach().abs().amax(0) for w in weights]).amax(0).float()  # (K,)
    a = act_absmax.float().clamp(min=S_MIN)
    return (a.pow(alpha) / w_absmax.clamp(min=S_MIN).pow(1 - alpha)).clamp(min=S_MIN)


def smoothquant_quantize(model: nn.Module, cfg: QuantConfig, calib, *, alpha: float = 0.5,
                         filter_fn=is_linear, fold: bool = True, online: bool = True, tokens_per_call: int = 256,
                         check_tol: float = 1e-3) -> tuple[nn.Module, PTQReport]:
    """Smooth every input group (folded where possible, else online), then quantize weights and activations.

    fold=False keeps every scale online; online=False skips groups that have no producer to fold into.
    """
    check_alpha(alpha)
    with measure() as m:
        def plan(g, st):
            s = smooth_scales(st.absmax, [model.get_submodule(n).weight for n in g.consumers], alpha)
            return GroupPlan(g, s=s, label="smooth", info={"alpha": alpha})
        plans, stats = scaled_plans(model, calib, filter_fn, fold, online, tokens_per_call, plan)
        report = quantize_plans(model, cfg, calib, plans, stats, "smoothquant", check_tol=check_tol)
    report.seconds, report.peak_mem_mb = m.seconds, m.peak_mem_mb
    return model, report
