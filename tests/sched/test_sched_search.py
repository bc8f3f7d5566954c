"""Coefficient search: JAQ argmax, common random numbers, edge flag, JSON I/O, coarse-to-fine and gradient methods.

Two planted optima are used. On the tiny pipeline the scorer is -MSE to images rendered at a chosen grid point
(so that point, and only that point, scores exactly 0). For the cost comparisons a fake sampler paints each image
with its coefficients (channel 0 = start_x / 2, channel 1 = start_eps / 2) and a Gaussian bump scores them.
"""
import json
import math

import numpy as np
import pytest
import torch

from qsched_core.metrics import machine_description
from qsched_core.sched import QSchedCoefficients
from qsched_core.search import (
    SearchConfig,
    SearchResult,
    calibration_batches,
    coarse_to_fine_search,
    generate,
    gradient_search,
    grid_search,
    run_search,
)

PLANTED = (0.9, 1.1)


def tiny_cfg(**overrides) -> SearchConfig:
    base = dict(num_prompts=2, grid_min=0.9, grid_max=1.1, grid_points=3, num_steps=2, batch_size=2, progress=False)
    return SearchConfig(**{**base, **overrides})


class ReferenceScorer:
    """jaq = -MSE(images, reference): maximal (0) exactly where the reference was rendered."""

    name = "neg-mse-to-reference"

    def __init__(self, reference: torch.Tensor):
        self.reference = reference

    def __call__(self, images, prompts):
        mse = (images - self.reference).square().mean()
        return {"tc": -mse, "iq": images.std(), "jaq": -mse}


class BumpScorer:
    """jaq = exp(-|c - c*|^2 / width), read back from the images painted by `painting_sampler`."""

    name = "gaussian-bump"

    def __init__(self, start_x, start_eps, width=0.05):
        self.target, self.width = (start_x, start_eps), width

    def __call__(self, images, prompts):
        x, e = images[:, 0].mean() * 2, images[:, 1].mean() * 2
        d2 = (x - self.target[0]) ** 2 + (e - self.target[1]) ** 2
        tc, iq = -(x - self.target[0]).abs(), -(e - self.target[1]).abs()
        return {"tc": tc, "iq": iq, "jaq": torch.exp(-d2 / self.width)}


def painting_sampler(pipe, *, prompt_embeds, coeffs, **_):
    """Images (b, 3, 4, 4) whose channels encode (start_x, start_eps); differentiable in them."""
    x, e = (torch.as_tensor(v, dtype=torch.float32) for v in (coeffs.start_x, coeffs.start_eps))
    colour = torch.stack([x / 2, e / 2, torch.tensor(0.5)])  # (3,)
    return colour[None, :, None, None].expand(prompt_embeds.shape[0], 3, 4, 4)


@pytest.fixture
def planted_scorer(tiny_pipe, prompts):
    cfg = tiny_cfg()
    reference = generate(tiny_pipe, calibration_batches(tiny_pipe, prompts, cfg), cfg, QSchedCoefficients(*PLANTED))
    return ReferenceScorer(reference)


def test_grid_search_returns_the_jaq_argmax_and_counts_network_evaluations(tiny_pipe, prompts, planted_scorer):
    images_seen = []
    hook = tiny_pipe.unet.register_forward_hook(lambda mod, args, out: images_seen.append(args[0].shape[0]))
    try:
        result = grid_search(tiny_pipe, planted_scorer, prompts, tiny_cfg(), metadata={"quant": "w4a8"})
    finally:
        hook.remove()
    assert (result.best["start_x"], result.best["start_eps"]) == PLANTED
    assert abs(result.best["jaq"]) < 1e-10  # batched rendering: the same images up to float rounding
    assert all(p["jaq"] < -1e-6 for p in result.points if p is not result.best)  # a unique optimum: the test can fail
    assert len(result.points) == 9 and result.network_evals == 9 * 2 * 2 == sum(images_seen)
    assert result.on_edge and "edge" in result.summary()
    assert result.metadata["quant"] == "w4a8" and result.metadata["pipeline"] == "LatentConsistencyModelPipeline"
    assert result.metadata["machine"] == machine_description()  # where it ran, for the reports' rerun tables
    grid = result.grid_array()
    assert grid.shape == (3, 3) and grid[0, 2] == result.best["jaq"] and not np.isnan(grid).any()


