"""results/dllm_ptq.{md,csv,png} from the study's JSONL: accuracies, paired drops, the seed's numbers, findings.

Every number here is recomputed from the per-item 0/1 strings the study stored, so the intervals are paired
bootstraps over the same items (quantized scores averaged over calibration seeds first, `evaluate.paired_drop`).
Each task is one category here (QA = general, arith = math, code = code), so a category drop is a task drop.
The seed's drops (LLaDA-8B, dllm_ptq.md §3.1-3.3) sit beside ours; for weight-only QA we use the recomputed
6-task means of §3.6, not the printed Avg column. A finding is judged from whatever rows exist: with rows
missing it says "not measured", with intervals that overlap it says so.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import torch

from .evaluate import accuracy_ci, paired_drop
from .study import METHODS_FOR, load_results

TASKS = ("qa", "arith", "code")
LABEL = {"qa": "QA", "arith": "math", "code": "code"}
# the seed's relative drops in % (QA, math, code); None = not run. Negative = the quantized model scored higher.
SEED = {
    ("base", "w4a16", "gptq"): (-0.2, 1.4, 5.9), ("base", "w4a16", "awq"): (2.2, 3.2, 7.3),
    ("base", "w3a16", "gptq"): (2.2, 15.7, 14.8), ("base", "w3a16", "awq"): (4.5, 10.7, 13.9),
    ("base", "w8a8", "smoothquant"): (2.5, 1.6, 6.5), ("base", "w8a8", "quarot"): (1.8, 0.4, 0.0),
    ("base", "w8a8", "duquant"): (1.9, -0.4, 0.0), ("base", "w4a4", "smoothquant"): (37.3, 97.4, 100.0),
    ("base", "w4a4", "quarot"): (6.6, 14.1, 19.3), ("base", "w4a4", "duquant"): (5.1, 13.0, 18.1),
    ("instruct", "w4a16", "gptq"): (-0.8, 0.6, 6.4), ("instruct", "w4a16", "awq"): (0.9, -0.5, 3.2),
    ("instruct", "w3a16", "gptq"): (1.8, 5.0, 14.7), ("instruct", "w3a16", "awq"): (3.5, 5.0, 12.4),
    ("instruct", "w8a8", "smoothquant"): (0.2, 0.4, 1.3), ("instruct", "w8a8", "quarot"): (0.3, -0.1, 4.3),
    ("instruct", "w8a8", "duquant"): (0.2, 0.5, 0.8), ("instruct", "w4a4", "smoothquant"): (29.0, 95.4, 99.2),
    ("instruct", "w4a4", "quarot"): (3.9, 6.2, 13.4), ("instruct", "w4a4", "duquant"): (2.5, 3.5, 14.9),
}


def _items(row: dict, task: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in row["items"][task]], dtype=torch.float64)


def aggregate(rows: list[dict]) -> dict:
    """{(model, setting, method): {task: (n_items, n_seeds) scores}} plus FP under (model, 'fp', 'fp')."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if "error" not in r:
            for t in TASKS:
                out[(r["model"], r["setting"], r["method"])][t].append(_items(r, t))
    return {k: {t: torch.stack(v, 1) for t, v in d.items()} for k, d in out.items()}


def drops(agg: dict) -> dict:
    """{(model, setting, method): {task: (drop %, lo, hi)}} against the same model's FP."""
    res = {}
    for (model, setting, method), d in agg.items():
        fp = agg.get((model, "fp", "fp"))
        if method != "fp" and fp is not None:
            res[(model, setting, method)] = {t: paired_drop(fp[t][:, 0], d[t]) for t in TASKS}
    return res


