"""The six methods end to end: exact transforms, where each beats RTN, the tiny UNet, and clear errors."""
import copy

import pytest
import torch
import torch.nn as nn

from qsched_core.quant import QuantConfig, QuantLinear
from qsched_core.quant.awq import awq_scale
from qsched_core.quant.methods import METHODS, apply_ptq

from ptq_models import block_batches, make_block, norm_linear, outlier_layer, rel_err

FP = QuantConfig.from_name("fp")
TRANSFORMS = {"smoothquant": {}, "quarot": {}, "duquant": dict(steps=16)}


@pytest.mark.parametrize("norm", ["rms", "ln"])
@pytest.mark.parametrize("method", list(TRANSFORMS))
def test_transforms_leave_the_fp_block_unchanged(method, norm):
    model, x = make_block(norm), block_batches(1, 9)[0]
    ref = model(x).detach()
    q, report = apply_ptq(copy.deepcopy(model), method, FP, block_batches(2, 0), **TRANSFORMS[method])
    assert (q(x) - ref).abs().max() <= 1e-4 and report.fp_max_abs_diff <= 1e-4
    assert all(isinstance(q.get_submodule(r.name), QuantLinear) for r in report.layers)
    if method != "quarot":  # smoothing folded into the norm gains and V / up rows, not kept online
        assert not torch.equal(q.attn_norm.weight, model.attn_norm.weight)
        assert q.q_proj.act_transform is None or not isinstance(q.q_proj.act_transform, nn.Sequential)


def test_awq_scaling_alone_is_exact():
    model, x = make_block("ln"), block_batches(1, 9)[0]
    ref = model(x).detach()
    q, report = apply_ptq(copy.deepcopy(model), "awq", QuantConfig.from_name("w4a16-g128", w_group_size=32),
                          block_batches(2, 0))
    assert report.fp_max_abs_diff <= 1e-4  # the folded s before rounding
    assert {r.info["alpha"] for r in report.layers} != {0.0}  # it did scale
    assert rel_err(q(x), ref) < 0.2


@pytest.mark.parametrize("method", ["smoothquant", "quarot", "duquant", "awq"])
def test_transforms_leave_the_fp_unet_unchanged(method, tiny_unet, unet_calls):
    ref = tiny_unet(*unet_calls[0].args, **unet_calls[0].kwargs)[0]
    cfg = QuantConfig.from_name("w8a16") if method == "awq" else FP
    opts = dict(steps=8) if method == "duquant" else {}
    q, report = apply_ptq(copy.deepcopy(tiny_unet), method, cfg, unet_calls, **opts)
    assert report.fp_max_abs_diff <= 1e-4
    if method != "awq":
        assert (q(*unet_calls[0].args, **unet_calls[0].kwargs)[0] - ref).abs().max() <= 1e-4
    online = [r.name for r in report.layers if "online" in r.transform]
    assert any("time_embedding" in n for n in online) and any("attn2.to_k" in n for n in online)


def test_a_wrong_fold_is_caught():
    class NotLinearInV(nn.Module):  # names match the v -> o pattern, but a tanh sits between them
        def __init__(self):
            super().__init__()
            self.v_proj, self.o_proj = nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            return self.o_proj(torch.tanh(self.v_proj(x)))
    model = NotLinearInV()
    with pytest.raises(ValueError, match="a fold does not hold.*fold=False"):
        apply_ptq(model, "smoothquant", QuantConfig.from_name("w8a8"), [torch.randn(8, 16) * 3])
    q, report = apply_ptq(NotLinearInV(), "smoothquant", QuantConfig.from_name("w8a8"), [torch.randn(8, 16)],
                          fold=False)
    assert all(r.transform == "smooth online" for r in report.layers)


def held_out_error(model, method, cfg, calib, x, **opts) -> float:
    q, _ = apply_ptq(copy.deepcopy(model), method, cfg, calib, **opts)
    return rel_err(q(x), model(x))