def test_same_point_twice_gives_identical_images(tiny_pipe, prompts):
    cfg = tiny_cfg(batch_size=1)  # two batches, each with its own fixed noise seed
    batches = calibration_batches(tiny_pipe, prompts, cfg)
    first = generate(tiny_pipe, batches, cfg, QSchedCoefficients(1.0, 0.9))
    other = generate(tiny_pipe, batches, cfg, QSchedCoefficients(1.1, 1.1))
    again = generate(tiny_pipe, batches, cfg, QSchedCoefficients(1.0, 0.9))
    assert torch.equal(first, again) and not torch.equal(first, other)
    new_seed = generate(tiny_pipe, calibration_batches(tiny_pipe, prompts, tiny_cfg(batch_size=1, seed=7)), cfg,
                        QSchedCoefficients(1.0, 0.9))
    assert not torch.equal(first, new_seed)  # without common random numbers the images would differ


def test_interior_winner_is_not_on_edge(tiny_pipe, prompts):
    cfg = SearchConfig(num_prompts=2, grid_points=5, progress=False)
    result = grid_search(tiny_pipe, BumpScorer(1.0, 1.1), prompts, cfg, sampler=painting_sampler)
    assert (result.best["start_x"], result.best["start_eps"]) == (1.0, 1.1)
    assert not result.on_edge and "edge" not in result.summary()
    assert "stock scheduler (1, 1)" in result.summary()


@pytest.mark.parametrize("target", [(0.92, 1.08), (1.04, 0.88)])
def test_coarse_to_fine_finds_the_optimum_with_a_tenth_of_the_evaluations(tiny_pipe, prompts, target):
    cfg = SearchConfig(num_prompts=2, progress=False)  # the paper's 11 x 11 grid on [0.8, 1.2]
    full = grid_search(tiny_pipe, BumpScorer(*target), prompts, cfg, sampler=painting_sampler)
    fast = coarse_to_fine_search(tiny_pipe, BumpScorer(*target), prompts, cfg, sampler=painting_sampler)
    assert (full.best["start_x"], full.best["start_eps"]) == target
    assert fast.best["jaq"] >= 0.99 * full.best["jaq"]
    assert fast.network_evals <= 0.1 * full.network_evals
    assert np.isnan(fast.grid_array()).sum() == 121 - len(fast.points)


def test_gradient_search_moves_towards_the_planted_optimum(tiny_pipe, prompts, planted_scorer):
    cfg = tiny_cfg(grad_steps=4, grad_lr=0.02, method="gradient")
    result = run_search(tiny_pipe, planted_scorer, prompts, cfg)
    path = [(p["start_x"], p["start_eps"]) for p in result.points]
    dist = [math.dist(p, PLANTED) for p in path]
    assert path[0] == (1.0, 1.0) and dist[-1] < dist[0] - 0.05
    assert result.best == result.points[-1] and result.network_evals == 4 * 2 * 2
    with pytest.raises(ValueError, match="off the grid"):
        result.grid_array()


def test_gradient_search_is_projected_onto_the_range(tiny_pipe, prompts):
    cfg = SearchConfig(num_prompts=2, grid_min=0.95, grid_max=1.05, grad_steps=5, grad_lr=0.05, progress=False)
    result = gradient_search(tiny_pipe, BumpScorer(0.8, 1.2), prompts, cfg, sampler=painting_sampler)
    assert (result.best["start_x"], result.best["start_eps"]) == pytest.approx((0.95, 1.05))
    assert result.on_edge


