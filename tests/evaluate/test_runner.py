"""The runner on the tiny world: paired rows, the identity control, caching and search reuse."""
import dataclasses

import numpy as np
import pytest

import qsched_core.evaluate.runner as ev
from qsched_core.evaluate import Setting, run_settings
from qsched_core.tinyworld import quality

FP = Setting("fp", steps=1)


def _quiet(*_):
    pass


def test_identity_qsched_row_equals_naive_fp_exactly(models, cfg):
    control = Setting("fp", steps=1, scheduler="qsched", coefficients=(1.0, 1.0))
    scaled = Setting("fp", steps=1, scheduler="qsched", coefficients=(1.0, 0.8))
    naive, ident, other = run_settings([FP, control, scaled], cfg, models, log=_quiet)
    assert (ident.coefficients, other.coefficients) == ((1.0, 1.0), (1.0, 0.8))
    assert np.array_equal(naive.images, ident.images)
    for key in ("objects", "clip_score", "clip_iqa", "features"):
        assert np.array_equal(naive.per_image[key], ident.per_image[key]), key
    assert naive.metrics["fid"][0] == ident.metrics["fid"][0]
    assert not np.array_equal(naive.images, other.images)  # same noise, other coefficients: other images


def test_rows_share_noise_per_image_whatever_the_batching(models, cfg):
    (four,) = run_settings([FP], cfg, models, log=_quiet)
    small = dataclasses.replace(cfg, n_prompts=2, batch_size=1)
    (two,) = run_settings([FP], small, models, log=_quiet)
    # image i's noise depends on (seed, i) only; batched convolutions may round differently (+-1 of 255)
    assert np.abs(four.images[:2].astype(int) - two.images.astype(int)).max() <= 2


def test_another_seed_draws_other_noise(models, cfg):
    (zero,) = run_settings([FP], cfg, models, log=_quiet)
    (one,) = run_settings([FP], dataclasses.replace(cfg, seeds=(1,)), models, log=_quiet)
    assert np.abs(zero.images.astype(int) - one.images.astype(int)).mean() > 10


def test_cached_cells_reload_without_generating(models, cfg, tmp_path, monkeypatch):
    cfg = dataclasses.replace(cfg, cache_dir=tmp_path / "own", n_prompts=2)
    setting = Setting("fp", steps=1, scheduler="qsched", coefficients=(1.0, 0.9))
    (first,) = run_settings([setting], cfg, models, log=_quiet)

    def boom(*args, **kwargs):
        raise AssertionError("a cached cell was regenerated")

    monkeypatch.setattr(quality, "generate", boom)
    (again,) = run_settings([setting], cfg, models, log=_quiet)
    assert (again.setting, again.coefficients, again.metrics) == (first.setting, (1.0, 0.9), first.metrics)
    assert np.array_equal(again.images, first.images)
    for key, value in first.per_image.items():
        assert np.array_equal(again.per_image[key], value), key


def test_search_is_run_once_then_reused(models, cfg, tiny_cal, monkeypatch):
    setting = Setting("w4a8", steps=1, scheduler="qsched", calibration=tiny_cal)
    cfg = dataclasses.replace(cfg, cache_dir=cfg.search_dirs[0].parent / "own", n_prompts=2)
    (cell,) = run_settings([setting], cfg, models, log=_quiet)
    assert cell.calibration["nfe"] == 9 * 1 * 1  # 3x3 grid x 1 prompt x 1 step
    assert cell.coefficients is not None and cell.size["size_mb"] < cell.size["fp16_mb"]

    def boom(*args, **kwargs):
        raise AssertionError("the saved search was not reused")

    monkeypatch.setattr(ev, "run_search", boom)
    fresh_cells = dataclasses.replace(cfg, cache_dir=cfg.cache_dir / "cells-only",
                                      search_dirs=(cfg.cache_dir / "search",))
    (again,) = run_settings([setting], fresh_cells, models, log=_quiet)
    assert again.coefficients == cell.coefficients
    with pytest.raises(AssertionError, match="not reused"):  # another k is another search
        other_k = dataclasses.replace(setting, calibration=dataclasses.replace(tiny_cal, k=0.5))
        run_settings([other_k], fresh_cells, models, log=_quiet)


def test_cell_features_are_the_evaluators_one_pass(models, cfg):
    import torch

    from qsched_core.metrics import extract_features
    from qsched_core.tinyworld.world import eval_prompts

    scenes = eval_prompts(4, seed=0)
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    _, per_image = ev.evaluate_images(images, scenes, models, cfg, seed=0)
    again = extract_features(images, models.evaluator.features).astype(np.float32)
    assert np.array_equal(per_image["features"], again)  # the features kept from `evaluate` are exactly a fresh pass