def _fmt(d) -> str:
    return "–" if d is None else f"{d[0]:+.1f} [{d[1]:+.1f}, {d[2]:+.1f}]"


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def findings(dr: dict) -> list[tuple[str, str, str]]:
    """(finding, verdict, evidence) for the seed's findings 1-6 (7 is about Dream, which is not modelled here)."""
    def get(m, s, meth, t):
        return dr.get((m, s, meth), {}).get(t)

    def avg(keys, tasks):
        return _mean([get(*k, t)[0] for k in keys for t in tasks if get(*k, t)])

    models, out = ("base", "instruct"), []
    w4 = [(m, "w4a16", x) for m in models for x in ("gptq", "awq")]
    w3 = [(m, "w3a16", x) for m in models for x in ("gptq", "awq")]
    w4_lo = max([get(*k, t)[1] for k in w4 for t in ("qa", "arith") if get(*k, t)], default=None)
    a3, a4 = avg(w3, ("arith", "code")), avg(w4, ("arith", "code"))
    out.append(("1. W4 weight-only is nearly lossless (< 4 % on QA and math); W3 hurts math and code",
                "not measured" if w4_lo is None or a3 is None else
                ("holds" if w4_lo < 4 and a3 > a4 else "does not hold"),
                f"no W4 QA/math drop is significantly above 4 % (largest lower CI bound {_r(w4_lo)} %); mean "
                f"math+code drop W3 {_r(a3)} % vs W4 {_r(a4)} %"))
    w8 = [(m, "w8a8", x) for m in models for x in ("smoothquant", "quarot", "duquant")]
    w8_max = max([get(*k, t)[0] for k in w8 for t in TASKS if get(*k, t)], default=None)
    sq4 = avg([(m, "w4a4", "smoothquant") for m in models], TASKS)
    rot4 = avg([(m, "w4a4", x) for m in models for x in ("quarot", "duquant")], TASKS)
    out.append(("2. W8A8 is near-lossless; W4A4 is hard and SmoothQuant collapses",
                "not measured" if w8_max is None or sq4 is None else
                ("holds" if w8_max < 4 and sq4 > 20 else "partly" if w8_max < 4 else "does not hold"),
                f"largest W8A8 drop {_r(w8_max)} %; mean W4A4 drop SmoothQuant {_r(sq4)} % vs rotations {_r(rot4)} %"))
    g = avg([(m, s, "gptq") for m in models for s in WEIGHT_SETTINGS], ("qa",))
    a = avg([(m, s, "awq") for m in models for s in WEIGHT_SETTINGS], ("qa",))
    out.append(("3. GPTQ beats AWQ on QA (weight-only)", _cmp(g, a, "GPTQ", "AWQ"),
                f"mean QA drop GPTQ {_r(g)} % vs AWQ {_r(a)} %"))
    q4 = avg([(m, "w4a4", "quarot") for m in models], TASKS)
    d4 = avg([(m, "w4a4", "duquant") for m in models], TASKS)
    out.append(("4. Rotations beat SmoothQuant at W4A4; DuQuant >= QuaRot",
                "not measured" if None in (sq4, q4, d4) else
                ("holds" if min(q4, d4) < sq4 and d4 <= q4 else "partly" if min(q4, d4) < sq4 else "does not hold"),
                f"mean W4A4 drop SmoothQuant {_r(sq4)} %, QuaRot {_r(q4)} %, DuQuant {_r(d4)} %"))
    keys = list(dr)
    by_task = {t: avg(keys, (t,)) for t in TASKS}
    out.append(("5. Math and code degrade most",
                "not measured" if None in by_task.values() else
                ("holds" if min(by_task["arith"], by_task["code"]) > by_task["qa"] else "does not hold"),
                ", ".join(f"mean {LABEL[t]} drop {_r(v)} %" for t, v in by_task.items())))
    both = [k[1:] for k in keys if k[0] == "base" and ("instruct",) + k[1:] in dr]
    b = avg([("base",) + k for k in both], TASKS)
    i = avg([("instruct",) + k for k in both], TASKS)
    out.append(("6. Instruct is more robust than Base", _cmp(i, b, "Instruct", "Base"),
                f"mean drop over the {len(both)} (setting, method) pairs measured on both: Instruct {_r(i)} % vs "
                f"Base {_r(b)} %"))
    return out


