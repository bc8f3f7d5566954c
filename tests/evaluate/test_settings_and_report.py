"""Settings validation, conv quantization, the search-line argmax, paired statistics and the table writers.

No model runs here: cells are built from synthetic per-image arrays, so these tests are fast and exact.
"""
import csv
import importlib.util
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qsched_core.evaluate import (
    Calibration,
    Cell,
    Setting,
    best_point,
    default_pairs,
    diagnostics,
    markdown_table,
    naive_twin,
    paired_diffs,
    paired_fid_diff,
    paper_rows,
    quantize_convs_,
    summary_rows,
)
from qsched_core.evaluate.report import bootstrap_fids, fid_eigh
from qsched_core.metrics import ReferenceStats, fid_to_reference
from qsched_core.quant import QuantConfig
from qsched_core.search import SearchConfig, SearchResult, on_edge

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "w5a9"}, "preset='w5a9'"),
    ({"scheduler": "qsched-ish"}, "scheduler='qsched-ish'"),
    ({"coefficients": (0.9, 1.0)}, "scheduler='qsched'"),
    ({"preset": "fp", "quantize_convs": True}, "quantizes nothing"),
    ({"eta": 0.3}, "family='tcd'"),
    ({"steps": 0}, "steps=0"),
])
def test_bad_settings_name_the_value_and_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Setting(**kwargs)


def test_axis_restriction_needs_a_grid_through_one():
    with pytest.raises(ValueError, match="odd grid_points"):
        Calibration(axes="x", grid_points=4)
    with pytest.raises(ValueError, match="method='grid'"):
        Calibration(axes="eps", method="gradient")


def test_labels_and_twins():
    q = Setting("w4a8", 4, "qsched", calibration=Calibration(k=5))
    assert (Setting("fp").label, Setting("w4a8").label, q.label) == ("FP", "naive W4A8", "Q-Sched W4A8")
    assert Setting("fp", scheduler="qsched").label == "FP + Q-Sched"
    assert naive_twin(q) == Setting("w4a8", 4)
    settings = [Setting("fp", 4), Setting("w4a8", 4), q, Setting("fp", 4, "qsched")]
    assert default_pairs(settings) == [(Setting("w4a8", 4), Setting("fp", 4)), (q, Setting("w4a8", 4)),
                                       (Setting("fp", 4, "qsched"), Setting("fp", 4))]


# ------------------------------------------------------------------------------------------- quantization
def test_quantize_convs_puts_weights_on_the_grid_and_quantizes_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))  # K = 36 and 72
    x = torch.randn(2, 4, 6, 6)
    before = net(x)
    fp16 = sum(2 * p.numel() for p in net.parameters())
    packed = quantize_convs_(net, QuantConfig.from_name("w4a8"))
    w = net[1].weight.detach().reshape(8, 72)[:, :32]  # one group of 32: at most 16 int4 levels
    assert all(len(torch.unique(row)) <= 16 for row in w)
    assert packed < fp16 / 2.5  # 4-bit codes + fp16 scales vs fp16 weights
    assert not torch.allclose(net(x), before)
    assert len(net[0]._forward_pre_hooks) == 1  # input fake-quantization per pixel


# ----------------------------------------------------------------------------------------------- search
def _result(points):
    best, cfg = max(points, key=lambda p: p["jaq"]), SearchConfig(grid_points=3)
    return SearchResult(asdict(cfg), "jaq", "grid", points, best, 1.0, 9, on_edge(best, cfg))


def test_best_point_restricted_to_a_line():
    pts = [{"start_x": x, "start_eps": e, "tc": 0.0, "iq": 0.0, "jaq": j} for x, e, j in
           [(0.8, 0.8, 9.0), (1.0, 0.8, 2.0), (0.8, 1.0, 3.0), (1.0, 1.0, 1.0), (1.2, 1.0, 4.0)]]
    r = _result(pts)
    assert (best_point(r)["jaq"], best_point(r, "x")["jaq"], best_point(r, "eps")["jaq"]) == (9.0, 4.0, 2.0)


# ------------------------------------------------------------------------------------------------- FID
@pytest.fixture(scope="module")
def ref():
    rng = np.random.default_rng(0)
    return ReferenceStats.from_features("ref", rng.normal(size=(400, 8)))


def test_eigh_fid_matches_clean_fid(ref):
    feats = np.random.default_rng(1).normal(0.3, 1.2, size=(200, 8))
    assert math.isclose(fid_eigh(feats, ref), fid_to_reference(feats, ref), rel_tol=1e-6)


