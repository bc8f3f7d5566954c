"""Bad inputs to quantization: primitives, QuantConfig, QuantLinear and quantize_ (a 1e-13 weight row lost
its values silently, W4A8 layers rejected an empty (0, K) batch that nn.Linear accepts, quantizing twice failed
without saying why, `QuantConfig.from_name(cfg.name)` failed for the config's own name)."""
import copy

import pytest
import torch
from torch import nn

from qsched_core.quant import (PRESETS, QuantConfig, QuantLinear, choose_qparams, dequantize, fake_quantize,
                               quantize, quantize_)
from robust_helpers import clear

X = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))


PRIMITIVE_CASES = [
    pytest.param(lambda: choose_qparams(torch.randn(8, 320), 4, 48), ("group_size=48", "in_features=320", "32 or 40"),
                 id="group-size-not-divisor"),
    pytest.param(lambda: choose_qparams(X, 4, 0), ("group_size=0",), id="group-size-zero"),
    pytest.param(lambda: choose_qparams(X, 4, 32.0), ("group_size=32.0",), id="group-size-float"),
    pytest.param(lambda: choose_qparams(X, 16), ("bits=16", "2..8"), id="bits-16"),
    pytest.param(lambda: choose_qparams(X, 1), ("bits=1",), id="bits-1"),
    pytest.param(lambda: choose_qparams(X, True), ("bits=True",), id="bits-bool"),
    pytest.param(lambda: choose_qparams(X, 4.0), ("bits=4.0", "int(bits)"), id="bits-float"),
    pytest.param(lambda: choose_qparams(X, "4"), ("bits='4'",), id="bits-str"),
    pytest.param(lambda: choose_qparams(X.index_fill(1, torch.tensor([3]), float("nan")), 4),
                 ("4 NaN", "finite"), id="qparams-nan"),
    pytest.param(lambda: choose_qparams(X.index_fill(1, torch.tensor([3]), float("inf")), 4), ("4 inf",),
                 id="qparams-inf"),
    pytest.param(lambda: choose_qparams(X.to(torch.int32), 4), ("integer dtype", ".float()"), id="qparams-int"),
    pytest.param(lambda: choose_qparams(torch.zeros(0, 64), 4), ("(0, 64)",), id="qparams-empty"),
    pytest.param(lambda: choose_qparams(torch.tensor(1.0), 4), ("shape ()",), id="qparams-0d"),
    pytest.param(lambda: choose_qparams(X.tolist(), 4), ("torch.Tensor", "list"), id="qparams-list"),
    pytest.param(lambda: choose_qparams(X, 4, clip_ratio=0.0), ("clip_ratio=0.0", "(0, 1]"), id="clip-ratio-0"),
    pytest.param(lambda: choose_qparams(X, 4, clip_ratio=float("nan")), ("clip_ratio=nan",), id="clip-ratio-nan"),
    pytest.param(lambda: choose_qparams(X, 4, min_val=1.0, max_val=-1.0), ("min_val > max_val",), id="min-gt-max"),
    pytest.param(lambda: dequantize(torch.zeros(4, 64, dtype=torch.int8), torch.ones(4, 3), torch.zeros(4, 3)),
                 ("3 groups", "64 columns"), id="dequantize-bad-scale"),
    pytest.param(lambda: quantize(X, torch.ones(4, 5), torch.zeros(4, 5), 4), ("5 groups",), id="quantize-bad-scale"),
    pytest.param(lambda: fake_quantize(X, 4, scale_rule="tensorrt"), ("scale_rule='tensorrt'",),
                 id="scale-rule"),
]


@pytest.mark.parametrize("fn, fragments", PRIMITIVE_CASES)
def test_primitive_inputs(fn, fragments):
    clear(fn, *fragments)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_other_float_dtypes_are_handled_and_keep_their_dtype(dtype):
    x = X.to(dtype)
    out = fake_quantize(x, 4, 32)  # computed in float32 inside, returned in x's dtype
    assert out.dtype == dtype and torch.equal(out, fake_quantize(x.float(), 4, 32).to(dtype))


CONFIG_CASES = [
    pytest.param(dict(w_bits=4.0), ("w_bits=4.0",), id="cfg-w-bits-float"),
    pytest.param(dict(w_bits="4"), ("w_bits='4'",), id="cfg-w-bits-str"),
    pytest.param(dict(a_bits=12), ("a_bits=12", "16 for 'not quantized'"), id="cfg-a-bits-12"),
    pytest.param(dict(w_group_size=0), ("w_group_size=0",), id="cfg-group-0"),
    pytest.param(dict(w_group_size=True), ("w_group_size=True",), id="cfg-group-bool"),
    pytest.param(dict(a_bits=8, a_granularity="per_channel"), ("a_granularity='per_channel'",), id="cfg-gran"),
    pytest.param(dict(a_bits=8, a_granularity=None), ("a_bits=8 needs a_granularity",), id="cfg-gran-none"),
    pytest.param(dict(w_clip_ratio=float("nan")), ("w_clip_ratio=nan",), id="cfg-clip-nan"),
    pytest.param(dict(a_clip_ratio=1.5), ("a_clip_ratio=1.5",), id="cfg-clip-1.5"),
]