WEIGHT_SETTINGS = tuple(s for s, ms in METHODS_FOR.items() if "gptq" in ms)
GRID_SIZE = 2 + 2 * (4 + 10 * 3)  # FP x 2 models; per model RTN x 4 settings + 10 (method, setting) x 3 seeds
HEADER = """# Diffusion-LLM PTQ study in miniature (issue 13)

A tiny LLaDA-style masked diffusion LM (`models/dllm/`, 5.4 M parameters, Base and Instruct), three task families
(QA by MC likelihood, arithmetic by generation + exact match, toy-language code by generation + pass@1; 500
held-out items each), and the study's PTQ grid: RTN / GPTQ / AWQ at W4A16 and W3A16 (g128, asymmetric), RTN /
SmoothQuant / QuaRot / DuQuant at W8A8 and W4A4 (per-channel weights, per-token dynamic activations, Q/K/V
quantized), all seven block linears quantized, embedding and head FP, 128 x 128 clean calibration tokens, seeds
0-2. Conventions: `qsched_core/dllm/study.py`; spec: `dllm_ptq.md` sections 1-5. FP and every quantized model see
the same items, prompts and MC mask draws (paired). Regenerate with `python scripts/dllm_study.py --report-only
--out <jsonl>`.

**Deviations from the study.** (1) GPTQ weights asymmetric (the study's table; its code ran AutoGPTQ's symmetric
default). (2) QuaRot rotates each linear input online (the repo's generic QuaRot, `quant/quarot.py`) instead of
fusing one rotation into the residual stream; the arithmetic is the same rotation of every quantized input. (3)
DuQuant fits its rotations on the calibration rows with the largest |x| and takes the *column* of the largest entry
(the paper's description), not the mean sequence / row index of the code. (4) AWQ inspects each group's own linear
outputs. (5) 32 MC draws for likelihoods (the study: 128), 128-token sequences (the model's context). (6) g128 on
d_model = 256 leaves 2 groups per row of q/k/v/o/gate/up (6 for down)."""


def _r(x):
    return "–" if x is None else round(x, 2)


def _cmp(x, y, nx, ny) -> str:
    if x is None or y is None:
        return "not measured"
    return "holds" if x < y else "does not hold"


def table_rows(agg: dict, dr: dict) -> list[dict]:
    rows = []
    for (model, setting, method), d in sorted(agg.items(), key=lambda kv: (kv[0][0], kv[0][1] != "fp", kv[0])):
        row = dict(model=model, setting=setting, method=method, seeds=d["qa"].shape[1])
        for t in TASKS:
            row[f"{t}_acc"] = round(100 * float(d[t].mean()), 2)
            if (model, setting, method) in dr:
                row[f"{t}_drop"], row[f"{t}_lo"], row[f"{t}_hi"] = (round(v, 2) for v in dr[(model, setting, method)][t])
            seed = SEED.get((model, setting, method))
            row[f"{t}_seed_drop"] = None if seed is None else seed[TASKS.index(t)]
        rows.append(row)
    return rows


def write_report(jsonl, out_stem=None, extra_md: str = "") -> Path:
    """Write <stem>.csv, <stem>.md and <stem>.png next to the JSONL (or at out_stem); returns the .md path."""
    rows = load_results(jsonl)
    stem = Path(out_stem) if out_stem else Path(jsonl).with_suffix("")
    agg = aggregate(rows)
    dr = drops(agg)
    table = table_rows(agg, dr)
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in table for k in r)))
        w.writeheader()
        w.writerows(table)
    lines = ["| model | setting | method | seeds | " + " | ".join(f"{LABEL[t]} acc" for t in TASKS) + " | " +
             " | ".join(f"{LABEL[t]} drop % [95 % CI] (seed)" for t in TASKS) + " |", "|" + "---|" * 10]
    for r in table:
        key = (r["model"], r["setting"], r["method"])
        seed = SEED.get(key)
        cells = [f"{_fmt(dr[key][t]) if key in dr else '–'} ({'–' if seed is None else seed[TASKS.index(t)]})"
                 for t in TASKS]
        lines.append(f"| {r['model']} | {r['setting']} | {r['method']} | {r['seeds']} | " +
                     " | ".join(f"{r[f'{t}_acc']:.1f}" for t in TASKS) + " | " + " | ".join(cells) + " |")
    fp_lines = [f"| {m} | " + " | ".join("{:.1f} [{:.1f}, {:.1f}]".format(*accuracy_ci(agg[(m, 'fp', 'fp')][t][:, 0]))
                                         for t in TASKS) + " |" for m in ("base", "instruct") if (m, "fp", "fp") in agg]
    find = [f"| {name} | **{verdict}** | {ev} |" for name, verdict, ev in findings(dr)]
    n_items = len(rows[0]["items"]["qa"]) if rows else 0
    todo = "" if len(rows) >= GRID_SIZE else (
        " The rest runs on one GPU with `PYTHONPATH=. python scripts/dllm_study.py --model-dir models/dllm --device cuda "
        "--workers 14 --out results/dllm_ptq.jsonl` (PTQ in 14 CPU processes, evaluation on the GPU; resumable, "
        "`--time-limit-min` stops it cleanly).")
    md = [HEADER, "", f"**Status.** `{Path(jsonl).name}` holds {len(rows)} of the grid's {GRID_SIZE} jobs "
          f"({n_items} items per task); seeds per row are in the table.{todo}", "",
          "## FP accuracy (% with 95 % bootstrap CI over items)", "",
          "| model | " + " | ".join(LABEL[t] for t in TASKS) + " |", "|---|---|---|---|", *fp_lines, "",
          "## Accuracy and relative drop per category", "",
          "Drop = (FP - Q) / FP in %, mean over calibration seeds, 95 % paired bootstrap CI over items; the seed's "
          "LLaDA-8B drop in parentheses (– = not run there).", "", *lines, "",
          "## The seed's findings, re-measured", "",
          "Verdicts are computed from the rows present (drops averaged over tasks / models / seeds as stated); "
          "while the grid is incomplete they are provisional.", "",
          "| finding | here | evidence |", "|---|---|---|", *find, "",
          extra_md or _extras(Path(jsonl).parent)]
    stem.with_suffix(".md").write_text("\n".join(md))
    _figure(dr, stem.with_suffix(".png"))
    return stem.with_suffix(".md")