def test_paired_fid_diff_is_zero_for_identical_cells_and_signed_otherwise(ref):
    a = np.random.default_rng(2).normal(size=(120, 8))
    assert paired_fid_diff(a, a, ref, n_boot=20) == (0.0, 0.0, 0.0)
    d, lo, hi = paired_fid_diff(a + 1.0, a, ref, n_boot=50)  # a shifted copy is much farther from ref
    assert d > 0 and 0 < lo <= hi
    assert bootstrap_fids([a, a + 1.0], ref, n_boot=7).shape == (7, 2)


# ---------------------------------------------------------------------------------------------- tables
def _cell(setting, hits, iqa, shift, seed=0):
    n = len(hits)
    rng = np.random.default_rng(seed)
    per_image = {"objects": np.array(hits, bool), "background": np.ones(n, bool), "two_objects": np.zeros(n, bool),
                 "clip_score": np.full(n, 80.0) + shift, "clip_iqa": np.array(iqa, float),
                 "features": (rng.normal(size=(n, 8)) + shift).astype(np.float32)}
    metrics = {m: [0.5 + shift, 0.4 + shift, 0.6 + shift] for m in
               ("fid", "clip_score", "clip_iqa", "acc_single", "acc_two", "acc_objects")}
    metrics["n"] = n
    cal = {"source": "fixed", "wall_s": 1.5, "nfe": 90, "best_jaq": 6.5, "identity_jaq": 6.4, "jaq_range": 0.3,
           "on_edge": False}
    images = np.full((4, 3, 8, 8), int(10 * shift), np.uint8)
    return Cell(setting, seed, None if setting.scheduler == "naive" else (0.9, 1.0), metrics,
                {"size_mb": 1.0, "fp16_mb": 2.0}, cal, 0.1, "CPU", per_image, images)


@pytest.fixture
def cells():
    fp, naive, q = Setting("fp", 4), Setting("w4a8", 4), Setting("w4a8", 4, "qsched")
    return [_cell(fp, [1, 1, 1, 0] * 10, [0.99] * 40, 0.0), _cell(naive, [1, 0, 0, 0] * 10, [0.9] * 40, 1.0),
            _cell(q, [1, 1, 0, 0] * 10, [0.97] * 40, 0.5)]


def test_summary_and_paired_rows(cells, ref):
    rows = summary_rows(cells)
    assert [r["method"] for r in rows] == ["FP", "naive W4A8", "Q-Sched W4A8"]
    assert (rows[2]["start_x"], rows[2]["start_eps"], rows[0]["start_x"]) == (0.9, 1.0, 1.0)
    assert math.isnan(rows[0]["fid_std"])  # one seed: the CI is shown, not a std
    paired = paired_diffs(cells, ref, n_boot=50, fid_boot=10)
    assert [r["comparison"] for r in paired] == ["naive W4A8 - FP", "Q-Sched W4A8 - naive W4A8"]
    q = paired[1]
    assert (q["acc_wins"], q["acc_losses"]) == (10, 0) and q["d_acc"] == pytest.approx(0.25)
    assert q["sign_p"] == pytest.approx(2 / 2**10)  # all 10 discordant pairs favour Q-Sched
    diag = {r["method"]: r for r in diagnostics(cells)}
    assert diag["FP"]["pixel_rmse_vs_fp"] == 0 and diag["naive W4A8"]["pixel_rmse_vs_fp"] > 0
    assert diag["Q-Sched W4A8"]["calib_jaq_gain"] == pytest.approx(0.1)


def test_paper_rows_relative_changes():
    rows = [{"method": m, "steps": 4, "fid": f} for m, f in (("FP", 100.0), ("naive W4A8", 120.0),
                                                              ("Q-Sched W4A8", 110.0))]
    four = next(r for r in paper_rows(rows) if r["steps"] == 4)
    assert four["paper_rel"] == pytest.approx((26.98 - 31.94) / 31.94)  # the paper's -15.5 %
    assert (four["ours_rel"], four["ours_naive_rel"]) == (pytest.approx(0.10), pytest.approx(0.20))
    assert four["ours_qsched_vs_naive"] == pytest.approx(-10 / 120)


def test_markdown_table():
    text = markdown_table([{"a": 1, "b": 2.5}], {"A": "a", "B x2": lambda r: r["b"] * 2})
    assert text.splitlines() == ["| A | B x2 |", "|---|---|", "| 1 | 5.0 |"]


