"""Statistical figures: heatmaps, bars with bootstrap intervals (seaborn), metrics against steps, paired differences.

Every panel names its metric in words, with its unit and whether lower or higher is better (`METRICS`), so a
reader of a committed notebook or of results/*.png need not know the column names of the tables.
"""
from __future__ import annotations

import re
import textwrap

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .images import _to_np

# column -> (name, axis label with unit, which direction is better, factor to the axis unit)
METRICS = {
    "fid": ("FID", "FID (evaluator features, no unit)", "lower", 1.0),
    "clip_score": ("CLIPScore", "CLIPScore (100 x cosine)", "higher", 1.0),
    "clip_iqa": ("CLIP-IQA", "CLIP-IQA (P(good photo), 0-1)", "higher", 1.0),
    "acc_objects": ("attribute accuracy", "objects with every attribute right (%)", "higher", 100.0),
    "acc_single": ("accuracy, one-object scenes", "scenes fully right (%)", "higher", 100.0),
    "acc_two": ("accuracy, two-object scenes", "scenes fully right (%)", "higher", 100.0),
}
METRICS.update({f"d_{k}": (f"{name} difference", f"{name} a - b" + (" (points)" if f == 100 else ""), better, f)
                for k, (name, _, better, f) in list(METRICS.items())})
METRICS["d_acc"] = ("attribute accuracy difference", "attribute accuracy a - b (points)", "higher", 100.0)
FID_INTERVAL_NOTE = ("FID's interval: half-samples without replacement, spread rescaled to n images and centred on the "
                     "estimate (a with-replacement bootstrap would sit above it: duplicated images bias FID upwards)")


def metric_info(column: str) -> tuple[str, str, str, float]:
    """(name, axis label, "lower" / "higher" / "", factor) of a table column; the raw name if it is unknown."""
    return METRICS.get(column, (column, column, "", 1.0))


def plot_heatmap(grid_x, grid_y, values, xlabel: str = "x", ylabel: str = "y", title: str = "",
                 cmap: str = "viridis", mark_argmax: bool = True, fmt: str = ".3g") -> Figure:
    """Heatmap of values[i, j] at (grid_x[j], grid_y[i]), with the argmax marked (e.g. JAQ over c^x, c^eps)."""
    vals = _to_np(values).astype(float)
    gx, gy = _to_np(grid_x).ravel(), _to_np(grid_y).ravel()
    if vals.shape != (gy.size, gx.size):
        raise ValueError(f"values have shape {vals.shape}; expected (len(grid_y), len(grid_x)) = "
                         f"{(gy.size, gx.size)}")
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.subplots()
    mesh = ax.pcolormesh(gx, gy, vals, cmap=cmap, shading="nearest")  # cells centred on the grid points
    fig.colorbar(mesh, ax=ax)
    if mark_argmax:
        i, j = np.unravel_index(np.nanargmax(vals), vals.shape)
        ax.plot(gx[j], gy[i], "r*", ms=16, mec="white")
        best = f"max {vals[i, j]:{fmt}} at ({gx[j]:{fmt}}, {gy[i]:{fmt}})"
        title = f"{title}: {best}" if title else best
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return fig


def plot_centered_heatmap(values, row_labels, col_labels, center: float | None = 0.0, title: str = "",
                          cbar_label: str = "", xlabel: str = "", ylabel: str = "", fmt: str = ".2f") -> Figure:
    """Annotated seaborn heatmap on a diverging colour scale centred at `center` (e.g. a change vs a baseline);
    `center=None` gives a sequential scale (e.g. accuracies)."""
    import seaborn as sns

    vals = _to_np(values).astype(float)
    if vals.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values have shape {vals.shape}; expected (len(row_labels), len(col_labels)) = "
                         f"{(len(row_labels), len(col_labels))}")
    fig = Figure(figsize=(1.1 * len(col_labels) + 2.4, 0.5 * len(row_labels) + 1.6), layout="constrained")
    ax = fig.subplots()
    scale = dict(cmap="viridis")
    if center is not None:
        span = float(np.nanmax(np.abs(vals - center))) or 1.0
        scale = dict(cmap="RdBu_r", center=center, vmin=center - span, vmax=center + span)
    sns.heatmap(vals, ax=ax, annot=True, fmt=fmt, xticklabels=list(col_labels), yticklabels=list(row_labels),
                cbar_kws={"label": cbar_label}, **scale)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.tick_params(axis="y", rotation=0)
    return fig


