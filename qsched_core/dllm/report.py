"""results/dllm_ptq.{md,csv,png} from the study's JSONL: the run, accuracies, paired drops, seed spread, findings.

Sections: where and how the grid ran (`runlog.py`), FP accuracy, the seed's findings re-measured (`findings.py`),
accuracy and relative drop per row beside the seed's, the spread over calibration seeds, paired method comparisons.

Every number is recomputed from the per-item 0/1 strings the study stored, so the intervals are paired bootstraps
over the same items (quantized scores averaged over calibration seeds first, `evaluate.paired_drop`). Each task is
one category here (QA = general, arith = math, code = code), so a category drop is a task drop. The seed's drops
(LLaDA-8B, dllm_ptq.md §3.1-3.3) sit beside ours; for weight-only QA we use the recomputed 6-task means of §3.6, not
the printed Avg column. Where the grid ran comes from the logs next to the JSONL (`<stem>*.log`: the first line is
the run's StudyConfig as JSON, then one line per finished job).
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import torch

from .evaluate import accuracy_ci
from .findings import (
    FLOOR,
    LABEL,
    NAME,
    SEED,
    SEED_FP,
    TASKS,
    Evidence,
    ci,
    comparison_rows,
    findings,
    other_differences,
    sig,
)
from .runlog import provenance
from .study import METHODS_FOR, load_results

ORDER = [(s, m) for s in METHODS_FOR for m in METHODS_FOR[s]]


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


def drops(ev: Evidence) -> dict:
    """{(model, setting, method): {task: (drop %, lo, hi)}} against the same model's FP."""
    return {k: {t: ev.drop(*k, t) for t in TASKS} for k in ev.agg if k[2] != "fp" and (k[0], "fp", "fp") in ev.agg}


def _sorted_keys(keys) -> list:
    return sorted(keys, key=lambda k: (k[0], ORDER.index(k[1:]) if k[1:] in ORDER else -1))


def table_rows(agg: dict, dr: dict) -> list[dict]:
    """The CSV: accuracy (mean over seeds) and per-seed min / max, drop with CI and the seed's drop, per task."""
    rows = []
    for key in _sorted_keys(agg):
        d, seed = agg[key], SEED.get(key)
        row = dict(model=key[0], setting=key[1], method=key[2], seeds=d["qa"].shape[1])
        for t in TASKS:
            per_seed = 100 * d[t].mean(0)
            row |= {f"{t}_acc": round(float(per_seed.mean()), 2), f"{t}_acc_min": round(float(per_seed.min()), 2),
                    f"{t}_acc_max": round(float(per_seed.max()), 2)}
            drop = (round(v, 2) for v in dr[key][t]) if key in dr else (None, None, None)
            row[f"{t}_drop"], row[f"{t}_lo"], row[f"{t}_hi"] = drop
            row[f"{t}_seed_drop"] = None if seed is None else seed[TASKS.index(t)]
        rows.append(row)
    return rows


def _spread(agg: dict) -> tuple[list[str], tuple[float, str]]:
    """Per-seed accuracy range of every row with several calibration seeds, and the largest range."""
    lines, worst = [], (0.0, "")
    for key in _sorted_keys(k for k in agg if agg[k]["qa"].shape[1] > 1):
        cells = []
        for t in TASKS:
            acc = 100 * agg[key][t].mean(0)
            rng = float(acc.max() - acc.min())
            worst = max(worst, (rng, f"{key[0]} {key[1]} {NAME[key[2]]} {LABEL[t]}"))
            cells.append(" / ".join(f"{a:.1f}" for a in acc.tolist()) + f" ({rng:.1f})")
        lines.append(f"| {key[0]} | {key[1]} | {NAME[key[2]]} | " + " | ".join(cells) + " |")
    return lines, worst


def write_report(jsonl, out_stem=None, extra_md: str = "") -> Path:
    """Write <stem>.csv, <stem>.md and <stem>.png next to the JSONL (or at out_stem); returns the .md path."""
    jsonl = Path(jsonl)
    rows = load_results(jsonl)
    stem = Path(out_stem) if out_stem else jsonl.with_suffix("")
    ev = Evidence(aggregate(rows))
    dr = drops(ev)
    table = table_rows(ev.agg, dr)
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in table for k in r)))
        w.writeheader()
        w.writerows(table)
    outliers_json = jsonl.parent / "dllm_outliers.json"
    o = json.loads(outliers_json.read_text()) if outliers_json.is_file() else None
    md = [INTRO, *_run_section(jsonl, rows), DEVIATIONS, "", *_fp_section(ev), *_findings_section(ev, findings(ev, o)),
          *_drop_section(table, dr, ev, stem.with_suffix(".png").name), *_spread_section(ev.agg),
          *_comparison_section(ev), extra_md or _extras(jsonl.parent)]
    stem.with_suffix(".md").write_text("\n".join(md))
    _figure(dr, ev, stem.with_suffix(".png"))
    return stem.with_suffix(".md")


