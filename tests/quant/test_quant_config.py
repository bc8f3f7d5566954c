"""QuantConfig: presets carry the papers' settings, validation names the bad field and value."""
import dataclasses

import pytest

from qsched_core.quant import PRESETS, QuantConfig


def test_qsched_main_setting_w4a8():
    cfg = QuantConfig.from_name("w4a8")
    assert (cfg.w_bits, cfg.w_group_size, cfg.w_symmetric) == (4, 32, True)
    assert (cfg.a_bits, cfg.a_symmetric, cfg.a_granularity) == (8, False, "per_token")
    assert cfg.name == "w4a8-g32"
    assert cfg.describe() == "W4A8: int4 sym weights g32 | int8 asym per-token acts"


@pytest.mark.parametrize("name, fields", [
    ("w8a8", dict(w_bits=8, w_group_size=-1, w_symmetric=True, a_bits=8, a_symmetric=True)),
    ("w4a4", dict(w_bits=4, w_group_size=-1, w_symmetric=True, a_bits=4, a_symmetric=True)),
    ("w4a16-g128", dict(w_bits=4, w_group_size=128, a_bits=16)),
    ("w3a16-g128", dict(w_bits=3, w_group_size=128, a_bits=16)),
    ("w8a16", dict(w_bits=8, w_group_size=-1, a_bits=16)),
    ("w3a4", dict(w_bits=3, a_bits=4, a_granularity="per_token")),
    ("fp", dict(w_bits=16, a_bits=16)),
    ("W16A16", dict(w_bits=16, a_bits=16)),
])
def test_presets(name, fields):
    cfg = QuantConfig.from_name(name)
    assert {k: getattr(cfg, k) for k in fields} == fields


def test_every_preset_builds_and_round_trips():
    for name in PRESETS:
        cfg = QuantConfig.from_name(name)
        assert QuantConfig(**cfg.to_dict()) == cfg
        assert cfg.describe().startswith(f"W{cfg.w_bits}A{cfg.a_bits}")
    fp = QuantConfig.from_name("fp")
    assert not fp.quantize_weights and not fp.quantize_activations and fp.name == "w16a16"


def test_overrides_and_replace():
    cfg = QuantConfig.from_name("w4a8", w_group_size=64)
    assert cfg.w_group_size == 64 and cfg.name == "w4a8-g64"
    assert dataclasses.replace(cfg, w_bits=3).w_bits == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.w_bits = 2
    with pytest.raises(ValueError, match="w_bits=1"):
        dataclasses.replace(cfg, w_bits=1)


def test_unknown_preset_lists_known_names():
    with pytest.raises(ValueError, match=r"'w5a5'.*w4a8, w8a8, w4a4, w4a16-g128"):
        QuantConfig.from_name("w5a5")


@pytest.mark.parametrize("field, value", [
    ("w_bits", 1), ("w_bits", 9), ("w_bits", 4.0), ("w_bits", True), ("a_bits", 12), ("a_bits", 8.5),
    ("w_group_size", 0), ("w_group_size", -2), ("w_group_size", 32.0), ("a_granularity", "per_channel"),
    ("w_clip_ratio", 0.0), ("a_clip_ratio", 1.2),
])
def test_bad_fields_named_in_error(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        QuantConfig(**{field: value})


def test_activation_bits_need_a_granularity():
    with pytest.raises(ValueError, match="a_bits=8 needs a_granularity"):
        QuantConfig(a_bits=8, a_granularity=None)
    assert QuantConfig(a_bits=8, a_granularity="per_tensor").describe().endswith("per-tensor static acts")
