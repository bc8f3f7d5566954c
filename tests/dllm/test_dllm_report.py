"""The results report: paired drops from per-item strings, the seed's numbers, findings verdicts."""
import json

import torch

from qsched_core.dllm.evaluate import accuracy_ci, paired_drop
from qsched_core.dllm.report import findings, write_report


def _row(model, setting, method, seed, qa, arith, code):
    return dict(model=model, setting=setting, method=method, seed=seed, key=f"{model}/{method}/{setting}/{seed}",
                acc={}, items=dict(qa=qa, arith=arith, code=code))


def test_paired_drop_and_accuracy_ci():
    fp = torch.tensor([1.0] * 8 + [0.0] * 2)
    q = torch.tensor([1.0] * 6 + [0.0] * 4)
    drop, lo, hi = paired_drop(fp, q)
    assert abs(drop - 25.0) < 1e-9 and lo <= drop <= hi
    acc, lo, hi = accuracy_ci(fp)
    assert acc == 80.0 and lo <= 80.0 <= hi


def test_report_from_rows(tmp_path):
    rows = [_row("base", "fp", "fp", 0, "1111", "1100", "1110"),
            _row("base", "w4a4", "smoothquant", 0, "0000", "0000", "0000"),
            _row("base", "w4a4", "quarot", 0, "1110", "1100", "1110"),
            _row("base", "w4a4", "duquant", 0, "1111", "1100", "1110")]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    md = write_report(path).read_text()
    assert "| base | w4a4 | smoothquant | 1 | 0.0 | 0.0 | 0.0 |" in md
    assert "(37.3)" in md  # the seed's Base W4A4 SmoothQuant QA drop sits beside ours
    assert (tmp_path / "r.csv").is_file() and (tmp_path / "r.png").is_file()
    verdicts = {f.split(".")[0]: v for f, v, _ in findings({("base", "w4a4", m): {t: (d, d - 1, d + 1) for t in
                                                            ("qa", "arith", "code")} for m, d in
                                                           (("smoothquant", 90.0), ("quarot", 5.0), ("duquant", 4.0))})}
    assert verdicts["4"] == "holds" and verdicts["3"] == "not measured"