INTRO = """# Diffusion-LLM PTQ study in miniature

A tiny LLaDA-style masked diffusion LM (`models/dllm/`, 5.4 M parameters, Base and Instruct), three task families (QA
by Monte-Carlo likelihood, arithmetic by generation + exact match, toy-language code by generation + pass@1) and the
PTQ grid of Lin et al. (arXiv 2508.14896, "the seed"): RTN / GPTQ / AWQ at W4A16 and W3A16 (g128, asymmetric), RTN /
SmoothQuant / QuaRot / DuQuant at W8A8 and W4A4 (per-channel weights, per-token dynamic activations, Q/K/V
quantized), all seven block linears quantized, embedding and head FP, 128 clean calibration sequences of 128 tokens.
Conventions: `qsched_core/dllm/study.py`; spec: `dllm_ptq.md` sections 1-5. FP and every quantized model see the same
items, prompts and Monte-Carlo mask draws (paired). RTN is not in the seed's tables: it is the no-calibration
baseline every method should beat.
"""
DEVIATIONS = """**Deviations from the seed.** (1) GPTQ weights asymmetric (the seed's table; its code ran AutoGPTQ's
symmetric default). (2) QuaRot rotates each linear input online (`quant/quarot.py`) instead of fusing one rotation
into the residual stream; the arithmetic is the same rotation of every quantized input. (3) DuQuant fits its
rotations on the calibration rows with the largest |x| and takes the *column* of the largest entry (the paper's
description), not the mean sequence / row index of the code. (4) AWQ inspects each group's own linear outputs. (5)
32 MC draws for likelihoods (the seed: 128), 128-token sequences (the model's context). (6) g128 on d_model = 256
leaves 2 groups per row of q/k/v/o/gate/up (6 for down). (7) One task per category, not two to six; a 5.4
M-parameter model, not 8 B."""


def _run_section(jsonl: Path, rows: list[dict]) -> list[str]:
    n_items = sorted({len(r["items"]["qa"]) for r in rows if "items" in r})
    seeds = sorted({r["seed"] for r in rows if r.get("method") not in ("fp", "rtn") and "error" not in r})
    errors = [r["key"] for r in rows if "error" in r]
    return [
        "## The run", "",
        f"- `{jsonl.name}`: {len(rows)} jobs ({len(errors)} failed), {' / '.join(map(str, n_items))} held-out items "
        f"per task, calibration seeds {', '.join(map(str, seeds))} (RTN needs no data and runs once, FP once), 32 "
        "Monte-Carlo mask draws per QA option.",
        *provenance(jsonl, rows),
        "- Commands are rebuilt from each log's first line (the run's `StudyConfig`) with this repo's paths. A run "
        "resumes the JSONL it is given (jobs already there are skipped), which is how the second run completed the "
        "first; to rerun the whole grid on a CUDA machine, move the JSONL away and run the last command. This report: "
        "`python scripts/dllm_study.py --report-only` (part of `make tables`; seconds on a CPU, no GPU).", ""]


def _fp_section(ev: Evidence) -> list[str]:
    low = "; ".join(f"{m.capitalize()} {LABEL[t]} (FP {a:.1f} %)" for m, t, a in ev.unreadable()) or "none"
    fp = [f"| {m} | " + " | ".join("{:.1f} [{:.1f}, {:.1f}]".format(*accuracy_ci(ev.fp(m, t))) for t in TASKS) +
          " | " + " | ".join(SEED_FP[m]) + " |" for m in ("base", "instruct") if (m, "fp", "fp") in ev.agg]
    return [
        "## FP accuracy (%, 95 % bootstrap CI over items)", "",
        "| model | QA | math | code | seed QA (6 / 5 tasks) | seed math | seed code |", "|---|---|---|---|---|---|---|",
        *fp, "",
        f"† **Below the floor** (FP < {FLOOR:.0f} %): {low}. So few items are right that one relative-drop point is a "
        "handful of items and the intervals span tens of points: these cells are printed, marked †, and not "
        "interpreted; no verdict uses them.", ""]


