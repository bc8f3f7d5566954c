"""scripts/time_cell.py: every repeat computes its search and images afresh, and the report says so."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "time_cell.py"


def _script():
    spec = importlib.util.spec_from_file_location("time_cell", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_two_fresh_repeats(monkeypatch):
    monkeypatch.setenv("QSCHED_FAST", "1")
    mod = _script()
    out = mod.main(["--steps", "1", "--n-prompts", "8", "--repeats", "2"])
    assert [r["repeat"] for r in out["repeats"]] == [1, 2]
    for r in out["repeats"]:
        assert r["nfe"] == 3 * 3 * 5 * 1  # every point of the 3x3 grid on 5 prompts, one UNet call per step
        assert r["search_s"] > 0 and r["images_s"] > 0 and r["metrics_s"] > 0
        assert abs(r["wall_s"] - (r["search_s"] + r["images_s"] + r["metrics_s"] + r["other_s"])) < 1e-9
    assert out["repeats"][0]["coefficients"] == out["repeats"][1]["coefficients"]  # same search, same winner
    text = (Path(mod.results_dir()) / "cell_timing.md").read_text()
    assert "median of repeats 2..2" in text and "| 2 |" in text


def test_one_repeat_is_refused():
    with pytest.raises(SystemExit):
        _script().parse_args(["--repeats", "1"])