@pytest.fixture
def saved(tmp_path, tiny_pipe, prompts):
    result = grid_search(tiny_pipe, BumpScorer(1.0, 1.1), prompts, SearchConfig(num_prompts=2, grid_points=3,
                         progress=False), sampler=painting_sampler, metadata={"preset": "w4a8"})
    return result, result.save(tmp_path / "search.json")


def test_json_round_trip(saved):
    result, path = saved
    assert SearchResult.load(path) == result
    assert json.loads(path.read_text())["schema"] == "qsched.search_result"


def _corrupt(raw: dict, how: str) -> str:
    if how == "truncated":
        return json.dumps(raw)[:-40]
    if how == "schema":
        raw["schema"] = "something.else"
    elif how == "version":
        raw["version"] = 99
    elif how == "nan":
        raw["points"][0]["jaq"] = float("nan")
    elif how == "missing_key":
        del raw["points"][1]["iq"]
    elif how == "winner":  # ranked by another score, as in the released code
        raw["best"] = min(raw["points"], key=lambda p: p["jaq"])
    elif how == "edge":
        raw["on_edge"] = not raw["on_edge"]
    elif how == "config":
        raw["config"]["grid_points"] = 0
    elif how == "extra_field":
        raw["surprise"] = 1
    return json.dumps(raw)


@pytest.mark.parametrize("how, match", [
    ("truncated", "not valid JSON"), ("schema", "schema/version"), ("version", "schema/version"),
    ("nan", "finite"), ("missing_key", "finite numbers for exactly"), ("winner", "not the JAQ argmax"),
    ("edge", "on_edge"), ("config", "grid_points=0"), ("extra_field", "does not match"),
])
def test_corrupt_or_mismatched_json_is_rejected(saved, tmp_path, how, match):
    _, path = saved
    bad = tmp_path / f"bad_{how}.json"
    bad.write_text(_corrupt(json.loads(path.read_text()), how))
    with pytest.raises(ValueError, match=match):
        SearchResult.load(bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid_min=1.2, grid_max=0.8), "0 < grid_min < grid_max"),
    (dict(method="random"), "method='random'"),
    (dict(num_prompts=0), "num_prompts=0"),
    (dict(coarse_points=2), "coarse_points=2"),
    (dict(eta=1.5), "eta=1.5"),
    (dict(scheduler_family="euler"), "scheduler_family='euler'"),
    (dict(grad_lr=float("nan")), "grad_lr=nan"),
])
def test_bad_search_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchConfig(**kwargs)


def test_defaults_follow_the_paper():
    cfg = SearchConfig()
    assert cfg.num_prompts == 5 and cfg.num_steps == 4 and cfg.method == "grid"
    np.testing.assert_allclose(cfg.axis(), np.linspace(0.8, 1.2, 11))
    assert 1.0 in cfg.axis().tolist()  # the stock scheduler is a grid point


def test_search_rejects_too_few_prompts_and_nameless_scorers(tiny_pipe, prompts):
    with pytest.raises(ValueError, match="got 2 prompts but cfg.num_prompts=5"):
        grid_search(tiny_pipe, BumpScorer(1, 1), prompts, SearchConfig(progress=False), sampler=painting_sampler)
    with pytest.raises(ValueError, match="string .name"):
        grid_search(tiny_pipe, lambda images, p: {}, prompts, tiny_cfg(), sampler=painting_sampler)


def test_gradient_search_needs_a_differentiable_scorer(tiny_pipe, prompts):
    class DetachedScorer(BumpScorer):
        def __call__(self, images, prompts):
            return {k: v.detach() for k, v in super().__call__(images, prompts).items()}

    with pytest.raises(ValueError, match="without a gradient"):
        gradient_search(tiny_pipe, DetachedScorer(1, 1), prompts, tiny_cfg(), sampler=painting_sampler)