def _findings_section(ev: Evidence, found) -> list[str]:
    low = [f"{m.capitalize()} {LABEL[t]}" for m, t, _ in ev.unreadable()]
    return [
        "## The seed's findings, re-measured", "",
        "Rules (`qsched_core/dllm/findings.py`): readable cells only; a difference counts when its 95 % paired "
        "interval excludes 0; the seed's buckets: < 1 % negligible, 1-4 % moderate, > 4 % significant; collapse = a "
        "drop above 50 %. Numbers are relative drops in % (mean over calibration seeds) unless marked as points.", "",
        "| finding (seed) | here | evidence |", "|---|---|---|", *[f"| {c} | **{v}** | {e} |" for c, v, e in found], "",
        "**What this model cannot test.** " + (f"{', '.join(low)}: near the floor, so the seed's Base-math examples "
                                               "(finding 1: GPTQ W3 loses 15.7 %; finding 6: Base loses 10-16 % at W3 "
                                               "where Instruct loses 5 %) have no counterpart here. " if low else "") +
        "Finding 7 needs a Dream-like model. Only one task per category, so a category drop is one task's drop.", "",
        "**Other significant differences** (points of FP accuracy, drop(A) - drop(B), < 0: A loses less; all "
        "comparisons are in the last table):", "", *(other_differences(ev) or ["- none"]), ""]


def _drop_section(table: list[dict], dr: dict, ev: Evidence, png: str) -> list[str]:
    low = {(m, t) for m, t, _ in ev.unreadable()}

    def cell(r, t):
        if r[f"{t}_drop"] is None:
            return "– | –"
        seed = "–" if r[f"{t}_seed_drop"] is None else r[f"{t}_seed_drop"]
        return f"{ci(dr[(r['model'], r['setting'], r['method'])][t])}{' †' if (r['model'], t) in low else ''} | {seed}"
    lines = [f"| {r['model']} | {r['setting']} | {NAME.get(r['method'], 'FP')} | {r['seeds']} | " +
             " | ".join(f"{r[f'{t}_acc']:.1f}" for t in TASKS) + " | " + " | ".join(cell(r, t) for t in TASKS) + " |"
             for r in table]
    return [
        "## Accuracy and relative drop per category", "",
        "Accuracy: mean over calibration seeds. Drop = (FP - Q) / FP in %, **lower is better** (negative: the "
        "quantized model scored higher); quantized per-item scores averaged over seeds, 95 % paired bootstrap CI over "
        "items. \"seed\" = the seed's LLaDA-8B drop for the same model, setting and method (– = not run there).", "",
        "| model | setting | method | seeds | QA acc | math acc | code acc | QA drop [95 % CI] | seed | math drop "
        "[95 % CI] | seed | code drop [95 % CI] | seed |", "|" + "---|" * 13, *lines, "",
        f"![relative drops]({png})", ""]


def _spread_section(agg: dict) -> list[str]:
    spread, worst = _spread(agg)
    return [
        "## Spread over calibration seeds", "",
        "Accuracy (%) of each calibration seed (0 / 1 / 2) and, in parentheses, max - min in points. The intervals "
        "above cover item sampling only; this is the other source of variation.", "",
        "| model | setting | method | QA | math | code |", "|---|---|---|---|---|---|", *spread, "",
        f"Largest seed-to-seed range: {worst[0]:.1f} points ({worst[1]}).", ""]


