"""The results report: paired drops and gaps from per-item strings, the seed's numbers, provenance, verdicts."""
import json

import torch

from qsched_core.dllm.evaluate import accuracy_ci, paired_drop, paired_gap
from qsched_core.dllm.findings import Evidence, findings
from qsched_core.dllm.report import aggregate, write_report

N = 200  # items per task in the synthetic rows


def _s(k: int, n: int = N) -> str:
    """Item string: the first k items right."""
    return "1" * k + "0" * (n - k)


def _row(model, setting, method, seed, qa, arith, code):
    return dict(model=model, setting=setting, method=method, seed=seed, key=f"{model}/{method}/{setting}/{seed}",
                acc={}, items=dict(qa=qa, arith=arith, code=code))


def test_paired_drop_gap_and_accuracy_ci():
    fp = torch.tensor([1.0] * 8 + [0.0] * 2)
    q = torch.tensor([1.0] * 6 + [0.0] * 4)
    drop, lo, hi = paired_drop(fp, q)
    assert abs(drop - 25.0) < 1e-9 and lo <= drop <= hi
    acc, lo, hi = accuracy_ci(fp)
    assert acc == 80.0 and lo <= 80.0 <= hi
    gap, lo, hi = paired_gap(fp, q, fp)  # q loses 25 points of FP more than FP itself
    assert abs(gap - 25.0) < 1e-9 and 0 <= lo <= gap <= hi
    seeds = torch.stack([q, fp], 1)  # two seeds, averaged first: drop 12.5
    assert abs(paired_drop(fp, seeds)[0] - 12.5) < 1e-9


def _grid_rows():
    """Base: math below the floor; SmoothQuant W4A4 far worse than the rotations, everything else lossless."""
    rows = []
    for model in ("base", "instruct"):
        rows.append(_row(model, "fp", "fp", 0, _s(120), _s(10 if model == "base" else 160), _s(100)))
        for setting, method in (("w4a4", "smoothquant"), ("w4a4", "quarot"), ("w4a4", "duquant"),
                                ("w8a8", "smoothquant"), ("w8a8", "quarot"), ("w8a8", "duquant")):
            bad = method == "smoothquant" and setting == "w4a4"
            for seed in (0, 1):
                rows.append(_row(model, setting, method, seed, _s(40 if bad else 119), _s(2 if bad else 10),
                                 _s(30 if bad else 100)))
    return rows


def test_findings_verdicts_and_floor():
    ev = Evidence(aggregate(_grid_rows()))
    assert ("base", "arith") not in ev.cells() and ("instruct", "arith") in ev.cells()
    verdicts = {f.split(".")[0]: v for f, v, _ in findings(ev)}
    assert verdicts["4"] == "holds"            # both rotations significantly better than SmoothQuant, DuQuant = QuaRot
    assert verdicts["1"] == verdicts["3"] == "not measured"    # no weight-only rows
    assert verdicts["7"] == "not testable here"
    assert verdicts["2"] == "partly"           # W8A8 lossless, SmoothQuant W4A4 collapses, but rotations lossless


def test_report_from_rows(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = _grid_rows()
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = dict(model_dir="/elsewhere", device="cuda", workers=3, eval_in_workers=True, seeds=[0, 1])
    log = [json.dumps(cfg), json.dumps({"machine": dict(torch="2.x", cpus=8, gpu="Some GPU", gpus=1)})]
    log += [f"[{i:6d} s] {r['key']} {{}} ptq 0 s eval 0 s" for i, r in enumerate(rows)] + [json.dumps({"wall_s": 42})]
    (tmp_path / "r.log").write_text("\n".join(log))
    md = write_report(path).read_text()
    assert "| base | w4a4 | SmoothQuant | 2 | 20.0 | 1.0 | 15.0 |" in md
    assert "| 37.3 |" in md  # the seed's Base W4A4 SmoothQuant QA drop sits beside ours
    assert "--seeds 0,1 --device cuda --workers 3 --eval-in-workers" in md and "1 x Some GPU, torch 2.x, 8 CPUs" in md
    assert "42 s for the whole command" in md and "Base math (FP 5.0 %)" in md
    assert (tmp_path / "r.csv").is_file() and (tmp_path / "r.png").is_file()
