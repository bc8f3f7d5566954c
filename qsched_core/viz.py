"""Plotting functions for the notebooks: each returns a matplotlib Figure and needs no widgets.

Widgets only wrap these functions (`interact(plot_quant_error, w=fixed(W), bits=(2, 8))`), so every plot
also renders headless under the Agg backend, in tests and in `make reproduce`. Figures are built with
`matplotlib.figure.Figure` rather than pyplot: nothing is left open in a global figure manager, and a
notebook shows each figure exactly once (as the cell's value).
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from .checks import check_finite, check_int
from .quant.primitives import choose_qparams, dequantize, quant_error, quantize
from .quant.stats import ActStats

BITS_RANGE = tuple(range(2, 9))


def demo_weight(n: int = 64, k: int = 256, outliers: int = 8, seed: int = 0) -> torch.Tensor:
    """A seeded (n, k) weight like a trained layer's: Gaussian, std 0.02, plus a few 10x outliers."""
    check_int(n, "n", 1), check_int(k, "k", 1), check_int(outliers, "outliers", 0)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.02
    idx = torch.randint(0, n * k, (outliers,), generator=g)
    w.view(-1)[idx] *= 10.0
    return w


def _to_np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_quant_error(w: torch.Tensor | None = None, bits: int = 4, group_size: int | None = 32,
                     symmetric: bool = True) -> Figure:
    """Three panels for one weight matrix: the values of its widest group with that group's quantization
    levels, that group's quantizer w -> w_hat (rounding steps, clipping), and relative error against bits."""
    w = demo_weight() if w is None else w.detach().float()
    scale, zero = choose_qparams(w, bits, group_size, symmetric)
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    ax_hist, ax_err, ax_bits = fig.subplots(1, 3)

    # 1. the group with the widest range, and its 2^bits levels
    n_groups = scale.shape[-1]
    groups = w.reshape(*w.shape[:-1], n_groups, -1)  # (..., K) -> (..., n_groups, G)
    g_idx = int(scale.flatten().argmax()) if scale.numel() > 1 else 0  # widest range = largest scale
    vals = groups.reshape(-1, groups.shape[-1])[g_idx] if scale.numel() > 1 else w.flatten()
    s, z = float(scale.flatten()[g_idx]), int(zero.flatten()[g_idx])
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    ax_hist.hist(_to_np(vals), bins=60, color="tab:blue", alpha=0.7)
    for level in range(lo, hi + 1):
        ax_hist.axvline((level - z) * s, color="tab:red", lw=0.6, alpha=0.6)
    ax_hist.set(title=f"widest group and its {2**bits} levels", xlabel="value", ylabel="count")

    # 2. the quantizer of that group as a function: a staircase of step s, flat where values are clipped
    span = max(abs(float(vals.min())), abs(float(vals.max())), 1e-12) * 1.3
    xs = torch.linspace(-span, span, 801)[None]  # (1, 801), quantized with the group's own (s, z)
    qp = (torch.tensor([[s]]), torch.tensor([[z]], dtype=torch.int32))
    ax_err.plot(_to_np(xs[0]), _to_np(dequantize(quantize(xs, *qp, bits, symmetric), *qp)[0]), lw=1.2)
    ax_err.plot(_to_np(vals), _to_np(dequantize(quantize(vals[None], *qp, bits, symmetric), *qp)[0]), "k.", ms=3)
    ax_err.set(title=f"its quantizer, step s = {s:.3g}", xlabel="w", ylabel="w_hat")

    # 3. relative error ||w_hat - w|| / ||w|| for every bit-width at this granularity
    errs = [quant_error(w, b, group_size, symmetric) for b in BITS_RANGE]
    ax_bits.semilogy(BITS_RANGE, errs, "o-")
    ax_bits.semilogy([bits], [errs[bits - BITS_RANGE[0]]], "r*", ms=14)
    ax_bits.set(title="relative error vs bits (lower is better)", xlabel="bits", ylabel="||w_hat - w|| / ||w||")
    gran = {None: "per-tensor", -1: "per-channel"}.get(group_size, f"group {group_size}")
    fig.suptitle(f"int{bits} {'symmetric' if symmetric else 'asymmetric'}, {gran}: "
                 f"relative error {errs[bits - BITS_RANGE[0]]:.2%}")
    return fig


