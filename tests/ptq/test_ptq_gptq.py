"""GPTQ against a brute-force OBQ reference, its options, damping retry and argument errors."""
import copy
from dataclasses import replace

import pytest
import torch

from qsched_core.quant import QuantConfig, QuantLinear, choose_qparams
from qsched_core.quant.calib import InputGroup, InputStats
from qsched_core.quant.gptq import gptq_quantize, gptq_weight, gptq_weights, inverse_cholesky
from qsched_core.quant.rtn import GroupPlan, fake_quant_weight, mse_qparams

from ptq_models import norm_linear, rel_err


def naive_gptq(w, h, cfg, percdamp=0.01, act_order=False, static_groups=False):
    """Column by column with an explicit inverse of the damped Hessian of the columns not yet quantized."""
    W, H = w.double().clone(), h.double().clone()
    n, k = W.shape
    g = cfg.w_group_size if cfg.w_group_size > 0 else k
    H = H + percdamp * torch.diag(H).mean() * torch.eye(k, dtype=torch.float64)
    row_cfg = replace(cfg, w_group_size=-1)

    def fit(cols):
        return choose_qparams(cols.float(), cfg.w_bits, -1, cfg.w_symmetric)
    params = {j: fit(W[:, j * g:(j + 1) * g]) for j in range(k // g)} if (static_groups or g == k) else {}
    order = torch.argsort(torch.diag(H), descending=True).tolist() if act_order else list(range(k))
    Q = torch.zeros_like(W)
    for step, c in enumerate(order):
        rest = order[step:]                       # c and every column after it
        hinv = torch.linalg.inv(H[rest][:, rest])  # [H_F^-1], F = remaining columns
        if c // g not in params or (g < k and not static_groups and c % g == 0):
            params[c // g] = fit(W[:, c:c + g])
        q = fake_quant_weight(W[:, c:c + 1].float(), *params[c // g], row_cfg).double()[:, 0]
        err = (W[:, c] - q) / hinv[0, 0]
        W[:, rest] -= err[:, None] * hinv[0][None, :]  # the OBS update of every remaining column
        Q[:, c] = q
    return Q.float()


def problem(n=4, k=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, k, generator=g) @ torch.randn(k, k, generator=g)  # correlated inputs
    return torch.randn(n, k, generator=g), 2 * x.T @ x / 64


@pytest.mark.parametrize("group_size, block_size, act_order, static", [
    (-1, 128, False, False), (-1, 2, False, False), (4, 4, False, False), (2, 4, False, False),
    (-1, 3, True, False), (4, 8, True, True), (4, 4, False, True)],
    ids=["per-channel", "lazy-blocks-of-2", "groups-of-4", "groups-of-2-in-blocks-of-4", "act-order",
         "act-order-static-groups", "static-groups"])
def test_gptq_matches_brute_force(group_size, block_size, act_order, static):
    w, h = problem()
    cfg = QuantConfig(w_bits=3, w_group_size=group_size, w_symmetric=False)
    ours = gptq_weight(w, h, cfg, block_size=block_size, act_order=act_order, static_groups=static)
    ref = naive_gptq(w, h, cfg, act_order=act_order, static_groups=static)
    assert (ours.weight - ref).abs().max() < 1e-5
    layer = QuantLinear.from_linear(torch.nn.Linear(8, 4, bias=False), cfg, weight=ours.weight,
                                    scale=ours.scale, zero=ours.zero)
    assert torch.allclose(layer.dequantized_weight(), ours.weight, atol=1e-6)  # codes survive the hand-over


def test_gptq_beats_rtn_on_the_output_and_handles_dead_inputs():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(512, 32, generator=g) @ torch.randn(32, 32, generator=g)
    x[:, 5] = 0.0  # a dead input channel
    w = torch.randn(16, 32, generator=g)
    cfg = QuantConfig(w_bits=3, w_group_size=-1)
    r = gptq_weight(w, 2 * x.T @ x / 512, cfg)
    rtn = fake_quant_weight(w, *choose_qparams(w, 3, -1, True), cfg)
    err_gptq, err_rtn = rel_err(x @ r.weight.T, x @ w.T), rel_err(x @ rtn.T, x @ w.T)
    assert err_gptq < 0.85 * err_rtn
    assert torch.all(r.weight[:, 5] == 0)


def test_damping_is_raised_when_cholesky_fails_and_reported():
    h = torch.tensor([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1: not positive definite
    u, damp, retries = inverse_cholesky(h.double(), 0.01)
    assert retries >= 2 and damp >= 1.0 and torch.isfinite(u).all()  # 0.01 and 0.1 fail
    notes = []
    stats = InputStats(torch.zeros(2, 2), torch.ones(2), torch.ones(2), h.double() * 1.0, n_tokens=2)
    fn = gptq_weights(notes)
    fn("fc", torch.randn(3, 2), GroupPlan(InputGroup(("fc",))), stats, QuantConfig(w_bits=4, w_group_size=-1))
    assert notes and "damping raised" in notes[0]
    with pytest.raises(ValueError, match="not positive definite even with damping"):
        inverse_cholesky(-torch.eye(3, dtype=torch.float64), 0.01, max_retries=1)


def test_gptq_argument_errors():
    w, h = problem()
    with pytest.raises(ValueError, match="block_size=6 must be a positive multiple of w_group_size=4"):
        gptq_weight(w, h, QuantConfig(w_bits=4, w_group_size=4), block_size=6)
    with pytest.raises(ValueError, match="act_order with groups needs static_groups=True"):
        gptq_weight(w, h, QuantConfig(w_bits=4, w_group_size=4), act_order=True)
    with pytest.raises(ValueError, match=r"Hessian shape \(4, 4\)"):
        gptq_weight(w, h[:4, :4], QuantConfig(w_bits=4, w_group_size=-1))
    with pytest.raises(ValueError, match="GPTQ quantizes weights but cfg has w_bits=16"):
        gptq_quantize(norm_linear(), QuantConfig.from_name("fp"), [torch.randn(4, 128)])


def test_mse_clip_lowers_the_weight_error_it_minimises():
    w = torch.randn(32, 64)
    w[0, 0] = 8.0
    cfg = QuantConfig(w_bits=3, w_group_size=16)

    def err(s, z):
        return float((fake_quant_weight(w, s, z, cfg) - w).abs().pow(2.4).sum())
    assert err(*mse_qparams(w, cfg)) < err(*choose_qparams(w, 3, 16, True))


@pytest.mark.parametrize("sequential", [True, False])
def test_gptq_model_level(sequential):
    model = norm_linear()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(64, 128, generator=g) for _ in range(3)]
    cfg = QuantConfig.from_name("w3a16-g128", w_group_size=32)
    q, report = gptq_quantize(copy.deepcopy(model), cfg, calib, sequential=sequential)
    assert isinstance(q[1], QuantLinear) and [r.name for r in report.layers] == ["1"]
    assert report.layers[0].rel_err < report.layers[0].rel_err_rtn and report.seconds > 0
