"""Activation statistics: hooks find planted outlier channels and tokens, running moments are exact."""
import pytest
import torch
import torch.nn as nn

from qsched_core.quant import (ActStats, QuantConfig, collect_act_stats, outlier_summary, quantize_,
                               record_act_stats)


def planted_mlp():
    """Input channel 5 is 50x larger than the rest; hidden channel 7 is made large by its weight row."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    with torch.no_grad():
        model[0].weight[7] = model[0].weight[7].abs() * 40
        model[0].bias[7] = 5.0
    x = torch.randn(128, 32)
    x[:, 5] *= 50
    return model, x


def test_hooks_find_planted_outlier_channels():
    model, x = planted_mlp()
    stats = collect_act_stats(model, [x[:64], x[64:]])
    assert set(stats) == {"0", "2"}
    assert stats["0"].top_channels(1) == [5] and stats["2"].top_channels(1) == [7]
    assert stats["0"].channel_ratio > 20 and stats["0"].n_tokens == 128
    assert torch.allclose(stats["0"].channel_absmax, x.abs().amax(0))
    rows = outlier_summary(stats, top_k=2)
    assert rows[0]["layer"] == "0" and rows[0]["top_channels"][0] == 5 and rows[0]["in_features"] == 32


def test_outlier_token_shows_in_token_ratio():
    x = torch.randn(4, 50, 16)  # (B, T, K)
    x[2, 10] *= 100
    s = ActStats()
    s.update(x)
    assert s.token_absmax.shape == (200,) and int(s.token_absmax.argmax()) == 2 * 50 + 10
    assert s.token_ratio > 30


def test_running_moments_match_one_shot():
    gen = torch.Generator().manual_seed(1)
    x = torch.distributions.StudentT(5.0).sample((400, 8)) + 0.5
    chunked, whole = ActStats(), ActStats()
    for part in x.split(64):
        chunked.update(part)
    whole.update(x)
    d = x.double().flatten()
    ref = float(((d - d.mean()) ** 4).mean() / ((d - d.mean()) ** 2).mean() ** 2)
    assert abs(chunked.kurtosis - ref) < 1e-6 and abs(whole.kurtosis - ref) < 1e-6
    gauss = ActStats()
    gauss.update(torch.randn(20000, 16, generator=gen))
    assert abs(gauss.kurtosis - 3.0) < 0.15 and ref > 3.5  # heavy tails raise kurtosis above 3


def test_token_buffer_is_capped():
    s = ActStats(max_tokens=100)
    for _ in range(3):
        s.update(torch.randn(64, 8))
    assert s.token_absmax.numel() == 100 and s.n_tokens == 192


def test_hooks_removed_and_quant_layers_supported():
    model, x = planted_mlp()
    quantize_(model, QuantConfig.from_name("w8a8"))
    with pytest.raises(RuntimeError):
        with record_act_stats(model) as stats:
            model(x)
            raise RuntimeError("boom")
    assert stats["0"].top_channels(1) == [5]
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_filter_errors():
    model, _ = planted_mlp()
    with pytest.raises(ValueError, match="matched no layer"):
        with record_act_stats(model, filter_fn=lambda m, n: False):
            pass
    with pytest.raises(ValueError, match=r"\['layers.unused'\] never ran"):
        collect_act_stats(Branchy(), [torch.randn(2, 4)])


class Branchy(nn.Module):
    """Two linear layers, only one of which the forward pass uses."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleDict({"used": nn.Linear(4, 4), "unused": nn.Linear(4, 4)})

    def forward(self, x):
        return self.layers["used"](x)
