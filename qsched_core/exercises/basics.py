"""Checks for notebooks 00-02: CLIP-IQA under blur, int4 fake quantization, clipping, a layer's share of the
error, GPTQ's act_order, SmoothQuant's alpha, QuaRot's seeds."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..quant.primitives import choose_qparams, fake_quantize, quant_error
from .common import _close, _unanswered, _verdict

BLUR_STRENGTHS = (0.1, 0.3, 0.5, 0.7, 1.0)
CLIP_RATIOS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
SMOOTHQUANT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


# ------------------------------------------------------------------------------------------------- notebook 00
def check_iqa_vs_blur(fn: Callable, judge, images: torch.Tensor, strengths: Sequence[float] = BLUR_STRENGTHS) -> bool:
    """`fn(images, strengths)` must return the mean CLIP-IQA of `degrade(images, "blur", s)` for each s."""
    from ..jaq import clip_iqa
    from ..tinyworld.render import degrade

    if _unanswered(fn, "a function iqa_vs_blur(images, strengths) -> list of floats"):
        return False
    with torch.no_grad():
        want = [clip_iqa(judge.model, judge.tokenizer, degrade(images, "blur", s)).mean().item() for s in strengths]
        got = fn(images, list(strengths))
    try:
        got = [float(v) for v in got]
    except (TypeError, ValueError):
        return _verdict(False, "", f"iqa_vs_blur returned {type(got).__name__}; return one float per strength")
    if len(got) != len(want):
        return _verdict(False, "", f"{len(got)} values for {len(want)} strengths; return one mean per strength")
    ok = all(_close(g, w, 1e-4, 1e-5) for g, w in zip(got, want))
    return _verdict(ok, f"CLIP-IQA vs blur: {', '.join(f'{w:.3f}' for w in want)} (higher is better)",
                    "values differ from the judge's: score `degrade(images, 'blur', s)` with "
                    "`clip_iqa(judge.model, judge.tokenizer, x)` and average over the images")


# ------------------------------------------------------------------------------------------------- notebook 01
def check_fake_quantize(fn: Callable, seed: int = 0) -> bool:
    """`fn(x)` must be symmetric int4 round-to-nearest with one scale per row, as `fake_quantize(x, 4, -1)`."""
    if _unanswered(fn, "a function fake_quant_int4(x) -> x_hat"):
        return False
    levels = float(1 / choose_qparams(torch.ones(1, 1), 4)[0])  # max|row| / s: 7.5 (torchao's rule) or 7
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 16, generator=g) * torch.logspace(-1, 1, 6).view(6, 1)  # rows of very different ranges
    x[:, 0] = x.abs().amax(1) * 1.25                  # each row's extreme is positive: no tie at -max / s
    want = fake_quantize(x, 4, -1, True)
    got = fn(x.clone())
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        return _verdict(False, "", f"return a tensor of shape {tuple(x.shape)} (got {getattr(got, 'shape', got)!r})")
    err = float((got - want).abs().max())
    if err <= 1e-5:
        return _verdict(True, "matches qsched_core.quant.fake_quantize(x, 4, -1, True) on every row", "")
    s_all = x.abs().max() / levels
    hint = ("one scale for the whole tensor; take the max over each row (dim=-1, keepdim=True)"
            if torch.allclose(got, torch.clamp(torch.round(x / s_all), -8, 7) * s_all, atol=1e-5) else
            f"scale = max|row| / {levels:g}, codes = clamp(round(x / scale), -8, 7), x_hat = codes * scale")
    return _verdict(False, "", f"max |difference| {err:.3g} to the reference: {hint}")


def check_best_clip_ratio(answer, w: torch.Tensor, bits: int = 3, ratios: Sequence[float] = CLIP_RATIOS) -> bool:
    """`answer` must be the clip ratio of `ratios` with the lowest per-channel int`bits` error of `w`."""
    if _unanswered(answer, f"the best clip ratio for int{bits}, one of {list(ratios)}"):
        return False
    errors = {r: quant_error(w, bits, -1, clip_ratio=r) for r in ratios}
    best = min(errors, key=errors.get)
    return _verdict(_close(answer, best, 0, 1e-9),
                    f"int{bits} is best at c = {best} (error {errors[best]:.4f} against {errors[1.0]:.4f} unclipped)",
                    f"c = {answer} gives error {errors.get(answer, float('nan')):.4f}; another ratio of "
                    f"{list(ratios)} gives less (compute quant_error(W, {bits}, -1, clip_ratio=c) for each)")


def last_layer_share(model: torch.nn.Module, X: torch.Tensor, last: str, preset: str = "w4a4") -> float:
    """Share of the network's `preset` output error that goes away when layer `last` stays in FP."""
    import copy

    from ..quant import QuantConfig, quantize_

    cfg = QuantConfig.from_name(preset)
    with torch.no_grad():
        y = model(X)
        err = lambda m: float((m(X) - y).norm() / y.norm())  # noqa: E731
        e_all = err(quantize_(copy.deepcopy(model), cfg))
        e_rest = err(quantize_(copy.deepcopy(model), cfg,
                               filter_fn=lambda m, name: isinstance(m, torch.nn.Linear) and name != last))
    return 1 - e_rest / e_all


