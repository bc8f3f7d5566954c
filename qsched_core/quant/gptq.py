"""GPTQ (Frantar et al. 2023, arXiv 2210.17323): round one weight column at a time, push its error onto the rest.

RTN rounds every weight on its own. GPTQ minimises the *output* error ||X W^T - X W_hat^T||^2 of a layer,
whose curvature in each row of W is the Hessian H = (2/N) X^T X (N calibration tokens, X (N, K)). After
rounding column i to q_i, the remaining columns F are corrected so that the output moves as little as possible
(the Optimal Brain Surgeon update, with H^-1 restricted to the columns not yet quantized):

    e = (w_i - q_i) / [H_F^-1]_ii,        w_F <- w_F - e [H_F^-1]_{i,F}

GPTQ's three tricks make that practical:
  1. the rows of the upper Cholesky factor U of H^-1 are exactly the [H_F^-1]_{i,F} / sqrt([H_F^-1]_ii) needed
     at step i, so one factorisation serves every column (no re-inversion); e = (w_i - q_i) / U_ii;
  2. lazy batches: updates inside a block of B = 128 columns are applied at once, the rest of W gets the
     accumulated error of the block in one matmul W[:, i2:] -= E U[block, i2:];
  3. damping: H + lambda I with lambda = 0.01 * mean(diag H); if a Cholesky still fails, lambda is raised
     tenfold (up to `max_retries` times) and the report says so.
Dead inputs (H_jj = 0) get H_jj = 1 and a zero weight column.

Groups: when a column starts a group of G, that group's (scale, zero) is refitted on the current, already
updated weights (the study's setting). B must be a multiple of G so that a group never straddles a lazy
block; then this code equals the naive column-by-column algorithm exactly (tests/ptq check it to 1e-5).
act_order quantizes columns by decreasing H_jj. AutoGPTQ then forms groups of consecutive *permuted*
columns and stores a per-column group index; QuantLinear stores one scale per *original* group of G, so here
act_order needs static groups (AutoGPTQ's `static_groups=True`: each original group's parameters are fitted
once on the initial W, and every column uses its original group's) or per-channel weights. The study runs
GPTQ without act_order (dllm_ptq.md §2.1).

Sequential (the study's "true-sequential"): input groups are quantized in execution order, and each group's
Hessian is collected on the model whose earlier layers are already quantized, so later layers see, and
compensate, the error of earlier ones. It costs one calibration pass per input group; sequential=False uses
Hessians from one FP pass.

Notation: W (N, K), H (K, K), U upper Cholesky factor of H^-1, B block size, G group size.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from ..progress import progress
from .calib import collect_inputs, find_input_groups
from .config import QuantConfig
from .methods import PTQReport, measure
from .qlinear import is_linear
from .rtn import GroupPlan, WeightResult, fake_quant_weight, quantize_plans, rtn_qparams


@dataclass
class GPTQResult:
    weight: torch.Tensor     # (N, K) float32, every entry on its group's grid
    scale: torch.Tensor      # (N, n_g) float32, per original group
    zero: torch.Tensor       # (N, n_g) int32
    perm: torch.Tensor | None  # (K,) act-order permutation, None without act_order
    percdamp: float          # damping actually used (0.01 unless a Cholesky failed)
    retries: int


def check_gptq_args(cfg: QuantConfig, k: int, block_size: int, act_order: bool, static_groups: bool) -> int:
    """Validate and return the group size G (K when per channel)."""
    if not cfg.quantize_weights:
        raise ValueError(f"GPTQ quantizes weights but cfg has w_bits={cfg.w_bits}; pass a config with w_bits in "
                         f"2..8, e.g. QuantConfig.from_name('w4a16-g128')")
    g = cfg.w_group_size if cfg.w_group_size > 0 else k
    if k % g:
        raise ValueError(f"w_group_size={g} must divide in_features={k}; pick a divisor or -1 (per channel)")
    if not isinstance(block_size, int) or block_size <= 0 or (g < k and block_size % g):
        raise ValueError(f"block_size={block_size} must be a positive multiple of w_group_size={g} so a group never "
                         f"straddles a lazy block; e.g. block_size={max(g, 128 // g * g)}")
    if act_order and g < k and not static_groups:
        raise ValueError("act_order with groups needs static_groups=True here (scales stay per original group of "
                         "G columns, which QuantLinear stores); or use per-channel weights (w_group_size=-1)")
    return g


def inverse_cholesky(h: torch.Tensor, percdamp: float, max_retries: int = 4) -> tuple[torch.Tensor, float, int]:
    """U = upper Cholesky factor of (H + lambda I)^-1, lambda = percdamp * mean(diag H); damping x10 on failure."""
    mean_diag = float(torch.diag(h).mean())
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    for attempt in range(max_retries + 1):
        damp = percdamp * 10**attempt
        try:
            low = torch.linalg.cholesky(h + damp * mean_diag * eye)
            return torch.linalg.cholesky(torch.cholesky_inverse(low), upper=True), damp, attempt
        except torch.linalg.LinAlgError:  # not positive definite (any other error, e.g. devices, propagates)
            continue
    raise ValueError(f"the Hessian is not positive definite even with damping {damp:g} * mean(diag H): check the "
                     f"calibration inputs (NaN, or far fewer tokens than in_features={h.shape[0]})")


def gptq_weight(w: torch.Tensor, h: torch.Tensor, cfg: QuantConfig, *, block_size: int = 128,
                percdamp: float = 0.01, act_order: bool = False, static_groups: bool = False,
                mse_clip: bool = False, max_retries: int = 4) -> GPTQResult:
    """Quantize one weight W (N, K) with GPTQ given H (K, K) = (2/N) X^T X; float64 inside."""
    n, k = w.shape
    if tuple(h.shape) != (k, k):
        raise ValueError(f"Hessian shape {tuple(h.shape)} must be (in_features, in_features) = {(k, k)}")
    g = check_gptq_args(cfg, k, block_size, act_order, static_groups)
    col_cfg = replace(cfg, w_group_size=-1)  # fits one (scale, zero) per row of a G-column slice

    def fit(cols: torch.Tensor):
        return rtn_qparams(cols.float(), col_cfg, mse_clip)

    W, H = w.detach().double().clone(), h.detach().double().to(w.device).clone()  # on w's device (CPU or GPU)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0  # 0. dead inputs: unit curvature, zero weight
    W[:, dead] = 0.0
    params = {j: fit(W[:, j * g:(j + 1) * g]) for j in range(k // g)} if (static_groups or g == k) else {}
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else None
    if perm is not None:  # 1. act-order: the columns with the largest curvature first
        W, H = W[:, perm], H[perm][:, perm]
    U, damp, retries = inverse_cholesky(H, percdamp, max_retries)  # 2. damping + Cholesky of H^-1
    Q = torch.zeros_like(W)
    for i1 in range(0, k, block_size):  # 3. lazy blocks of B columns
        i2 = min(i1 + block_size, k)
        W1, E1 = W[:, i1:i2], torch.zeros(n, i2 - i1, dtype=W.dtype, device=W.device)  # W1 is a view: updates land in W
        for i in range(i2 - i1):
            col = i1 + i
            orig = int(perm[col]) if perm is not None else col
            if orig // g not in params or (g < k and not static_groups and col % g == 0):
                params[orig // g] = fit(W[:, col:col + g])  # refit on the current, updated weights
            s, z = params[orig // g]
            q = fake_quant_weight(W1[:, i:i + 1].float(), s, z, cfg).double()[:, 0]  # (N,)
            Q[:, col] = q
            err = (W1[:, i] - q) / U[col, col]  # e = (w_i - q_i) / U_ii
            W1[:, i:] -= err[:, None] * U[col, col:i2][None, :]  # 4. OBS update inside the block
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]  # 5. the block's error onto every later column at once
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    scale = torch.cat([params[j][0] for j in range(k // g)], dim=1)
    zero = torch.cat([params[j][1] for j in range(k // g)], dim=1)
    return GPTQResult(Q.float(), scale, zero, perm, damp, retries)


# GPTQ of a layer with fewer input columns runs on the CPU: the tiny world's 134 UNet layers take 3 s on a 2-core
# CPU, while the whole W4A8 GPTQ pipeline with the loop on an H200 took 54 s (launch-bound). Wider layers (real
# models) stay on their own device.
GPU_MIN_K = 1024


def gptq_weights(notes: list[str], **opts):
    """A quantize_plans weight quantizer: GPTQ on W' with the Hessian mapped into the plan's frame."""
    def fn(name, w, plan: GroupPlan, stats, cfg) -> WeightResult:
        h = stats.hessian()
        if plan.s is not None or plan.rotation is not None:  # x' = x M  =>  H' = M^T H M
            m = plan.input_matrix(h.shape[0]).to(h)
            h = m.T @ h @ m
        # the column loop launches a few tiny kernels per column: below GPU_MIN_K columns the CPU is faster
        dev = w.device if w.shape[1] >= GPU_MIN_K else torch.device("cpu")
        r = gptq_weight(w.to(dev), h.to(dev), cfg, **opts)
        if r.retries:
            notes.append(f"{name}: Cholesky failed, damping raised to {r.percdamp:g} * mean(diag H)")
        return WeightResult(r.scale.to(w.device), r.zero.to(w.device), r.weight.to(w.device), dict(damp=r.percdamp))
    return fn


def gptq_quantize(model: nn.Module, cfg: QuantConfig, calib, *, filter_fn=is_linear, sequential: bool = True,
                  block_size: int = 128, percdamp: float = 0.01, act_order: bool = False,
                  static_groups: bool = False, mse_clip: bool = False,
                  tokens_per_call: int = 256) -> tuple[nn.Module, PTQReport]:
    """GPTQ every selected linear (study defaults: damp 0.01, B = 128, no act_order, sequential)."""
    if not cfg.quantize_weights:
        check_gptq_args(cfg, 1, block_size, act_order, static_groups)
    notes: list[str] = []
    weight_fn = gptq_weights(notes, block_size=block_size, percdamp=percdamp, act_order=act_order,
                             static_groups=static_groups, mse_clip=mse_clip)
    with measure() as m:
        groups = find_input_groups(model, calib, filter_fn, fold=False)
        if sequential:  # one calibration pass per group, on the partly quantized model
            report = PTQReport("gptq", cfg.name, [])
            for group in progress(groups, desc="gptq: sequential groups"):
                stats = collect_inputs(model, [group], calib, tokens_per_call=tokens_per_call, hessian=True)
                report.layers += quantize_plans(model, cfg, calib, [GroupPlan(group)], stats, "gptq", weight_fn).layers
        else:
            stats = collect_inputs(model, groups, calib, tokens_per_call=tokens_per_call, hessian=True)
            report = quantize_plans(model, cfg, calib, [GroupPlan(g) for g in groups], stats, "gptq", weight_fn)
    report.seconds, report.peak_mem_mb, report.notes = m.seconds, m.peak_mem_mb, notes
    return model, report