def _comparison_section(ev: Evidence) -> list[str]:
    cells = ev.cells()
    fmt = lambda g: ("**" + ci(g) + "**") if sig(g) else ci(g)  # noqa: E731
    comp = [f"| {label} | " + " | ".join(fmt(g[c]) if c in g else "–" for c in cells) + " |"
            for label, g in comparison_rows(ev)]
    return [
        "## Paired comparisons between methods", "",
        "drop(A) - drop(B) in points of FP accuracy (< 0: A loses less), 95 % bootstrap CI resampling items jointly "
        "(`evaluate.paired_gap`); **bold**: the interval excludes 0. Readable cells only.", "",
        "| A - B | " + " | ".join(f"{c[0].capitalize()} {LABEL[c[1]]}" for c in cells) + " |",
        "|" + "---|" * (len(cells) + 1), *comp, ""]


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
                  "`python scripts/dllm_study.py --analysis`. The four largest linear inputs of each model:", "", *lines,
                  "", f"What the activation quantizer of `{o['effect_linear']}` sees after each W4A4 method's transforms "
                  f"(`dllm_outliers_methods.png`):", "", *eff, ""]
    sp = results / "dllm_cpu_speed.json"
    if sp.is_file():
        s = json.loads(sp.read_text())["base"]
        parts += ["## Speed on the CPU", "", f"{s['tokens_per_s']} generated tokens/s: {s['prompts']} arithmetic prompts "
                  f"batched, gen_len {s['gen_len']} = {s['forward_passes']} full forward passes, fp32, {s['threads']} "
                  f"torch threads on a shared 2-core {s['cpu']} CPU (torch {s['torch']}), {s['seconds']} s.", ""]
    return "\n".join(parts)


COLORS = {"rtn": "0.6", "gptq": "tab:blue", "awq": "tab:orange", "smoothquant": "tab:red", "quarot": "tab:green",
          "duquant": "tab:purple"}


def plot_drops(dr: dict, ev: Evidence | None = None, xmax: float = 45.0, n_items: int = 500):
    """2 x 3 panels (model x task): each row's relative drop with its 95 % CI, the seed's drop as a black diamond."""
    import matplotlib.pyplot as plt
    keys = [k for k in ORDER if any((m,) + k in dr for m in ("base", "instruct"))]
    readable = ev.cells() if ev else None
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), sharey=True)
    for i, model in enumerate(("base", "instruct")):
        for j, t in enumerate(TASKS):
            ax, ys = axes[i, j], range(len(keys))[::-1]
            for y, (s, m) in zip(ys, keys):
                d = dr.get((model, s, m), {}).get(t)
                if d:
                    ax.barh(y, d[0], color=COLORS[m], height=0.7)
                    ax.errorbar(d[0], y, xerr=[[d[0] - d[1]], [d[2] - d[0]]], color="k", lw=0.8, capsize=2)
                seed = SEED.get((model, s, m))
                if seed is not None:
                    v = seed[TASKS.index(t)]
                    ax.plot(min(v, xmax - 1), y, "D", color="k", ms=4, mfc="white" if v > xmax else "k")
                    if v > xmax:
                        ax.annotate(f"{v:.0f}", (xmax - 1, y), xytext=(-4, 0), textcoords="offset points",
                                    ha="right", va="center", fontsize=7)
            ax.axvline(0, color="k", lw=0.6)
            ax.axvline(4, color="0.5", lw=0.6, ls=":")
            for b in [n for n in range(1, len(keys)) if keys[n][0] != keys[n - 1][0]]:
                ax.axhline(len(keys) - b - 0.5, color="0.8", lw=0.6)  # between settings
            ax.set_xlim(-20, xmax)
            title = f"{model.capitalize()}, {LABEL[t]}"
            if readable is not None and (model, t) not in readable:
                ax.set_facecolor("0.93")
                title += f": FP {100 * float(ev.fp(model, t).mean()):.0f} %, near floor, not interpreted"
            ax.set_title(title, fontsize=10)
            if i == 1:
                ax.set_xlabel("relative drop vs FP (%), lower is better")
    axes[0, 0].set_yticks(list(range(len(keys)))[::-1], [f"{s.upper()} {NAME[m]}" for s, m in keys])
    for ax in axes[:, 0]:
        ax.tick_params(axis="y", labelsize=8)
    handles = [plt.Line2D([], [], marker="D", color="k", ls="", ms=4, label="the seed's drop (LLaDA-8B)"),
               plt.Line2D([], [], marker="D", color="k", mfc="white", ls="", ms=4,
                          label="the seed's drop, beyond the axis (value printed)"),
               plt.Line2D([], [], color="0.5", ls=":", label="4 %: the seed's 'significant' bucket starts")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Tiny dLLM: relative accuracy drop of each PTQ method vs FP (bars: mean over calibration seeds, "
                 f"whiskers: 95 % paired CI over {n_items} items)", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _figure(dr: dict, ev: Evidence, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plot_drops(dr, ev, n_items=next(iter(ev.agg.values()))["qa"].shape[0] if ev.agg else 0)
    fig.savefig(path, dpi=100)
    plt.close(fig)
