"""QuaRot (Ashkboos et al. 2024, arXiv 2404.00456): rotate activations so that no channel is an outlier.

An orthogonal Q leaves a linear layer unchanged when the weight gets the same rotation on its input side,

    y = x W^T = (x Q)(W Q)^T,        Q = diag(d) H_K / sqrt(K),  d random signs,  H_K Hadamard,

and x Q spreads every outlier channel over all K channels (`hadamard.py`): the activation's per-token range
shrinks towards its RMS, so per-token int4 keeps the ordinary channels. The weights are rotated too, which
also evens out their rows. QuaRot then quantizes W Q with GPTQ (per-channel, symmetric, MSE clip search),
with the Hessian of the rotated input H' = Q^T H Q, and the activations per token.

Where Q lives, and the trade-off. In an RMSNorm transformer QuaRot rotates the *residual stream* once:
Q is folded into the embedding, into the output rows of every linear that writes the residual and into the
input columns of every linear that reads it, because a gain-free RMSNorm commutes with Q. Those rotations
cost nothing at run time; only the down-projection input (after the elementwise SwiGLU product) and the
attention heads need an *online* Hadamard. That surgery needs a model-specific map of the residual stream,
and it does not carry over to this repo's UNet: its blocks use LayerNorm (the mean subtraction does not
commute with Q), GEGLU, GroupNorm -> proj_in and a time-embedding MLP. So here every input group gets its
own online rotation, x -> x Q as the QuantLinear's act_transform, with W Q stored offline:
  + exact for any nn.Linear model, no architecture map, every layer rotated (and listed in the report);
  - one fast Hadamard transform per token per input group at run time, O(K log K) (q, k, v share one Q),
    where the fused residual rotation costs nothing; in this fake-quantized simulation each linear applies
    it itself. On small models this is the clean choice; at scale the fused form is what one deploys.

Widths: K = m * 2^k with m = 1 or a Paley size (12 for the UNet's 96 / 384 / 768); others raise a ValueError
naming the layer and width, unless skip_unsupported=True leaves them unrotated (noted in the report).

Notation: x (T, K), W (N, K), Q (K, K) orthogonal, H (K, K) GPTQ Hessian.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .calib import collect_inputs, find_input_groups
from .config import QuantConfig
from .gptq import gptq_weights
from .hadamard import HadamardRotation, factor_size, random_signs, supported_sizes
from .methods import PTQReport, measure
from .qlinear import is_linear
from .rtn import GroupPlan, quantize_plans, rtn_weights


def quarot_quantize(model: nn.Module, cfg: QuantConfig, calib, *, weights: str = "gptq", mse_clip: bool = True,
                    seed: int = 0, skip_unsupported: bool = False, filter_fn=is_linear, block_size: int = 128,
                    percdamp: float = 0.01, tokens_per_call: int = 256,
                    check_tol: float = 1e-3) -> tuple[nn.Module, PTQReport]:
    """Online randomised Hadamard on every input group, W Q offline, weights by GPTQ ("gptq") or "rtn".

    seed fixes the random signs d; mse_clip picks weight ranges by QuaRot's MSE clip search.
    """
    if weights not in ("gptq", "rtn"):
        raise ValueError(f"weights={weights!r} must be 'gptq' (QuaRot's choice) or 'rtn'")
    notes: list[str] = []
    with measure() as m:
        groups = find_input_groups(model, calib, filter_fn, fold=False)
        gen = torch.Generator().manual_seed(seed)
        plans = []
        for g in groups:
            k = model.get_submodule(g.consumers[0]).in_features
            if factor_size(k) is None:
                if not skip_unsupported:
                    raise ValueError(f"QuaRot: {g.consumers[0]} has in_features={k}, which has no Hadamard matrix "
                                     f"(supported up to 128: {supported_sizes(128)}); exclude it with filter_fn or "
                                     f"pass skip_unsupported=True to leave it unrotated")
                notes.append(f"{', '.join(g.consumers)}: width {k} has no Hadamard matrix, left unrotated")
                plans.append(GroupPlan(g))
                continue
            plans.append(GroupPlan(g, rotation=HadamardRotation(random_signs(k, gen)), label="hadamard"))
        use_gptq = weights == "gptq" and cfg.quantize_weights
        stats = collect_inputs(model, groups, calib, tokens_per_call=tokens_per_call, hessian=use_gptq)
        weight_fn = (gptq_weights(notes, block_size=block_size, percdamp=percdamp, mse_clip=mse_clip) if use_gptq
                     else rtn_weights(mse_clip))
        report = quantize_plans(model, cfg, calib, plans, stats, "quarot", weight_fn, check_tol)
    report.seconds, report.peak_mem_mb, report.notes = m.seconds, m.peak_mem_mb, notes
    return model, report
