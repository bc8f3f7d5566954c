"""The Q-Sched presets compute exactly what torchao computes (the paper's W4A8 / W8A8 ran on torchao).

torchao is not a dependency: `ao_*` below write out its published affine formulas
(`choose_qparams_affine`, `quantize_affine`, `dequantize_affine`) and the settings of the two configs the
paper used, `int8_dynamic_activation_int4_weight()` and `int8_dynamic_activation_int8_weight()`:

    symmetric:  s = max(-min_neg, max_pos) / ((qmax - qmin) / 2),  z = (qmax + qmin + 1) // 2
    asymmetric: s = (max_pos - min_neg) / (qmax - qmin),           z = clamp(qmin - round(min_neg / s))
    q = clamp(round(x * (1 / s)) + z, qmin, qmax),   x_hat = (q - z) * s,   s floored at eps

with min_neg = min(min, 0), max_pos = max(max, 0), one (s, z) per block along the last dim.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from qsched_core.quant import QuantConfig, QuantLinear

F32_EPS = torch.finfo(torch.float32).eps


def ao_qparams(x, block: int, symmetric: bool, qmin: int, qmax: int, eps: float):
    g = x.reshape(*x.shape[:-1], x.shape[-1] // block, block)  # (..., K) -> (..., K / block, block)
    min_neg, max_pos = g.amin(-1).clamp(max=0), g.amax(-1).clamp(min=0)
    if symmetric:
        scale = (torch.maximum(-min_neg, max_pos) / ((qmax - qmin) / 2)).clamp(min=eps)
        return scale, torch.full_like(scale, (qmax + qmin + 1) // 2)
    scale = ((max_pos - min_neg) / (qmax - qmin)).clamp(min=eps)
    return scale, torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax)


def ao_fake_quant(x, block: int, symmetric: bool, qmin: int, qmax: int, eps: float):
    scale, zero = ao_qparams(x, block, symmetric, qmin, qmax, eps)
    s, z = scale[..., None], zero[..., None]
    g = x.reshape(*x.shape[:-1], x.shape[-1] // block, block)
    q = torch.clamp(torch.round(g * (1.0 / s)) + z, qmin, qmax)
    return ((q.to(torch.int32) - z.to(torch.int32)).float() * s).reshape(x.shape), q.reshape(x.shape)


def ao_linear(preset: str, x, linear: nn.Linear):
    """What torchao's config for `preset` computes, in float32 (its plain-layout fallback path)."""
    w, k = linear.weight.detach(), x.shape[-1]
    if preset == "w4a8":    # int8_dynamic_activation_int4_weight(group_size=32)
        w_hat, codes = ao_fake_quant(w, 32, True, -8, 7, F32_EPS)
        x_hat, _ = ao_fake_quant(x, k, False, -128, 127, F32_EPS)           # _int8_asymm_per_token_quant
    elif preset == "w8a8":  # int8_dynamic_activation_int8_weight()
        w_hat, codes = ao_fake_quant(w, k, True, -128, 127, F32_EPS)
        x_hat, _ = ao_fake_quant(x, k, True, -127, 127, 1e-5)              # reduced-range symmetric tokens
    else:                   # the paper's W4A4: per-row int4 weights, per-token int4 activations
        w_hat, codes = ao_fake_quant(w, k, True, -8, 7, F32_EPS)
        x_hat, _ = ao_fake_quant(x, k, True, -8, 7, F32_EPS)
    return F.linear(x_hat, w_hat, linear.bias), codes


@pytest.mark.parametrize("shape", [(64, 96), (128, 32), (320, 1280)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("preset", ["w4a8", "w8a8", "w4a4"])
def test_presets_equal_torchao_bit_for_bit(preset, shape):
    k, n = shape
    gen = torch.Generator().manual_seed(k + n)
    linear = nn.Linear(k, n)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n, k, generator=gen) * 0.05)
    x = torch.randn(7, k, generator=gen) * 1.5 + 0.2
    layer = QuantLinear.from_linear(linear, QuantConfig.from_name(preset))
    y_ref, codes_ref = ao_linear(preset, x, linear)
    assert torch.equal(layer.qweight.long(), codes_ref.long()), "weight codes differ from torchao's"
    y = layer(x)
    diff = (y - y_ref).abs()
    assert torch.equal(y, y_ref), f"{preset}: max |diff| {diff.max():.3g}, mean {diff.mean():.3g}"


def test_weight_codes_use_the_whole_int4_range():
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    layer = QuantLinear.from_linear(nn.Linear(128, 64), QuantConfig.from_name("w4a8"))
    layer = QuantLinear.from_linear(nn.Linear(128, 64), QuantConfig.from_name("w4a8"), weight=w)
    assert int(layer.qweight.min()) == -8 and int(layer.qweight.max()) == 7


@pytest.mark.parametrize("preset", ["w4a8", "w8a8"])
def test_old_convention_is_a_named_option_and_differs(preset):
    """The repo's earlier rule (s = max / qmax) is kept as w_scale_rule='qmax'; the reference sees the change."""
    gen = torch.Generator().manual_seed(1)
    linear = nn.Linear(256, 128)
    x = torch.randn(16, 256, generator=gen)
    with torch.no_grad():
        y_ref, _ = ao_linear(preset, x, linear)
    with torch.no_grad():
        old = QuantLinear.from_linear(linear, QuantConfig.from_name(preset, w_scale_rule="qmax"))(x)
        y_fp = linear(x)
    rel = float((old - y_ref).norm() / y_ref.norm())
    fp_rel = float((y_fp - y_ref).norm() / y_ref.norm())  # torchao's own quantization error
    assert rel > 0.2 * fp_rel, f"{preset}: the old rule should differ visibly (rel {rel:.3g} vs {fp_rel:.3g})"


def test_unknown_scale_rule_is_named():
    with pytest.raises(ValueError, match="w_scale_rule='max7'.*'torchao'.*'qmax'"):
        QuantConfig.from_name("w4a8", w_scale_rule="max7")
