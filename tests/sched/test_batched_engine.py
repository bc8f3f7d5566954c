"""The batched search engine: per-sample coefficients, per-image noise, and grid points rendered in one call.

Each property is checked against the one-point-at-a-time path it replaces, so a batching bug (a coefficient
applied to the wrong sample, noise shared across points, rows out of order) makes these tests fail.
"""
import json

import pytest
import torch

from qsched_core.evaluate.runner import _same_search
from qsched_core.sampling import sample_lcm
from qsched_core.sched import CoefficientBatch, QSchedCoefficients, QSchedLCMScheduler
from qsched_core.search import SearchConfig, SearchResult, calibration_batches, generate, generate_points

POINTS = [(1.0, 1.0), (0.9, 1.1), (1.2, 0.8), (1.1, 1.0), (0.8, 0.9)]


def cfg(**overrides) -> SearchConfig:
    base = dict(num_prompts=2, num_steps=3, batch_size=2, progress=False)
    return SearchConfig(**{**base, **overrides})


def test_each_sample_gets_its_own_coefficients(tiny_pipe, prompts):
    gens = lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    a, b = QSchedCoefficients(0.9, 1.1), QSchedCoefficients(1.15, 0.85)
    mixed = sample_lcm(tiny_pipe, prompts, num_steps=3, latents=latents, generator=gens(),
                       coeffs=CoefficientBatch([a, b]))
    only_a = sample_lcm(tiny_pipe, prompts, num_steps=3, latents=latents, generator=gens(), coeffs=a)
    only_b = sample_lcm(tiny_pipe, prompts, num_steps=3, latents=latents, generator=gens(), coeffs=b)
    torch.testing.assert_close(mixed[0], only_a[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], only_b[1], atol=1e-5, rtol=0)
    assert (only_a[1] - only_b[1]).abs().max() > 1e-3  # the two settings really differ: the test can fail


def test_generate_points_equals_one_point_at_a_time(tiny_pipe, prompts):
    for max_rows in (2, 4, 640):  # one point per call, two per call, all in one call
        c = cfg(max_rows=max_rows)
        batches = calibration_batches(tiny_pipe, prompts, c)
        many = generate_points(tiny_pipe, batches, c, [QSchedCoefficients(*p) for p in POINTS])
        assert many.shape[:2] == (len(POINTS), 2)
        for p, images in zip(POINTS, many):
            torch.testing.assert_close(images, generate(tiny_pipe, batches, c, QSchedCoefficients(*p)), atol=1e-5,
                                       rtol=0)


def test_per_image_noise_does_not_depend_on_the_batch_split(tiny_pipe, prompts):
    whole = generate(tiny_pipe, calibration_batches(tiny_pipe, prompts, cfg()), cfg(), QSchedCoefficients(0.9, 1.0))
    split_cfg = cfg(batch_size=1)
    split = generate(tiny_pipe, calibration_batches(tiny_pipe, prompts, split_cfg), split_cfg,
                     QSchedCoefficients(0.9, 1.0))
    torch.testing.assert_close(whole, split, atol=1e-5, rtol=0)


def test_bad_batches_are_refused(tiny_pipe, prompts):
    with pytest.raises(ValueError, match="coeffs has 3 entries"):
        sample_lcm(tiny_pipe, prompts, num_steps=2, coeffs=CoefficientBatch([QSchedCoefficients()] * 3))
    with pytest.raises(ValueError, match="generator has 1 entries"):
        sample_lcm(tiny_pipe, prompts, num_steps=2, generator=[torch.Generator()])
    with pytest.raises(ValueError, match="non-empty list of QSchedCoefficients"):
        CoefficientBatch([])
    with pytest.raises(ValueError, match="non-empty list of QSchedCoefficients"):
        CoefficientBatch([(1.0, 1.0)])


def test_coefficient_batch_round_trips_through_the_scheduler_config():
    batch = CoefficientBatch([QSchedCoefficients(0.9, 1.1), QSchedCoefficients(1.0, 1.0)])
    sched = QSchedLCMScheduler(coefficients=batch)
    again = QSchedLCMScheduler.from_config(sched.config)
    assert isinstance(again.coefficients, CoefficientBatch)
    assert [c.to_config() for c in again.coefficients.items] == [c.to_config() for c in batch.items]
    c_x, c_eps = batch.ramps(4)
    assert c_x.shape == c_eps.shape == (4, 2) and float(c_x[0, 0]) == pytest.approx(0.9) and float(c_x[-1, 0]) == 1.0
    assert not batch.is_identity and CoefficientBatch([QSchedCoefficients()]).is_identity


def test_version_1_searches_load_but_are_never_reused(tmp_path):
    c = cfg()
    point = {"start_x": 1.0, "start_eps": 1.0, "tc": 1.0, "iq": 0.5, "jaq": 2.0}
    old = {k: v for k, v in c.__dict__.items() if k not in ("crn", "max_rows")}
    raw = {"schema": "qsched.search_result", "version": 1, "config": old, "scorer": "jaq-k2", "method": "grid",
           "points": [point], "best": point, "wall_time_s": 1.0, "network_evals": 6, "on_edge": False,
           "metadata": {"prompts": ["p"], "preset": "w4a8"}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    result = SearchResult.load(path)
    assert result.config["crn"] == "per_batch"
    assert not _same_search(result, c, "jaq-k2", ["p"], {"preset": "w4a8"})
    result.config["crn"] = "per_image"  # the same search under the current engine would be reused
    assert _same_search(result, c, "jaq-k2", ["p"], {"preset": "w4a8"})