@pytest.mark.parametrize("fields, fragments", CONFIG_CASES)
def test_config_fields(fields, fragments):
    clear(lambda: QuantConfig(**fields), *fragments)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_from_name_accepts_every_configs_own_name(preset):
    cfg = QuantConfig.from_name(preset)
    assert QuantConfig.from_name(cfg.name) == cfg, f"{preset}: from_name({cfg.name!r}) gave another config"


def test_from_name_errors():
    assert QuantConfig.from_name("W4A8-G32") == QuantConfig.from_name("w4a8")  # case-insensitive, as the presets
    clear(lambda: QuantConfig.from_name("w5a8"), "'w5a8'", "known presets")
    clear(lambda: QuantConfig.from_name("w4a8", w_bitz=3), "unknown QuantConfig fields ['w_bitz']")
    clear(lambda: QuantConfig.from_name(None), "None", "known presets")


def test_a_tiny_weight_row_is_refused_not_zeroed():
    lin = nn.Linear(64, 4)
    with torch.no_grad():
        lin.weight[1] = torch.randn(64) * 1e-13
    clear(lambda: QuantLinear.from_linear(lin, QuantConfig.from_name("w4a8")), "rows [1]", "floor", "rescale")
    with torch.no_grad():
        lin.weight[1] = 0.0  # an exactly-zero row is fine: it quantizes to zeros
    assert torch.equal(QuantLinear.from_linear(lin, QuantConfig.from_name("w4a8")).weight[1], torch.zeros(64))


@pytest.mark.parametrize("preset", ["w4a8", "w8a8", "w4a4", "w4a16-g128", "fp"])
def test_empty_batch_is_accepted_like_nn_linear(preset):
    lin = nn.Linear(128, 8)
    q = QuantLinear.from_linear(lin, QuantConfig.from_name(preset))
    x = torch.zeros(0, 128)
    assert q(x).shape == lin(x).shape == (0, 8)


def test_wrong_input_width_names_in_features():
    q = QuantLinear.from_linear(nn.Linear(64, 8), QuantConfig.from_name("w4a8"))
    clear(lambda: q(torch.randn(2, 32)), "(2, 32)", "in_features=64")


def test_nan_activation_fails_fast_in_a_quantized_layer():
    q = QuantLinear.from_linear(nn.Linear(64, 8), QuantConfig.from_name("w4a8"))
    clear(lambda: q(X.index_fill(1, torch.tensor([0]), float("nan"))), "NaN")


def test_quantizing_twice_says_already_quantized():
    model = quantize_(tiny_model(), QuantConfig.from_name("w4a8"))
    clear(lambda: quantize_(model, QuantConfig.from_name("w8a8")), "already quantized", "w4a8-g32", "fresh copy")


LAYER_CASES = [
    pytest.param(lambda: QuantLinear.from_linear(nn.Linear(64, 8), QuantConfig(), weight=torch.randn(8, 32)),
                 ("weight shape (8, 32)", "(8, 64)"), id="from-linear-shape"),
    pytest.param(lambda: QuantLinear.from_linear(nn.Linear(64, 8), QuantConfig(),
                                                 weight=torch.full((8, 64), float("nan"))),
                 ("weight contains 512 NaN",), id="from-linear-nan"),
    pytest.param(lambda: QuantLinear.from_linear(nn.Linear(64, 8), QuantConfig(), scale=torch.ones(3)),
                 ("scale shape (3,)", "choose_qparams"), id="from-linear-scale"),
    pytest.param(lambda: QuantLinear.from_linear(nn.Linear(48, 8), QuantConfig(w_group_size=32)),
                 ("group_size=32", "in_features=48"), id="from-linear-group"),
    pytest.param(lambda: quantize_(tiny_model(), QuantConfig(), filter_fn=lambda m, n: False),
                 ("matched no layer", "filter_fn"), id="quantize-nothing"),
    pytest.param(lambda: quantize_(tiny_model(), QuantConfig(), filter_fn=lambda m, n: isinstance(m, nn.ReLU)),
                 ("'1' of type ReLU", "nn.Linear only"), id="quantize-relu"),
    pytest.param(lambda: quantize_(nn.Linear(8, 8), QuantConfig()), ("cannot be swapped in place", "from_linear"),
                 id="quantize-bare-linear"),
]


@pytest.mark.parametrize("fn, fragments", LAYER_CASES)
def test_layer_inputs(fn, fragments):
    clear(fn, *fragments)


def test_quantize_leaves_the_float_copy_usable():
    model = tiny_model()
    float_copy = copy.deepcopy(model)
    quantize_(model, QuantConfig.from_name("w4a8"))
    assert all(isinstance(m, nn.Linear) for m in float_copy if not isinstance(m, nn.ReLU))
