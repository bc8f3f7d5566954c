"""Every exercise check accepts the worked solution, rejects a wrong answer with a hint, and waits for `...`."""
import copy

import pytest
import torch
import torch.nn as nn

from qsched_core import exercises as ex
from qsched_core.quant import QuantConfig, apply_ptq


def fake_quant_int4(x):  # the worked solution of notebook 01, exercise 1 (torchao's scale rule)
    s = x.abs().amax(dim=-1, keepdim=True) / 7.5
    return torch.clamp(torch.round(x / s), -8, 7) * s


def test_check_fake_quantize(capsys):
    assert ex.check_fake_quantize(fake_quant_int4)
    assert not ex.check_fake_quantize(lambda x: torch.clamp(torch.round(x / (x.abs().max() / 7.5)), -8, 7)
                                      * (x.abs().max() / 7.5))
    assert "one scale for the whole tensor" in capsys.readouterr().out
    assert not ex.check_fake_quantize(...)
    assert "no answer yet" in capsys.readouterr().out


def test_check_best_clip_ratio(capsys):
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    errors = {r: ex.quant_error(w, 3, -1, clip_ratio=r) for r in ex.CLIP_RATIOS}
    best = min(errors, key=errors.get)
    assert ex.check_best_clip_ratio(best, w, bits=3)
    assert not ex.check_best_clip_ratio(1.0 if best != 1.0 else 0.4, w, bits=3)
    assert "another ratio" in capsys.readouterr().out


def test_check_last_layer_share(capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    X = torch.randn(64, 16)
    share = ex.last_layer_share(model, X, "2")
    assert 0 < share < 1
    assert ex.check_last_layer_share(share, model, X, last="2")
    assert not ex.check_last_layer_share(100 * share, model, X, last="2")
    assert "percentage" in capsys.readouterr().out


@pytest.fixture(scope="module")
def on_layer():
    """Notebook 02's `on_layer` on a small LayerNorm + Linear with planted outlier channels."""
    torch.manual_seed(0)
    layer = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 32)).eval()
    with torch.no_grad():
        layer[0].weight[[3, 40]] = 20.0
    calib, test = [torch.randn(64, 64) for _ in range(2)], torch.randn(128, 64)
    ref = layer(test).detach()

    def run(method, preset, **opts):
        cfg = QuantConfig.from_name(preset, w_group_size=32) if preset.endswith("g128") else QuantConfig.from_name(preset)
        q, report = apply_ptq(copy.deepcopy(layer), method, cfg, calib, **opts)
        return q, report, float((q(test).detach() - ref).norm() / ref.norm())
    return run


def test_check_gptq_act_order(on_layer):
    want = on_layer("gptq", "w3a16-g128", act_order=True, static_groups=True)[2]
    assert ex.check_gptq_act_order(want, on_layer)
    assert not ex.check_gptq_act_order(want * 1.5, on_layer)


def test_check_smoothquant_alpha(on_layer):
    table = ex.smoothquant_alpha_errors(on_layer)
    best = {p: min(e, key=e.get) for p, e in table.items()}
    assert ex.check_smoothquant_alpha(best, on_layer)
    assert not ex.check_smoothquant_alpha({**best, "w4a4": 1.0 if best["w4a4"] != 1.0 else 0.0}, on_layer)


def test_check_quarot_seeds(on_layer, capsys):
    errs = torch.tensor([on_layer("quarot", "w4a4", seed=s)[2] for s in range(3)], dtype=torch.float64)
    assert ex.check_quarot_seeds((errs.mean().item(), errs.std().item()), on_layer, seeds=range(3))
    assert not ex.check_quarot_seeds((errs.mean().item(), errs.std(unbiased=False).item()), on_layer, seeds=range(3))
    assert "sample standard deviation" in capsys.readouterr().out


def test_check_iqa_vs_blur():
    from qsched_core.hub import load_judge
    from qsched_core.jaq import clip_iqa
    from qsched_core.tinyworld.render import degrade, render
    from qsched_core.tinyworld.world import eval_prompts

    judge = load_judge("tinyworld-clip")
    images = render(eval_prompts(2))

    def iqa_vs_blur(images, strengths):
        return [clip_iqa(judge.model, judge.tokenizer, degrade(images, "blur", s)).mean().item() for s in strengths]
    assert ex.check_iqa_vs_blur(iqa_vs_blur, judge, images, strengths=(0.2, 0.8))
    assert not ex.check_iqa_vs_blur(lambda im, st: [0.5] * len(st), judge, images, strengths=(0.2, 0.8))
