"""Every file the repo reads is validated on load: a corrupt or stale file gives an error that names the path and
how to regenerate it, caches recompute instead of failing, and writes are atomic (write a temporary file, then
rename), so a run killed mid-write resumes cleanly."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from qsched_core.evaluate.runner import Cell, load_cell, save_cell
from qsched_core.evaluate.settings import EvalConfig, Setting
from qsched_core.metrics import ReferenceStats
from qsched_core.search import SearchResult
from qsched_core.tinyworld import loaders
from qsched_core.utils import REPO_ROOT, atomic_write, atomic_write_text
from robust_helpers import clear

FEATS = np.random.default_rng(0).normal(size=(30, 4))


def corrupt(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(len(data)))
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise AssertionError(how)


# ------------------------------------------------------------------------------------ reference statistics
@pytest.mark.parametrize("how", ["truncated", "random-bytes", "empty"])
def test_corrupt_reference_stats_name_the_path_and_the_fix(tmp_path, how):
    path = ReferenceStats.from_features("ref", FEATS).save(tmp_path)
    corrupt(path, how)
    clear(lambda: ReferenceStats.load("ref", tmp_path), str(path), "not valid reference statistics", "get_or_compute")


def test_reference_stats_missing_key_and_nan(tmp_path):
    path = tmp_path / "ref.npz"
    np.savez(path, name="ref", mu=np.zeros(4), n=30)  # no sigma
    clear(lambda: ReferenceStats.load("ref", tmp_path), str(path), "KeyError", "sigma")
    np.savez(path, name="ref", mu=np.zeros(4), sigma=np.full((4, 4), np.nan), n=30)
    clear(lambda: ReferenceStats.load("ref", tmp_path), str(path), "NaN")


def test_missing_reference_stats_name_the_path(tmp_path):
    clear(lambda: ReferenceStats.load("absent", tmp_path), "absent.npz", exc=FileNotFoundError)


@pytest.mark.parametrize("how", ["truncated", "random-bytes", "empty", "stale-dim", "stale-name"])
def test_reference_cache_recomputes_instead_of_failing(tmp_path, how):
    path = ReferenceStats.from_features("ref", FEATS).save(tmp_path)
    if how == "stale-dim":  # built with another feature network
        ReferenceStats("ref", np.zeros(7), np.eye(7), 30).save(tmp_path)
    elif how == "stale-name":
        shutil.copy(ReferenceStats.from_features("other", FEATS).save(tmp_path), path)
    else:
        corrupt(path, how)
    calls = []
    with pytest.warns(UserWarning, match="recomputing the reference statistics"):
        stats = ReferenceStats.get_or_compute("ref", lambda: calls.append(1) or FEATS, tmp_path, dim=4)
    assert calls == [1] and stats.dim == 4
    assert np.array_equal(ReferenceStats.load("ref", tmp_path, dim=4).sigma, stats.sigma)  # the file is whole again


def test_a_valid_cache_is_reused_without_recomputing(tmp_path):
    ReferenceStats.from_features("ref", FEATS).save(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ReferenceStats.get_or_compute("ref", lambda: pytest.fail("recomputed a valid cache"), tmp_path, dim=4)


# ------------------------------------------------------------------------------------------- atomic writes
def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "a.json", '{"ok": 1}')
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as f:
            f.write('{"half')
            raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


KILLED_MID_SAVE = textwrap.dedent("""
    import os, sys
    import numpy as np
    from qsched_core.metrics import ReferenceStats

    def savez_then_die(file, **arrays):  # write half a file, then die as `kill -9` would
        file.write(b"PK\\x03\\x04" + b"\\0" * 64)
        file.flush()
        os._exit(137)

    np.savez = savez_then_die
    feats = np.random.default_rng(0).normal(size=(30, 4))
    ReferenceStats.get_or_compute("ref", lambda: feats, sys.argv[1], dim=4)