@pytest.mark.parametrize("preset", ["w3a16-g128", "w4a16-g128"])
@pytest.mark.parametrize("method, factor", [("gptq", 0.9), ("awq", 0.8)])
def test_weight_only_methods_beat_rtn(method, factor, preset):
    model, calib, x = outlier_layer()
    cfg = QuantConfig.from_name(preset, w_group_size=32)  # 4 groups per row of 128
    err, err_rtn = (held_out_error(model, m, cfg, calib, x) for m in (method, "rtn"))
    assert err < factor * err_rtn


def test_weight_only_methods_beat_rtn_on_every_block_layer():
    cfg = QuantConfig.from_name("w3a16-g128", w_group_size=32)
    for method in ("gptq", "awq"):
        _, report = apply_ptq(make_block(), method, cfg, block_batches(3, 0))
        assert report.mean_error() < 0.8 * report.mean_error(rtn=True), method


@pytest.mark.parametrize("preset", ["w8a8", "w4a4"])
@pytest.mark.parametrize("method", list(TRANSFORMS))
@pytest.mark.parametrize("where", ["block", "layer"])
def test_weight_activation_methods_beat_rtn_on_outlier_channels(where, method, preset):
    if where == "block":  # folds into the norms and V / up rows
        model, calib, x = make_block(), block_batches(3, 0), block_batches(1, 9)[0]
    else:                 # a lone linear: every transform stays online
        model, calib, x = outlier_layer()
    cfg = QuantConfig.from_name(preset)
    opts = TRANSFORMS[method]
    err, err_rtn = held_out_error(model, method, cfg, calib, x, **opts), held_out_error(model, "rtn", cfg, calib, x)
    assert err < 0.8 * err_rtn


def test_awq_alpha_search_never_loses_to_rtn_on_its_rows():
    lin = norm_linear()
    x = lin[0](torch.randn(256, 128)).detach()
    cfg = QuantConfig.from_name("w3a16-g128", w_group_size=32)
    s, alpha, losses = awq_scale(x, x.abs().mean(0), [lin[1].weight.detach()], cfg)
    assert len(losses) == 20 and min(losses) <= losses[0] and alpha > 0  # losses[0]: alpha = 0, plain RTN


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_a_unet_at_w8a8(method, tiny_unet, unet_calls):
    opts = dict(steps=8) if method == "duquant" else {}
    q, report = apply_ptq(copy.deepcopy(tiny_unet), method, QuantConfig.from_name("w8a8"), unet_calls, **opts)
    out, ref = (m(*unet_calls[1].args, **unet_calls[1].kwargs)[0] for m in (q, tiny_unet))
    assert torch.isfinite(out).all() and rel_err(out, ref) < 0.05
    n_linear = sum(isinstance(m, nn.Linear) for m in tiny_unet.modules())
    assert len(report.layers) == n_linear == sum(isinstance(m, QuantLinear) for m in q.modules())


def test_argument_errors(tiny_unet, unet_calls):
    calib = block_batches(1, 0)
    with pytest.raises(ValueError, match="unknown PTQ method 'obq'"):
        apply_ptq(make_block(), "obq", FP, calib)
    with pytest.raises(ValueError, match="w_bits=1 must be an int in 2..8"):
        QuantConfig(w_bits=1)
    with pytest.raises(ValueError, match="AWQ searches weight scales but cfg has w_bits=16"):
        apply_ptq(make_block(), "awq", FP, calib)
    with pytest.raises(ValueError, match=r"block size 48 must divide in_features=64"):
        apply_ptq(make_block(), "duquant", FP, calib, block_size=48)
    with pytest.raises(ValueError, match=r"alpha=1.5 must be in \[0, 1\]"):
        apply_ptq(make_block(), "smoothquant", FP, calib, alpha=1.5)
    odd = nn.Sequential(nn.Linear(8, 36), nn.GELU(), nn.Linear(36, 8))
    with pytest.raises(ValueError, match=r"QuaRot: 2 has in_features=36, which has no Hadamard matrix"):
        apply_ptq(odd, "quarot", FP, [torch.randn(4, 8)])
    q, report = apply_ptq(odd, "quarot", QuantConfig.from_name("w8a8"), [torch.randn(4, 8)], skip_unsupported=True)
    assert "width 36 has no Hadamard matrix" in report.notes[0] and q[2].act_transform is None
