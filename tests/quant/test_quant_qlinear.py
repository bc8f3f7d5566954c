"""QuantLinear, quantize_ and the packed-size accounting."""
import copy

import pytest
import torch
import torch.nn as nn

from qsched_core.quant import (QuantConfig, QuantLinear, calibrate_activations, choose_qparams, dequantize,
                               fake_quantize, is_linear, model_size_report, packed_size_bytes, quantize,
                               quantize_)


def make_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32), nn.GELU(), nn.Linear(32, 8))


def rel_err(a, b) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize("shape", [(5, 64), (2, 7, 64)], ids=["2d", "3d"])
def test_w16a16_is_exactly_nn_linear(shape):
    model = make_mlp()
    x = torch.randn(*shape)
    ref = model(x)
    quantize_(model, QuantConfig.from_name("w16a16"))
    assert all(isinstance(model[i], QuantLinear) for i in (0, 2, 4))
    assert torch.equal(model(x), ref)


@pytest.mark.parametrize("name, tol", [("w8a16", 0.01), ("w8a8", 0.02)])
def test_eight_bits_close_to_nn_linear(name, tol):
    model = make_mlp()
    x = torch.randn(16, 64)
    ref = model(x)
    assert rel_err(quantize_(model, QuantConfig.from_name(name))(x), ref) < tol


def test_error_grows_as_bits_shrink():
    x = torch.randn(32, 64)
    ref = make_mlp()(x)
    errs = [rel_err(quantize_(make_mlp(), QuantConfig.from_name(n))(x), ref) for n in ("w8a8", "w4a8", "w4a4")]
    assert errs[0] < errs[1] < errs[2], errs


def test_buffers_shapes_and_forward_reference():
    lin = nn.Linear(64, 16)
    cfg = QuantConfig.from_name("w4a8")
    q = QuantLinear.from_linear(lin, cfg)
    assert q.qweight.shape == (16, 64) and q.qweight.dtype == torch.int8
    assert q.w_scale.shape == (16, 2) and q.w_zero.shape == (16, 2) and q.w_zero.dtype == torch.int32
    assert torch.equal(q.bias, lin.bias.detach()) and q.weight_fp is None and q.weight.shape == (16, 64)
    x = torch.randn(3, 64)
    w_hat = fake_quantize(lin.weight.detach(), 4, 32, True)
    ref = nn.functional.linear(fake_quantize(x, 8, -1, False), w_hat, lin.bias)
    assert torch.equal(q(x), ref)
    assert "w4a8-g32" in repr(q)