def plot_error_curves(x_values, curves: dict[str, list[float]], xlabel: str = "bits",
                      ylabel: str = "relative error", title: str = "", logy: bool = True) -> Figure:
    """One line per label in `curves`, all against `x_values` (e.g. error vs bits per granularity)."""
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for label, ys in curves.items():
        if len(ys) != len(x_values):
            raise ValueError(f"curve {label!r} has {len(ys)} points but x_values has {len(x_values)}")
        ax.plot(list(x_values), ys, "o-", label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    return fig


def plot_outlier_channels(stats: dict[str, ActStats], layers: list[str] | None = None,
                          top_k: int = 3) -> Figure:
    """Max |x| per input channel, one panel per layer, with the top-k outlier channels in red."""
    names = list(stats) if layers is None else layers
    missing = [n for n in names if n not in stats]
    if missing or not names:
        raise ValueError(f"layers {missing or names} not in stats; available: {list(stats)}")
    fig = Figure(figsize=(4.2 * len(names), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        amax = _to_np(stats[name].channel_absmax)
        top = stats[name].top_channels(top_k)
        colors = np.where(np.isin(np.arange(amax.size), top), "tab:red", "tab:blue")  # outliers in red
        ax.bar(np.arange(amax.size), amax, color=colors, width=1.0)
        ax.set(title=f"{name}: top {top}", xlabel="input channel", ylabel="max |x|")
    return fig


def show_images(images, titles: list[str] | None = None, ncols: int = 4) -> Figure:
    """A grid of images (B, 3, H, W) with values in [0, 1] (tensor or array), optional titles."""
    imgs = _to_np(images)
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3):
        raise ValueError(f"images have shape {imgs.shape}; pass (B, 3, H, W) (or (B, 1, H, W))")
    check_finite(imgs, "images", "the sampler or decoder diverged; a NaN pixel would be drawn as a valid colour")
    if imgs.min() < -1e-3 or imgs.max() > 1 + 1e-3:
        raise ValueError(f"images span [{imgs.min():.3g}, {imgs.max():.3g}]; map them to [0, 1] first "
                         f"(e.g. (x + 1) / 2 for VAE outputs)")
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"{len(titles)} titles for {len(imgs)} images; pass one title per image")
    ncols = max(1, min(ncols, len(imgs)))
    nrows = -(-len(imgs) // ncols)  # ceil division
    fig = Figure(figsize=(2.2 * ncols, 2.3 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(imgs):
            ax.imshow(np.clip(imgs[i].transpose(1, 2, 0), 0, 1).squeeze(), cmap="gray")  # CHW -> HWC
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    return fig


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


# ------------------------------------------------------------------------------------ Q-Sched (notebook 03)
def plot_search(result, overlays=(), metric: str = "jaq", title: str = "") -> Figure:
    """A search's `metric` over the (start_eps, start_x) grid, argmax starred and the stock (1, 1) circled; the
    points that other searches evaluated (`overlays`, SearchResults) on top, gradient iterates joined in order."""
    from .search import SearchConfig

    axis = SearchConfig(**result.config).axis()
    values = result.grid_array(metric)  # (n_x, n_eps), rows = start_x; NaN where not evaluated
    best = result.best
    head = title or f"{metric.upper()} of {result.metadata.get('preset', '')} at {result.config['num_steps']} steps"
    fig = plot_heatmap(axis, axis, values, xlabel="start_eps  (c^eps at the first step)",
                       ylabel="start_x  (c^x at the first step)", mark_argmax=False,
                       title=f"{head}\nbest {metric.upper()} {best[metric]:.4f} at start_x={best['start_x']:.3g}, "
                             f"start_eps={best['start_eps']:.3g}")
    ax = fig.axes[0]
    ax.plot(best["start_eps"], best["start_x"], "r*", ms=16, mec="white", label="best")
    ax.plot(1.0, 1.0, "o", mfc="none", mec="white", mew=2, ms=13, label="stock (1, 1)")
    for res, (marker, color) in zip(overlays, [("s", "tab:orange"), ("D", "tab:pink"), ("^", "tab:cyan")]):
        eps, x = [p["start_eps"] for p in res.points], [p["start_x"] for p in res.points]
        style = marker + ("-" if res.method == "gradient" else "")
        ax.plot(eps, x, style, color=color, mec="black", ms=6, lw=1,
                label=f"{res.method}: {len(res.points)} points")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=7, frameon=False)
    return fig


def qsched_panel(pipe, scorer, prompts, start_x: float = 1.0, start_eps: float = 1.0, num_steps: int = 4,
                 guidance_scale: float = 4.0, seed: int = 0, k: float | None = None, title: str = "") -> Figure:
    """The same seeded images of `pipe` under the Q-Sched ramps starting at (start_x, start_eps), each titled
    with its own TC / IQ / JAQ and the set's JAQ above (the scorer's k unless `k` is given); no widgets needed."""
    from dataclasses import replace

    from .sampling import sample_lcm
    from .sched import QSchedCoefficients

    prompts = list(prompts)
    scorer = scorer if k is None else replace(scorer, k=k)
    with torch.no_grad():
        images = sample_lcm(pipe, prompts, num_steps=num_steps, guidance_scale=guidance_scale,
                            generator=torch.Generator().manual_seed(seed),
                            coeffs=QSchedCoefficients(start_x, start_eps))  # (B, 3, H, W)
        each = [scorer(images[i:i + 1], [p]) for i, p in enumerate(prompts)]
        total = scorer(images, prompts)
    fig = show_images(images, [f"TC {s['tc']:.3f}  IQ {s['iq']:.3f}\nJAQ {s['jaq']:.3f}" for s in each],
                      ncols=len(prompts))
    fig.suptitle(f"{title + ': ' if title else ''}c^x_0 = {start_x:.3f}, c^eps_0 = {start_eps:.3f}, {num_steps} "
                 f"steps | set JAQ {total['jaq']:.4f} = TC {total['tc']:.4f} + {scorer.k:g} x IQ {total['iq']:.4f}",
                 fontsize=9)
    return fig


def plot_metric_vs_steps(rows: list[dict], metrics=("fid", "clip_iqa", "acc_objects"), methods=None) -> Figure:
    """One panel per metric: value against sampling steps, one line per method, 95% CI as error bars.

    rows: `evaluate.summary_rows` output (keys method, steps, <metric>, <metric>_lo, <metric>_hi).
    """
    methods = methods or list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(4.4 * len(metrics), 3.6), layout="constrained")
    for ax, metric in zip(np.atleast_1d(fig.subplots(1, len(metrics))), metrics):
        for m in methods:
            pts = sorted((r["steps"], r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"])
                         for r in rows if r["method"] == m)
            if pts:
                s, v, lo, hi = map(np.array, zip(*pts))
                yerr = np.clip([v - lo, hi - v], 0, None)  # a bootstrap FID interval may sit above the value
                ax.errorbar(s, v, yerr=yerr, marker="o", capsize=3, label=m,
                            ls="--" if m.startswith("naive") else "-")
        ax.set(xlabel="steps", title=metric, xticks=sorted({r["steps"] for r in rows}))
    fig.axes[0].legend(fontsize=7)
    return fig


def plot_paired_diffs(rows: list[dict], metric: str = "d_fid", title: str = "") -> Figure:
    """Forest plot of paired differences a - b with 95% CIs (`evaluate.paired_diffs` rows); 0 marked."""
    labels = [f"{r['comparison']} ({r['steps']} steps)" for r in rows]
    v = np.array([r[metric] for r in rows])
    lo, hi = np.array([r[f"{metric}_lo"] for r in rows]), np.array([r[f"{metric}_hi"] for r in rows])
    fig = Figure(figsize=(7.5, 0.8 + 0.32 * len(rows)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    ax.errorbar(v, y, xerr=np.clip([v - lo, hi - v], 0, None), fmt="o", capsize=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(yticks=y, yticklabels=labels, xlabel=f"{metric} (a - b), 95% CI", title=title)
    ax.tick_params(axis="y", labelsize=7)
    return fig


# ------------------------------------------------------------------------------------ PTQ methods (notebook 02)
def plot_error_maps(maps: dict, xlabel: str = "output channel", ylabel: str = "token", title: str = "") -> Figure:
    """|error| heatmaps side by side on one colour scale, each panel titled with its relative error if given.

    `maps` maps a label to an (R, C) error tensor, or to (error, reference) so the title shows ||error|| / ||ref||.
    """
    if not maps:
        raise ValueError("maps is empty; pass {label: error (R, C)} or {label: (error, reference)}")
    pairs = {k: v if isinstance(v, tuple) else (v, None) for k, v in maps.items()}
    errs = {k: np.abs(_to_np(e)) for k, (e, _) in pairs.items()}
    bad = {k: e.shape for k, e in errs.items() if e.ndim != 2}
    if bad:
        raise ValueError(f"error maps must be 2-D (rows, columns); got {bad}")
    vmax = max(float(e.max()) for e in errs.values()) or 1.0
    fig = Figure(figsize=(3.4 * len(errs) + 0.8, 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(errs), sharey=True))
    for ax, (label, e) in zip(axes, errs.items()):
        img = ax.imshow(e, aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ref = pairs[label][1]
        rel = f"\nrel. error {np.linalg.norm(e) / max(np.linalg.norm(_to_np(ref)), 1e-12):.3f}" if ref is not None else ""
        ax.set(title=f"{label}{rel}", xlabel=xlabel)
    axes[0].set_ylabel(ylabel)
    fig.colorbar(img, ax=list(axes), shrink=0.9, label="|error|")
    if title:
        fig.suptitle(title)
    return fig


def plot_ptq_choice(results: dict, fp_images, method: str, preset: str) -> Figure:
    """FP images (top row) over those of one (method, preset) run, titled with its noise-prediction error.

    `results[(method, preset)]` holds {"images": (B, 3, H, W) in [0, 1], "error": float}; a widget picks the key.
    """
    if (method, preset) not in results:
        raise ValueError(f"no run for ({method!r}, {preset!r}); available: {sorted(results)}")
    run = results[(method, preset)]
    fp = _to_np(fp_images)
    images = np.concatenate([fp, _to_np(run["images"])])
    titles = ["FP"] * len(fp) + [f"{method} {preset}"] * len(fp)
    fig = show_images(images, titles, ncols=len(fp))
    fig.suptitle(f"{method} at {preset}: UNet output error {run['error']:.4f} (relative, vs FP)")
    return fig


# ------------------------------------------------------------------------------------ course figures (notebooks 00-02)
def _nice_gain(diffs: np.ndarray) -> int:
    """The power of two that maps the 99th percentile of |difference| to about 1 (at least 1, at most 64)."""
    p99 = float(np.percentile(diffs, 99)) if diffs.size else 0.0
    return int(min(64, max(1, 2 ** np.floor(np.log2(1 / p99))))) if p99 > 0 else 64


def image_grid(rows: dict, col_titles: list[str] | None = None, caption: str = "", size: float = 1.4) -> Figure:
    """Images in labelled rows: `rows` maps a row label to images (B, 3|1, H, W) in [0, 1], one column per image.

    Row labels sit on the left, `col_titles` (e.g. the prompts) above the first row, `caption` under the grid.
    """
    if not rows:
        raise ValueError("rows is empty; pass {row label: images (B, 3, H, W)}")
    arrays = {k: _to_np(v) for k, v in rows.items()}
    widths = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(widths.values())) != 1 or any(a.ndim != 4 for a in arrays.values()):
        raise ValueError(f"every row needs the same number of (B, C, H, W) images; got {widths}")
    ncols = next(iter(widths.values()))
    if col_titles is not None and len(col_titles) != ncols:
        raise ValueError(f"{len(col_titles)} col_titles for {ncols} columns; pass one per column")
    fig = Figure(figsize=(size * ncols + 1.2, size * len(rows) + 0.4 + 0.25 * bool(caption)), layout="constrained")
    axes = np.array(fig.subplots(len(rows), ncols, squeeze=False))
    for r, (label, imgs) in enumerate(arrays.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c].transpose(1, 2, 0), 0, 1).squeeze(), cmap="inferno", vmin=0, vmax=1,
                      interpolation="nearest")  # CHW -> HWC; one channel: a difference map
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c], fontsize=6.5)
    if caption:
        fig.supxlabel(caption, fontsize=8)
    return fig


def show_differences(reference, others: dict, ref_label: str = "reference", col_titles: list[str] | None = None,
                     gain: int | None = None, caption: str = "", images: bool = True) -> Figure:
    """Images that look alike, each row followed by its |difference| to `reference`, amplified `gain` times.

    The difference rows are the per-pixel mean over RGB of |x - reference|, times `gain` (by default the power of
    two that makes the largest differences visible), on a dark-is-equal colour scale; each row label gives the
    mean |difference| in 8-bit grey levels (lower = closer to the reference). `images=False` draws only the
    reference and the difference rows (when the images themselves are shown elsewhere).
    """
    ref = _to_np(reference)
    diffs = {k: np.abs(_to_np(v) - ref).mean(1, keepdims=True) for k, v in others.items()}  # (B, 1, H, W)
    gain = gain or _nice_gain(np.concatenate([d.ravel() for d in diffs.values()]))
    rows = {ref_label: ref}
    for k, v in others.items():
        if images:
            rows[k] = _to_np(v)
        rows[f"|{k} - {ref_label}| x{gain}\nmean {255 * diffs[k].mean():.1f}/255"] = np.clip(diffs[k] * gain, 0, 1)
    note = f"difference rows: black = identical, yellow = differs by >= 1/{gain} of the range (lower is closer)"
    return image_grid(rows, col_titles, caption=f"{caption}\n{note}" if caption else note)


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