def _extras(results: Path) -> str:
    """Outlier and CPU-speed sections from results/dllm_outliers.json and dllm_cpu_speed.json, when present."""
    parts = []
    out = results / "dllm_outliers.json"
    if out.is_file():
        o = json.loads(out.read_text())
        lines = ["| model | block | input | max abs | channel max/median | token max/median | kurtosis |",
                 "|---|---|---|---|---|---|---|"]
        for model, rows in o["stats"].items():
            for r in sorted(rows, key=lambda r: -r["max_abs"])[:4]:
                lines.append(f"| {model} | {r['layer']} | {r['input']} | {r['max_abs']:.1f} | {r['channel_ratio']:.1f} | "
                             f"{r['token_ratio']:.1f} | {r['kurtosis']:.0f} |")
        eff = ["| transform | max abs | channel max/median | token max/median | int4 per-token error |",
               "|---|---|---|---|---|"] + [f"| {m} | {e['max_abs']} | {e['channel_ratio']} | {e['token_ratio']} | "
                                          f"{e['int4_token_err']} |" for m, e in o["effect"].items()]
        parts += ["## Activation outliers (clean calibration text, `dllm_outliers.json`, `dllm_outliers.png`)", "",
                  "The four largest linear inputs of each model:", "", *lines, "",
                  f"What the activation quantizer of `{o['effect_linear']}` sees after each W4A4 method's transforms "
                  f"(`dllm_outliers_methods.png`):", "", *eff, ""]
    sp = results / "dllm_cpu_speed.json"
    if sp.is_file():
        s = json.loads(sp.read_text())["base"]
        parts += ["## Speed on the CPU", "", f"{s['tokens_per_s']} generated tokens/s: {s['prompts']} arithmetic prompts "
                  f"batched, gen_len {s['gen_len']} = {s['forward_passes']} full forward passes, fp32, {s['threads']} "
                  f"torch threads on a shared 2-core {s['cpu']} CPU (torch {s['torch']}), {s['seconds']} s.", ""]
    return "\n".join(parts)


def _figure(dr: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, model in zip(axes, ("base", "instruct")):
        keys = [k for k in sorted(dr, key=lambda k: (list(METHODS_FOR).index(k[1]), k[2])) if k[0] == model]
        for j, t in enumerate(TASKS):
            vals = [dr[k][t] for k in keys]
            x = [i + (j - 1) * 0.27 for i in range(len(keys))]
            ax.bar(x, [v[0] for v in vals], 0.27, label=LABEL[t],
                   yerr=[[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]], capsize=2)
        ax.set_xticks(range(len(keys)), [f"{k[1]}\n{k[2]}" for k in keys], fontsize=7, rotation=60)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{model}: relative drop vs FP (%), 95 % CI")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_json(jsonl) -> dict:
    """Compact summary for notebooks: {key: acc} of every finished job."""
    return {r["key"]: r["acc"] for r in load_results(jsonl) if "acc" in r}


def dump_json(obj, path) -> None:
    Path(path).write_text(json.dumps(obj, indent=1))