def plot_bars(data, x: str, y: str, panel: str | None = None, better: dict | None = None, title: str = "",
              hue: str | None = None, points: bool = False) -> Figure:
    """seaborn bars: mean of `y` per `x` with a 95% bootstrap interval over the rows (e.g. images), one panel
    per value of the `panel` column, each titled with its name and `better[name]` ("higher" / "lower");
    `points` also draws every row as a dot (the spread behind the mean)."""
    import seaborn as sns

    names = list(dict.fromkeys(data[panel])) if panel else [y]
    fig = Figure(figsize=(0.9 * data[x].nunique() * len(names) + 2.5, 3.4), layout="constrained")
    for ax, name in zip(np.atleast_1d(fig.subplots(1, len(names))), names):
        rows = data[data[panel] == name] if panel else data
        sns.barplot(rows, x=x, y=y, hue=hue, ax=ax, errorbar=("ci", 95), seed=0, alpha=0.6 if points else 1.0)
        if points:
            sns.stripplot(rows, x=x, y=y, ax=ax, color="black", size=2.5, alpha=0.6, jitter=0.25)
        note = f" ({better[name]} is better)" if better and name in better else ""
        ax.set(title=f"{name}{note}", xlabel="", ylabel=name if panel else y)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
    if title:
        fig.suptitle(title)
    return fig


def _model_of(method: str) -> str:
    """"naive W4A8" / "Q-Sched W4A8" -> "W4A8", "FP + Q-Sched" -> "FP", "Q-Sched + GPTQ W4A8" -> "GPTQ W4A8": the
    model a table row runs."""
    return re.sub(r"^(naive |Q-Sched \+ |Q-Sched )| \+ Q-Sched$", "", method)


