"""scripts/qsched_search.py end to end on a tiny setting, and the notebook's Q-Sched plots."""
import importlib.util
import json

import pytest
from matplotlib.figure import Figure

from qsched_core import viz
from qsched_core.calibrate import CalibrationConfig
from qsched_core.jaq import make_scorer
from qsched_core.search import SearchResult
from qsched_core.utils import REPO_ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_flags_map_onto_the_config():
    cli = _script("qsched_search")
    cfg, out = cli.parse_args(["--preset", "w8a8", "--steps", "8", "--method", "coarse_to_fine", "--grid-points", "7",
                               "--k", "1.5", "--out", "x.json"])
    assert cfg == CalibrationConfig(preset="w8a8", steps=8, method="coarse_to_fine", grid_points=7, k=1.5)
    assert cfg.guidance_scale is None and str(out) == "x.json"
    assert cli.default_out(cfg).name == "tinyworld-lcm_w8a8_8step_coarse_to_fine.json"
    with pytest.raises(ValueError, match="w4a8"):
        cli.parse_args(["--preset", "int4"])


def test_cli_writes_a_loadable_result(tmp_path, capsys, monkeypatch, student, judge):
    from qsched_core import hub

    monkeypatch.setattr(hub, "load_pipeline", lambda name: student)  # already loaded once per session
    monkeypatch.setattr(hub, "load_judge", lambda name: judge)
    out = tmp_path / "run.json"
    _script("qsched_search").main(["--steps", "1", "--n-prompts", "1", "--grid-points", "3", "--threads", "1",
                                   "--out", str(out)])
    printed = capsys.readouterr().out
    assert json.loads(printed.splitlines()[0])["grid_points"] == 3  # asdict(cfg) is logged first
    result = SearchResult.load(out)
    assert result.metadata["preset"] == "w4a8" and result.network_evals == 9 and "machine" in result.metadata
    assert "best start_x=" in printed and str(out) in printed


def test_plot_search_marks_winner_identity_and_overlays(tiny_grid):
    fig = viz.plot_search(tiny_grid, overlays=[tiny_grid])
    ax = fig.axes[0]
    best = tiny_grid.best
    assert isinstance(fig, Figure) and f"JAQ {best['jaq']:.4f} at start_x={best['start_x']:.3g}" in ax.get_title()
    handles, labels = ax.get_legend_handles_labels()
    assert labels == ["best", "stock (1, 1)", "grid: 9 points"]
    assert tuple(handles[0].get_data()) == ([best["start_eps"]], [best["start_x"]])  # x axis = start_eps


def test_panel_titles_each_image_and_follows_k(student, judge):
    prompts = ["a small red circle on the left", "a large blue star at the top"]
    scorer = make_scorer("jaq", judge, k=2.0)
    fig = viz.qsched_panel(student, scorer, prompts, start_x=1.0, start_eps=0.9, num_steps=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 and all("JAQ" in t for t in titles)
    k0 = viz.qsched_panel(student, scorer, prompts, start_x=1.0, start_eps=0.9, num_steps=2, k=0.0)
    assert "+ 0 x IQ" in k0._suptitle.get_text() and "+ 2 x IQ" in fig._suptitle.get_text()
