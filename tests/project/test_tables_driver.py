"""scripts/tables.py: serial and side-by-side runs give the same rows, outcomes and timing file."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tables(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("tables_driver", ROOT / "scripts" / "tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    py = [sys.executable, "-c"]
    fake = {"main": py + ["import time; time.sleep(1.0)"], "search": py + ["import sys; sys.exit(3)"],
            "quality": py + ["print('ok')"], "hang": py + ["import time; time.sleep(60)"]}
    monkeypatch.setattr(mod, "stages", lambda device, batch_size=500: fake)
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    return mod


@pytest.mark.parametrize("jobs", [1, 3])
def test_outcomes_in_the_order_asked(tables, tmp_path, jobs):
    out = tmp_path / "timing.md"
    rc = tables.main(["--stages", "quality,search,main", "--jobs", str(jobs), "--out", str(out)])
    assert rc == 1  # one stage failed
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["stage"] for r in rows["stages"]] == ["quality", "search", "main"]
    outcomes = {r["stage"]: r["outcome"] for r in rows["stages"]}
    assert outcomes["quality"] == outcomes["main"] == "done"
    assert outcomes["search"].startswith("failed (exit 3")
    assert rows["jobs"] == jobs
    assert rows["found"]["cached cells"] == 0 and "0 cached cells" in out.read_text()  # an empty tmp_path: nothing
    if jobs > 1:
        assert (tmp_path / ".cache" / "tables_logs" / "quality.log").read_text().strip() == "ok"


def test_side_by_side_stages_overlap(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("tables_overlap", ROOT / "scripts" / "tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    log = tmp_path / "spans.txt"
    span = ("import sys, time; t = time.time(); time.sleep(3); "
            "open(sys.argv[1], 'a').write(f'{t} {time.time()}\\n')")
    fake = {n: [sys.executable, "-c", span, str(log)] for n in ("quality", "search", "sweep")}
    monkeypatch.setattr(mod, "stages", lambda device, batch_size=500: fake)
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    assert mod.main(["--stages", "quality,search,sweep", "--jobs", "3", "--out", str(tmp_path / "t.md")]) == 0
    spans = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(spans) == 3 and max(a for a, _ in spans) < min(b for _, b in spans)  # all three ran at once


def test_deadline_stops_a_hanging_stage(tables, tmp_path):
    out = tmp_path / "timing.md"
    tables.main(["--stages", "hang,quality", "--jobs", "2", "--deadline-min", str(8 / 60), "--out", str(out)])
    outcomes = {r["stage"]: r["outcome"] for r in json.loads(out.with_suffix(".json").read_text())["stages"]}
    assert outcomes == {"hang": "stopped at the deadline", "quality": "done"}


def test_jobs_must_be_positive(tables):
    with pytest.raises(SystemExit, match="--jobs 0"):
        tables.main(["--jobs", "0"])


def test_gpu_stages_take_the_batch_size(tables):
    import importlib.util
    spec = importlib.util.spec_from_file_location("tables_real", ROOT / "scripts" / "tables.py")
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    main = real.stages("cuda", 2500)["main"]
    assert main[main.index("--batch-size") + 1] == "2500"
    assert "--batch-size" not in real.stages("cpu")["main"]
    with pytest.raises(SystemExit, match="--batch-size 0"):
        tables.main(["--batch-size", "0"])


def test_side_by_side_the_main_table_waits_for_its_split_cells(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("tables_split", ROOT / "scripts" / "tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    stamp = "import sys, time; time.sleep({d}); open(sys.argv[1], 'a').write('{n} ' + repr(time.time()) + '\\n')"
    log = tmp_path / "order.txt"
    fake = {n: [sys.executable, "-c", stamp.format(d=d, n=n), str(log)]
            for n, d in (("main8", 1.5), ("main4", 0.5), ("main2", 0.2), ("main", 0.0), ("quality", 0.0))}
    monkeypatch.setattr(mod, "stages", lambda device, batch_size=500: fake)
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    out = tmp_path / "timing.md"
    assert mod.main(["--stages", "main,quality", "--jobs", "4", "--out", str(out)]) == 0
    ended = dict(line.split() for line in log.read_text().splitlines())
    assert float(ended["main"]) > max(float(ended[f"main{n}"]) for n in (8, 4, 2))  # the report came last
    rows = json.loads(out.with_suffix(".json").read_text())["stages"]
    assert [r["stage"] for r in rows] == ["main8", "main4", "main2", "main", "quality"]
    # one after another, no split: the main stage computes its own cells
    assert mod.main(["--stages", "main,quality", "--out", str(out)]) == 0
    assert [r["stage"] for r in json.loads(out.with_suffix(".json").read_text())["stages"]] == ["main", "quality"]