""")


def test_a_run_killed_mid_save_resumes_in_a_new_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tmp_path)], env=env, capture_output=True)
    assert first.returncode == 137, first.stderr.decode()[-2000:]
    assert not (tmp_path / "ref.npz").exists(), "a killed save left a half-written cache under the final name"
    # the second run (a fresh process, as after a crash) computes the statistics and writes a whole file
    stats = ReferenceStats.get_or_compute("ref", lambda: FEATS, tmp_path, dim=4)
    assert np.array_equal(ReferenceStats.load("ref", tmp_path).mu, stats.mu)
    ReferenceStats.get_or_compute("ref", lambda: pytest.fail("recomputed after the resume"), tmp_path, dim=4)


# ------------------------------------------------------------------------------------------ search results
def a_search_result() -> SearchResult:
    points = [{"start_x": x, "start_eps": e, "tc": 4.0, "iq": 0.5, "jaq": 5.0 + x - e}
              for x in (0.8, 1.2) for e in (0.8, 1.2)]
    from dataclasses import asdict

    from qsched_core.search import SearchConfig
    best = max(points, key=lambda p: p["jaq"])
    return SearchResult(config=asdict(SearchConfig(grid_points=2)), scorer="jaq", method="grid", points=points,
                        best=best, wall_time_s=1.0, network_evals=16, on_edge=True, metadata={})


def test_search_result_roundtrip(tmp_path):
    path = a_search_result().save(tmp_path / "s.json")
    assert SearchResult.load(path).best == a_search_result().best


@pytest.mark.parametrize("how", ["truncated", "random-bytes", "empty"])
def test_corrupt_search_results_name_the_path(tmp_path, how):
    path = a_search_result().save(tmp_path / "s.json")
    corrupt(path, how)
    clear(lambda: SearchResult.load(path), str(path), "re-run the search")


@pytest.mark.parametrize("edit, fragment", [
    (lambda raw: raw.update(version=0), "schema/version"),
    (lambda raw: raw.update(best={**raw["best"], "jaq": -1.0}), "argmax"),
    (lambda raw: raw["points"][0].update(jaq=None), "finite numbers"),
    (lambda raw: raw.update(config={**raw["config"], "grid_points": "eleven"}), "SearchConfig fields"),
    (lambda raw: raw.pop("points"), "SearchResult/SearchConfig fields"),
], ids=["stale-version", "tampered-best", "null-score", "bad-config", "missing-key"])
def test_stale_or_tampered_search_results_are_refused(tmp_path, edit, fragment):
    path = a_search_result().save(tmp_path / "s.json")
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    clear(lambda: SearchResult.load(path), str(path), fragment)


# -------------------------------------------------------------------------------------------- cached cells
def a_cell() -> Cell:
    return Cell(setting=Setting("fp", 4), seed=0, coefficients=None, metrics={"fid": [1.0, 0.5, 1.5]}, size={},
                calibration={}, gen_s=0.1, machine="test", per_image={"clip": np.arange(3.0)},
                images=np.zeros((1, 3, 4, 4), np.uint8))


@pytest.mark.parametrize("which, how", [("json", "truncated"), ("json", "random-bytes"), ("npz", "truncated"),
                                        ("npz", "random-bytes"), ("json", "empty")])
def test_corrupt_cached_cells_are_recomputed_not_trusted(tmp_path, which, how):
    cfg = EvalConfig(n_prompts=16, n_ref=16, cache_dir=tmp_path)
    save_cell(cfg, "k", a_cell())
    assert np.array_equal(load_cell(cfg, "k").per_image["clip"], np.arange(3.0))
    corrupt(tmp_path / "cells" / f"k.{which}", how)
    with pytest.warns(UserWarning, match="will be recomputed"):
        assert load_cell(cfg, "k") is None
    save_cell(cfg, "k", a_cell())  # the recomputed cell overwrites the broken one
    assert load_cell(cfg, "k").setting == Setting("fp", 4)


def test_stale_cell_schema_is_recomputed(tmp_path):
    cfg = EvalConfig(n_prompts=16, n_ref=16, cache_dir=tmp_path)
    save_cell(cfg, "k", a_cell())
    meta = tmp_path / "cells" / "k.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "renamed_field": 1}))
    with pytest.warns(UserWarning, match="will be recomputed"):
        assert load_cell(cfg, "k") is None


# ---------------------------------------------------------------------------------------- shipped weights
def copy_models(tmp_path, *parts):
    root = tmp_path / "tinyworld"
    for part in parts:
        shutil.copytree(loaders.TINYWORLD / part, root / part, symlinks=True)
    return root


@pytest.mark.parametrize("how", ["truncated", "random-bytes", "empty"])
def test_corrupt_evaluator_weights_name_the_path_and_the_fix(tmp_path, how):
    root = copy_models(tmp_path, "evaluator")
    path = root / "evaluator" / "evaluator.safetensors"
    corrupt(path, how)
    clear(lambda: loaders.load_evaluator(root=root), str(path), "git checkout", "--stages evaluator")


def test_evaluator_weights_of_another_architecture_are_refused(tmp_path):
    from safetensors.torch import save_file
    root = copy_models(tmp_path, "evaluator")
    path = root / "evaluator" / "evaluator.safetensors"
    save_file({"neck.1.weight": torch.zeros(3, 3)}, path)
    clear(lambda: loaders.load_evaluator(root=root), str(path), "does not fit Evaluator", "stale")


def test_missing_weights_name_the_path(tmp_path):
    clear(lambda: loaders.load_evaluator(root=tmp_path), str(tmp_path / "evaluator"), "is missing", "git checkout",
          exc=FileNotFoundError)


def test_corrupt_judge_files_name_the_path(tmp_path):
    root = copy_models(tmp_path, "clip")
    (root / "clip" / "open_clip_config.json").write_text("{\"model_cfg\": ")
    clear(lambda: loaders.load_judge(root=root), "open_clip_config.json", "--stages clip")
    shutil.copy(loaders.TINYWORLD / "clip" / "open_clip_config.json", root / "clip" / "open_clip_config.json")
    corrupt(root / "clip" / "open_clip_model.safetensors", "truncated")
    clear(lambda: loaders.load_judge(root=root), "open_clip_model.safetensors", "git checkout")


def test_corrupt_pipeline_names_the_folder(tmp_path):
    root = tmp_path / "tinyworld"
    (root / "lcm").mkdir(parents=True)
    for part in (loaders.TINYWORLD / "lcm").iterdir():  # link every part but the UNet, which gets corrupted
        (root / "lcm" / part.name).symlink_to(part)
    (root / "lcm" / "unet").unlink()
    shutil.copytree(loaders.TINYWORLD / "lcm" / "unet", root / "lcm" / "unet")
    corrupt(root / "lcm" / "unet" / "diffusion_pytorch_model.safetensors", "truncated")
    clear(lambda: loaders.load_pipeline(root=root), str(root / "lcm"), "export_pipeline")


# ------------------------------------------------------------------------------------- training checkpoints
def test_training_resumes_from_its_checkpoint_and_refuses_a_corrupt_one(tmp_path):
    from torch import nn

    from qsched_core.tinyworld.train import Loop, TrainConfig

    def loop(max_steps):
        torch.manual_seed(0)
        net = nn.Linear(4, 1)
        cfg = TrainConfig(stage="vae", ckpt_dir=str(tmp_path), max_steps=max_steps, minutes=5, resume=True,
                          log_every=1)
        return net, Loop(cfg, {"net": net}, net.parameters(), warmup=1)

    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    net, first = loop(3)
    first.run(lambda: {"loss": net(x).pow(2).mean()})  # "interrupted" after 3 of 6 steps, checkpoint saved
    net2, resumed = loop(6)
    assert resumed.step == 3 and torch.equal(net2.weight, net.weight)
    resumed.run(lambda: {"loss": net2(x).pow(2).mean()})
    assert resumed.step == 6
    (tmp_path / "vae.pt").unlink()
    net3, straight = loop(6)  # the same 6 steps in one go reach the same weights (the LR depends on wall time)
    straight.run(lambda: {"loss": net3(x).pow(2).mean()})
    assert torch.allclose(net3.weight, net2.weight, atol=1e-6)
    corrupt(tmp_path / "vae.pt", "truncated")
    clear(lambda: loop(6), str(tmp_path / "vae.pt"), "delete it", "without --resume")


def test_load_or_calibrate_searches_again_over_a_corrupt_result(tmp_path, monkeypatch):
    from qsched_core import calibrate as cal
    path = a_search_result().save(tmp_path / "s.json")
    corrupt(path, "truncated")
    monkeypatch.setattr(cal, "calibrate", lambda cfg, pipe=None, judge=None: "searched again")
    with pytest.warns(UserWarning, match="not reusing"):
        assert cal.load_or_calibrate(cal.CalibrationConfig(), path) == "searched again"