def plot_metric_vs_steps(rows: list[dict], metrics=("fid", "clip_iqa", "acc_objects"), methods=None,
                         caption: str | None = None) -> Figure:
    """One panel per metric: value against sampling steps, one line per method, its 95% interval as a bar.

    rows: `evaluate.summary_rows` output (keys method, steps, <metric>, <metric>_lo, <metric>_hi). Each panel is
    titled with the metric's name and whether lower or higher is better, its axis with the unit (`METRICS`).
    Intervals are drawn from lo to hi as they are, not as a symmetric error bar: FID's sits above the value,
    which the default caption explains.
    """
    methods = methods or list(dict.fromkeys(r["method"] for r in rows))
    models = list(dict.fromkeys(_model_of(m) for m in methods))  # one colour per model, naive and Q-Sched alike
    steps = sorted({r["steps"] for r in rows})
    fig = Figure(figsize=(4.2 * len(metrics) + 1.6, 3.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    dodge = np.linspace(-0.12, 0.12, len(methods)) if len(methods) > 1 else [0.0]
    for ax, metric in zip(axes, metrics):
        name, unit, better, f = metric_info(metric)
        for m, dx in zip(methods, dodge):
            pts = sorted((r["steps"], r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"])
                         for r in rows if r["method"] == m)
            if not pts:
                continue
            s, v, lo, hi = (np.array(c, dtype=float) for c in zip(*pts))
            x = np.log2(s) + dx  # steps 1, 2, 4, 8 evenly spaced; methods dodged so their bars do not overlap
            i = models.index(_model_of(m))  # more than 10 models: tab20, so no two models share a colour
            color = f"C{i}" if len(models) <= 10 else matplotlib.colormaps["tab20"](i % 20)
            ax.plot(x, v * f, "s-" if "Q-Sched" in m else "o--", color=color, ms=4, lw=1.2, label=m)
            ax.vlines(x, lo * f, hi * f, color=color, lw=1.6, alpha=0.7)
        ax.set(xticks=np.log2(steps), xticklabels=[str(s) for s in steps], xlabel="sampling steps", ylabel=unit,
               title=f"{name} ({better} is better)" if better else name)
        ax.grid(alpha=0.25)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    note = ("one colour per model; dashed: stock scheduler, solid: Q-Sched; bars: 95% bootstrap intervals over "
            "images") + ("; " + FID_INTERVAL_NOTE if "fid" in metrics else "")
    fig.supxlabel(textwrap.fill(note if caption is None else caption, int(15 * fig.get_figwidth())), fontsize=7.5)
    return fig


def plot_paired_diffs(rows: list[dict], metric: str = "d_fid", title: str = "") -> Figure:
    """Forest plot of paired differences a - b with their 95% intervals (`evaluate.paired_diffs` rows); 0 marked.

    A row whose interval excludes 0 is coloured by which side it favours (green: a is better, red: a is worse,
    by the metric's direction in `METRICS`), grey when the interval straddles 0.
    """
    if not rows:
        raise ValueError("rows is empty; pass evaluate.paired_diffs(...) rows or a results/*.paired.csv as records")
    name, unit, better, f = metric_info(metric)
    labels = [f"{r['comparison']} ({r['steps']} steps)" if "steps" in r else str(r["comparison"]) for r in rows]
    v, lo, hi = (np.array([r[k] for r in rows], dtype=float) * f for k in (metric, f"{metric}_lo", f"{metric}_hi"))
    sign = {"lower": -1, "higher": 1}.get(better, 0)
    verdict = np.where(lo > 0, 1, np.where(hi < 0, -1, 0)) * sign       # +1: a better, -1: a worse, 0: unclear
    colors = np.where(verdict > 0, "tab:green", np.where(verdict < 0, "tab:red", "tab:gray"))
    # wide enough for the longest label at 7 pt (about 0.065 in a character) next to a 4.5 in plot
    width = max(7.5, 4.5 + 0.065 * max(map(len, labels)))
    fig = Figure(figsize=(width, 1.4 + 0.32 * len(rows)), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.12)  # inches kept clear at the edges: the longest label must not touch them
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    ax.hlines(y, lo, hi, colors=colors, lw=2)
    ax.scatter(v, y, c=colors, s=22, zorder=3)
    ax.axvline(0, color="black", lw=0.8)
    side = {"lower": "left of 0: a better", "higher": "right of 0: a better"}.get(better, "")
    span = np.abs(np.r_[lo, hi])
    lin = float(np.median(span))
    scale = ""
    if lin > 0 and span.max() > 20 * lin:  # a few huge effects would squash the rest against 0
        ax.set_xscale("symlog", linthresh=lin, linscale=1.5)
        edge = 1.6 * span.max()
        ax.set_xlim(-edge if lo.min() < 0 else -lin, edge if hi.max() > 0 else lin)
        powers = 10.0 ** np.arange(np.ceil(np.log10(lin)), np.ceil(np.log10(edge)))
        ax.set_xticks(np.r_[-powers[::-1], 0, powers], [f"{v:g}" for v in np.r_[-powers[::-1], 0, powers]])
        scale = f"symmetric log scale, linear within ±{lin:.2g}"
    note = "; ".join(t for t in (side, scale) if t)
    ax.set(yticks=y, yticklabels=labels, xlabel=f"{unit}, 95% paired interval" + (f"\n({note})" if note else ""),
           title=textwrap.fill(title or f"paired {name}", int(9 * 4.5)))  # wrapped to the plot's width
    ax.tick_params(axis="y", labelsize=7)
    fig.supxlabel("green: a better, red: a worse (interval excludes 0); grey: no difference shown", fontsize=7.5)
    return fig


def plot_distributions(scores: dict, xlabel: str, title: str = "", better: str = "", bins: int = 30,
                       binrange: tuple[float, float] | None = None) -> Figure:
    """seaborn histograms of per-image scores, one per label of `scores` (label -> 1-D values), as % of each set;
    `binrange` fixes the axis (e.g. (0, 1) for a probability)."""
    import pandas as pd
    import seaborn as sns

    if not scores:
        raise ValueError("scores is empty; pass {label: per-image values}")
    data = pd.DataFrame([{"set": k, "value": float(x)} for k, v in scores.items() for x in _to_np(v).ravel()])
    fig = Figure(figsize=(6.2, 3.4), layout="constrained")
    ax = fig.subplots()
    sns.histplot(data, x="value", hue="set", bins=bins, binrange=binrange, stat="percent", common_norm=False,
                 element="step", ax=ax)
    if binrange is not None:
        ax.set_xlim(*binrange)
    ax.set(xlabel=xlabel + (f"  ({better} is better)" if better else ""), ylabel="% of the images in its set",
           title=title)
    return fig