def test_main_report_writes_the_expected_columns(cells, ref, tmp_path):
    qe = _script("qsched_eval")
    cfg = qe.MainConfig(n_prompts=40, steps="4", presets="w4a8", sweep=False, n_boot=50, fid_boot=10)
    info = {"machine": "test", "fast": True, "wall_s": 1.0, "cell_machines": ["CPU"], "n_cells": 3,
            "cached_cells": 0, "command": "python scripts/qsched_eval.py"}
    paths = qe.write_report(cells, [], ref, cfg, tmp_path, info)
    with open(paths["csv"]) as f:
        header = next(csv.reader(f))
    for col in ("table", "method", "steps", "fid", "fid_lo", "fid_hi", "clip_score", "clip_iqa", "acc_single",
                "acc_two", "size_mb", "calib_s", "calib_nfe", "start_x", "start_eps"):
        assert col in header, col
    with open(paths["paired"]) as f:
        assert {"comparison", "d_fid", "d_fid_lo", "d_acc", "sign_p"} <= set(next(csv.reader(f)))
    text = paths["md"].read_text()
    for heading in ("## 1. Main table", "## 2. Paired differences", "## 3. The paper beside us", "## 6. Findings"):
        assert heading in text
    assert "| 4 | Q-Sched W4A8 |" in text and "-15.5%" in text and paths["card"].is_file()


def test_ablation_cli_names_its_outputs_and_rejects_bad_values():
    abl = _script("qsched_ablations")
    cfg = abl.parse_args(["--steps", "2", "--n-prompts", "200", "--name", "qsched_ablations_2step"])
    assert (cfg.steps, cfg.n_prompts, cfg.name) == (2, 200, "qsched_ablations_2step")
    with pytest.raises(ValueError, match="name='../x'"):
        abl.AblationConfig(name="../x")
    with pytest.raises(ValueError, match="unknown"):
        abl.AblationConfig(groups="objective,colour")


def test_ablation_cell_seconds_are_the_cell_own_or_say_reused():
    abl = _script("qsched_ablations")
    fresh = {"cached": False, "calib_s": 4.04, "gen_s": 1.25, "eval_s": 2.5}
    assert abl.cell_seconds(fresh) == "4.0 + 1.2 + 2.5"
    assert abl.cell_seconds({**fresh, "cached": True}) == "- (reused)"
    assert abl.cell_seconds({**fresh, "eval_s": None}) == "- (reused)"  # a cell saved before cells were timed


def test_second_judge_clipscore_is_reported_only_where_every_cell_has_it(cells, ref):
    assert "d_clip_score_v1" not in paired_diffs(cells, ref, n_boot=20, fid_boot=5)[1]
    for c, v in zip(cells, (80.0, 79.0, 81.5)):  # the second judge prefers Q-Sched by 2.5 over naive
        c.per_image["clip_score_v1"] = np.full(40, v)
        c.metrics["clip_score_v1"] = [v, v - 0.1, v + 0.1]
    q = paired_diffs(cells, ref, n_boot=20, fid_boot=5)[1]
    assert q["d_clip_score_v1"] == pytest.approx(2.5) and q["d_clip_score_v1_lo"] == pytest.approx(2.5)
    assert summary_rows(cells)[2]["clip_score_v1"] == pytest.approx(81.5)
    del cells[0].per_image["clip_score_v1"], cells[0].metrics["clip_score_v1"]  # an older FP cell: no column there
    rows = summary_rows(cells)
    assert "clip_score_v1" not in rows[0] and "d_clip_score_v1" not in paired_diffs(cells, ref, n_boot=20, fid_boot=5)[0]


def _saved_search(folder: Path, machine: str, best_x: float) -> Path:
    points = [{"start_x": x, "start_eps": 1.0, "tc": 0.5, "iq": 0.5, "jaq": 1.0 - abs(x - best_x)}
              for x in (0.9, 1.0, 1.1)]
    result = _result(points)
    result.metadata.update(prompts=["a red circle"], preset="w4a8", quantize_convs=False, pipeline="tinyworld-lcm",
                           unet_fingerprint="f", machine=machine)
    folder.mkdir(parents=True, exist_ok=True)
    return result.save(folder / "search.json")


@pytest.mark.parametrize("machines, expected", [(("host A, NVIDIA H200", "host A, NVIDIA H200"), "same machine"),
                                                (("host A, NVIDIA H200", "host B, 2 cores"), "NVIDIA H200 vs host B")])
def test_search_reruns_once_per_search_and_names_the_machines(tmp_path, monkeypatch, machines, expected):
    from types import SimpleNamespace

    from qsched_core.evaluate import report

    used = _saved_search(tmp_path / "cache", machines[0], 1.1)
    _saved_search(tmp_path / "saved", machines[1], 1.0)
    monkeypatch.setattr(report, "SEARCH_DIR", tmp_path / "saved")
    setting = Setting("w4a8", 4, "qsched")
    cells = [SimpleNamespace(setting=setting, calibration={"source": str(used)}, machine="NVIDIA H200, torch x")
             for _ in range(3)]  # three seeds, one search
    rows = report.search_reruns(cells)
    assert len(rows) == 1 and rows[0]["machines"] == expected
    assert rows[0]["winner"] == (1.1, 1.0) and rows[0]["rerun_winner"] == (1.0, 1.0) and not rows[0]["same"]
    assert rows[0]["same_machine"] == (machines[0] == machines[1])