def test_from_linear_with_updated_weight_and_precomputed_scales():
    lin = nn.Linear(64, 16, bias=False)
    cfg = QuantConfig.from_name("w4a16-g128", w_group_size=16)  # asymmetric
    w_new = lin.weight.detach() * 0.5  # stand-in for a GPTQ / AWQ update
    scale, zero = choose_qparams(w_new, 4, 16, symmetric=False)
    q = QuantLinear.from_linear(lin, cfg, weight=dequantize(quantize(w_new, scale, zero, 4, False), scale, zero),
                                scale=scale, zero=zero)
    assert torch.equal(q.qweight, quantize(w_new, scale, zero, 4, False))  # codes survive the hand-over
    assert torch.equal(q.w_scale, scale) and q.bias is None
    with pytest.raises(ValueError, match="need `zero`"):
        QuantLinear.from_linear(lin, cfg, scale=scale)
    with pytest.raises(ValueError, match=r"scale shape \(8, 4\) must be \(out_features, n_groups\)"):
        QuantLinear.from_linear(lin, cfg, scale=torch.ones(8, 4), zero=torch.zeros(8, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"weight shape \(16, 32\)"):
        QuantLinear.from_linear(lin, cfg, weight=torch.randn(16, 32))
    bad = lin.weight.detach().clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight contains 1 NaN"):
        QuantLinear.from_linear(lin, cfg, weight=bad)


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


def test_act_transform_hook_runs_before_quantization():
    lin = nn.Linear(8, 4)
    q = QuantLinear.from_linear(lin, QuantConfig.from_name("fp"), act_transform=Double())
    x = torch.randn(3, 8)
    assert torch.equal(q(x), lin(2 * x))
    assert isinstance(q.act_transform, Double) and "act_transform" in dict(q.named_children())


def test_gradient_reaches_the_input_straight_through():
    q = QuantLinear.from_linear(nn.Linear(32, 8), QuantConfig.from_name("w4a8"))
    x = torch.randn(4, 32, requires_grad=True)
    q(x).sum().backward()
    assert torch.allclose(x.grad, q.dequantized_weight().sum(0).expand(4, 32))


def test_quantize_filter_fn_skips_by_name_and_errors():
    model = make_mlp()
    out = quantize_(model, QuantConfig.from_name("w4a8"), filter_fn=lambda m, n: is_linear(m) and n != "4")
    assert out is model and isinstance(model[0], QuantLinear) and isinstance(model[4], nn.Linear)
    with pytest.raises(ValueError, match="matched no layer"):
        quantize_(nn.Sequential(nn.ReLU()), QuantConfig())
    with pytest.raises(ValueError, match="matched no layer"):
        quantize_(make_mlp(), QuantConfig(), filter_fn=lambda m, n: False)
    with pytest.raises(ValueError, match="of type GELU"):
        quantize_(make_mlp(), QuantConfig(), filter_fn=lambda m, n: n in ("0", "1"))
    with pytest.raises(ValueError, match="group_size=32 must divide in_features=40"):
        quantize_(nn.Sequential(nn.Linear(40, 8)), QuantConfig.from_name("w4a8"))


def test_static_per_tensor_activations_need_calibration():
    model = make_mlp()
    x = torch.randn(64, 64)
    ref = model(x)
    quantize_(model, QuantConfig(w_bits=8, w_group_size=-1, a_bits=8, a_granularity="per_tensor"))
    with pytest.raises(ValueError, match="no calibrated scale"):
        model(x)
    with calibrate_activations(model):
        assert torch.equal(model(x), quantize_(make_mlp(), QuantConfig.from_name("w8a16"))(x))
    assert model[0].act_scale.shape == (1,) and rel_err(model(x), ref) < 0.03
    with pytest.raises(ValueError, match="no QuantLinear with a_granularity='per_tensor'"):
        with calibrate_activations(quantize_(make_mlp(), QuantConfig.from_name("w4a8"))):
            pass


def test_state_dict_round_trip():
    cfg = QuantConfig.from_name("w4a8")
    src, dst = quantize_(make_mlp(0), cfg), quantize_(make_mlp(1), cfg)
    dst.load_state_dict(copy.deepcopy(src.state_dict()))
    x = torch.randn(4, 64)
    assert torch.equal(dst(x), src(x))


def test_packed_size_hand_computed():
    lin = nn.Linear(64, 16)  # N = 16, K = 64, with bias
    w4 = QuantLinear.from_linear(lin, QuantConfig.from_name("w4a8"))
    # int4 codes 16*64/2 = 512 B, scales 16*2 groups * 2 B = 64 B, no zeros (symmetric), bias 16*2 = 32 B
    assert packed_size_bytes(w4) == 512 + 64 + 32
    w3 = QuantLinear.from_linear(lin, QuantConfig(w_bits=3, w_group_size=-1, w_symmetric=False))
    # int3 codes 16*64*3/8 = 384 B, scales 16*2 = 32 B, zeros 16*3/8 = 6 B, bias 32 B
    assert packed_size_bytes(w3) == 384 + 32 + 6 + 32
    assert packed_size_bytes(QuantLinear.from_linear(lin, QuantConfig.from_name("fp"))) == (16 * 64 + 16) * 2


def test_model_size_report_counts_the_rest_at_fp16():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(64, 16))
    conv_bytes = (4 * 3 * 9 + 4) * 2
    quantize_(model, QuantConfig.from_name("w4a8"))
    report = model_size_report(model)
    assert report.quantized_bytes == conv_bytes + 608 and report.fp16_bytes == conv_bytes + (16 * 64 + 16) * 2
    assert report.n_quantized_layers == 1 and "w4a8-g32" in str(report) and "KB vs FP16" in str(report)