def check_last_layer_share(answer, model: torch.nn.Module, X: torch.Tensor, last: str = "4") -> bool:
    """`answer`: the fraction (0-1) of the W4A4 output error removed by keeping layer `last` in FP."""
    if _unanswered(answer, "a fraction between 0 and 1, e.g. 0.25"):
        return False
    want = last_layer_share(model, X, last)
    if _close(answer, 100 * want, 0, 2.0) and not _close(answer, want, 0, 0.02):
        return _verdict(False, "", "that looks like a percentage; give the fraction (0-1)")
    return _verdict(_close(answer, want, 0, 0.02),
                    f"keeping layer {last!r} in FP removes {want:.0%} of the W4A4 error",
                    "not within 0.02: share = 1 - error(last layer FP) / error(all layers W4A4), both relative "
                    "output errors on X")


# ------------------------------------------------------------------------------------------------- notebook 02
def check_gptq_act_order(answer, on_layer: Callable) -> bool:
    """`answer`: the held-out error of `on_layer("gptq", "w3a16-g128", act_order=True, static_groups=True)`."""
    if _unanswered(answer, "the held-out error (a float) of GPTQ with act_order and static groups"):
        return False
    want = on_layer("gptq", "w3a16-g128", act_order=True, static_groups=True)[2]
    plain = on_layer("gptq", "w3a16-g128")[2]
    return _verdict(_close(answer, want, 1e-3, 1e-6),
                    f"act_order + static groups: {want:.4f} vs {plain:.4f} in column order (lower is better)",
                    "run on_layer('gptq', 'w3a16-g128', act_order=True, static_groups=True) and take its third "
                    "value (the held-out relative error)")


def smoothquant_alpha_errors(on_layer: Callable, presets=("w8a8", "w4a4"),
                             alphas: Sequence[float] = SMOOTHQUANT_ALPHAS) -> dict[str, dict[float, float]]:
    """{preset: {alpha: held-out error}} of SmoothQuant on the notebook's layer."""
    return {p: {a: on_layer("smoothquant", p, alpha=a)[2] for a in alphas} for p in presets}


def check_smoothquant_alpha(answer: dict, on_layer: Callable, presets=("w8a8", "w4a4"),
                            alphas: Sequence[float] = SMOOTHQUANT_ALPHAS) -> bool:
    """`answer`: {preset: the alpha of `alphas` with the lowest held-out error} for each preset."""
    if _unanswered(answer, "a dict {'w8a8': best alpha, 'w4a4': best alpha}"):
        return False
    table = smoothquant_alpha_errors(on_layer, presets, alphas)
    best = {p: min(errs, key=errs.get) for p, errs in table.items()}
    wrong = [p for p in presets if not isinstance(answer, dict) or not _close(answer.get(p), best[p], 0, 1e-9)]
    return _verdict(not wrong, "best alpha: " + ", ".join(f"{p} {best[p]} (error {table[p][best[p]]:.4f})"
                                                          for p in presets),
                    f"not the best alpha for {wrong}: sweep alpha over {list(alphas)} for each preset and keep "
                    "the one with the lowest held-out error")


def check_quarot_seeds(answer, on_layer: Callable, seeds: Sequence[int] = range(5)) -> bool:
    """`answer`: (mean, standard deviation) of QuaRot's W4A4 held-out error over `seeds` (std with ddof=1)."""
    if _unanswered(answer, "a pair (mean, std) of the errors over the seeds"):
        return False
    errs = torch.tensor([on_layer("quarot", "w4a4", seed=s)[2] for s in seeds], dtype=torch.float64)
    mean, std = float(errs.mean()), float(errs.std())
    try:
        m, s = answer
    except (TypeError, ValueError):
        return _verdict(False, "", "give a pair (mean, std)")
    if _close(m, mean, 1e-3) and _close(s, float(errs.std(unbiased=False)), 1e-2) and not _close(s, std, 1e-2):
        return _verdict(False, "", "the mean is right; for the spread use the sample standard deviation (ddof=1)")
    return _verdict(_close(m, mean, 1e-3) and _close(s, std, 1e-2),
                    f"QuaRot W4A4 over {len(errs)} seeds: {mean:.4f} ± {std:.4f}",
                    f"run on_layer('quarot', 'w4a4', seed=s) for s in {list(seeds)} and take the mean and the "
                    "sample standard deviation of the third value")
