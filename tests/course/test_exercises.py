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


# ------------------------------------------------------------------------------------------- notebooks 03-05, 07
def test_check_ramp(capsys):
    def my_ramp(start, n):  # the worked solution of notebook 03, exercise 1
        return [start] if n == 1 else [start + (1 - start) * i / (n - 1) for i in range(n)]
    assert ex.check_ramp(my_ramp)
    assert not ex.check_ramp(lambda start, n: [start + (1 - start) * i / (n - 1) for i in range(n)])   # N = 1 fails
    assert "one step" in capsys.readouterr().out
    assert not ex.check_ramp(lambda start, n: [start] * n)
    assert "the last exactly 1" in capsys.readouterr().out


def test_check_cx_gains(capsys):
    from qsched_core.hub import load_pipeline

    scheduler = load_pipeline("tinyworld-lcm").scheduler
    gains = ex.cx_gains(scheduler, 4)
    assert gains[0] > 10 and 1 < gains[-1] < 2            # 1 / alpha_999 at the first step, near 1 at the last
    assert ex.check_cx_gains(gains, scheduler)
    s = copy.deepcopy(scheduler)
    s.set_timesteps(4)
    no_sqrt = [float(s.get_scalings_for_boundary_condition_discrete(int(t))[1] / s.alphas_cumprod[int(t)]
                     + s.get_scalings_for_boundary_condition_discrete(int(t))[0]) for t in s.timesteps]
    assert not ex.check_cx_gains(no_sqrt, scheduler)
    assert "square root" in capsys.readouterr().out
    assert not ex.check_cx_gains(gains[:3], scheduler)


def test_check_jaq_tie_k(capsys):
    terms = {"FP": {"tc": 4.50, "iq": 0.80}, "W4A8": {"tc": 4.55, "iq": 0.70}}
    k = ex.jaq_tie_k(terms)                                # 0.05 / 0.10 = 0.5: TC prefers W4A8, IQ prefers FP
    assert abs(k - 0.5) < 1e-12 and ex.check_jaq_tie_k(k, terms)
    assert "W4A8 ranks first" in capsys.readouterr().out
    assert not ex.check_jaq_tie_k(-k, terms)
    agree = {"FP": {"tc": 4.6, "iq": 0.8}, "W4A8": {"tc": 4.5, "iq": 0.7}}
    assert ex.check_jaq_tie_k(ex.jaq_tie_k(agree), agree) and "< 0" in capsys.readouterr().out


def test_check_grid_nfe(capsys):
    assert ex.check_grid_nfe(2420, 11, 5, 4)
    assert not ex.check_grid_nfe(220, 11, 5, 4) and "P x P" in capsys.readouterr().out
    assert not ex.check_grid_nfe(605, 11, 5, 4) and "per sampling step" in capsys.readouterr().out


def test_check_significant_recipes(capsys):
    import pandas as pd

    table = pd.DataFrame({"comparison": ["a", "b", "c", "d"], "d_fid": [-5.0, -2.0, 4.0, 0.0],
                          "d_fid_lo": [-8.0, -4.0, 1.0, 0.0], "d_fid_hi": [-1.0, 0.5, 7.0, 0.0]})
    assert ex.significant_recipes(table) == ["a"] and ex.check_significant_recipes(["a"], table)
    assert not ex.check_significant_recipes(["a", "b"], table) and "reaches 0" in capsys.readouterr().out
    assert not ex.check_significant_recipes(["a", "c"], table) and "*worse*" in capsys.readouterr().out
    assert not ex.check_significant_recipes(["x"], table) and "not in the" in capsys.readouterr().out


def test_check_fid_floor_fit(capsys):
    floor = {n: 1200.0 * (1 / n + 1 / 5000) for n in (100, 300, 1000)}  # exactly b (1/n + 1/n_ref)
    assert abs(ex.fid_floor_fit(floor, 5000, 2000) - 0.84) < 1e-9 and ex.check_fid_floor_fit(0.84, floor, 5000)
    assert not ex.check_fid_floor_fit(0.6, floor, 5000) and "reference" in capsys.readouterr().out   # 1200 / 2000


def test_check_paired_bootstrap(capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.9, 200)                                  # what both sets share: each prompt's difficulty
    a, b = base + rng.normal(0.03, 0.02, 200), base + rng.normal(0.0, 0.02, 200)

    def paired_ci(a, b, n_boot=2000, seed=0):  # the worked solution of notebook 05, exercise 3
        d = np.asarray(a) - np.asarray(b)
        means = d[np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))].mean(1)
        return d.mean(), np.percentile(means, 2.5), np.percentile(means, 97.5)

    def unpaired_ci(a, b, n_boot=2000, seed=0):
        g = np.random.default_rng(seed)
        ia, ib = g.integers(0, len(a), (n_boot, len(a))), g.integers(0, len(b), (n_boot, len(b)))
        means = a[ia].mean(1) - b[ib].mean(1)
        return (a - b).mean(), np.percentile(means, 2.5), np.percentile(means, 97.5)

    assert ex.check_paired_bootstrap(paired_ci, torch.tensor(a), torch.tensor(b))
    assert not ex.check_paired_bootstrap(unpaired_ci, a, b) and "pairs" in capsys.readouterr().out
    assert not ex.check_paired_bootstrap(lambda a, b: (0.0, 0.0, 0.0), a, b)


def test_check_packed_bytes(capsys):
    pytest.importorskip("triton")
    codes = torch.zeros(1, 64, dtype=torch.int8)
    codes[0, :32] = (torch.arange(32) + 1) % 16 - 8
    right = [(8 << 4) | (q + 8) for q in codes[0, :32].tolist()]
    assert ex.check_packed_bytes(right, codes)
    assert not ex.check_packed_bytes([(q + 8) << 4 | 8 for q in codes[0, :32].tolist()], codes)
    assert "swapped" in capsys.readouterr().out


def test_check_ridge_batch(capsys):
    m = ex.ridge_batch(4.25, 760.0)                                    # the H200 of results/kernels.md
    assert 180 < m < 195 and ex.check_ridge_batch(m, 4.25, 760.0)
    assert not ex.check_ridge_batch(760.0 / 4.25, 4.25, 760.0) and "weight bytes only" in capsys.readouterr().out


def test_check_scale_column():
    pytest.importorskip("triton")
    from kernels.act_quant import act_quant_int8_ref
    from qsched_core.quant.primitives import choose_qparams, quantize

    g = torch.Generator().manual_seed(0)
    q, s, z = act_quant_int8_ref(torch.randn(4, 128, generator=g) * 3, symmetric=False)
    w = torch.randn(32, 128, generator=g)
    sw, zw = choose_qparams(w, 8, -1, True)
    qw = quantize(w, sw, zw, 8, True)
    assert ex.check_scale_column((5, 2.0), q, s, z, qw, sw, entry=5)
    assert not ex.check_scale_column((4, 2.0), q, s, z, qw, sw, entry=5)
    assert not ex.check_scale_column((5, 0.5), q, s, z, qw, sw, entry=5)
