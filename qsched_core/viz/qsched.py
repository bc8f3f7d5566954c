"""Q-Sched figures (notebooks 03-04): the JAQ surface over (start_x, start_eps) and the live coefficient panel."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .images import show_images
from .stats import plot_heatmap

OVERLAY_STYLES = [("s", "tab:orange"), ("D", "tab:pink"), ("^", "tab:cyan")]


def _overlay(ax, overlays, hollow: bool = False) -> None:
    """The points other searches evaluated (SearchResults), gradient iterates joined in their order; `hollow`
    markers leave the heatmap's numbers readable."""
    for res, (marker, color) in zip(overlays, OVERLAY_STYLES):
        eps, x = [p["start_eps"] for p in res.points], [p["start_x"] for p in res.points]
        style = dict(mfc="none", mec=color, mew=1.8, ms=12) if hollow else dict(mec="black", ms=6)
        ax.plot(eps, x, marker + ("-" if res.method == "gradient" else ""), color=color, lw=1,
                label=f"{res.method}: {len(res.points)} points", **style)


def plot_search(result, overlays=(), metric: str = "jaq", title: str = "") -> Figure:
    """A search's `metric` over the (start_eps, start_x) grid, argmax starred and the stock (1, 1) circled; the
    points that other searches evaluated (`overlays`, SearchResults) on top, gradient iterates joined in order."""
    from ..search import SearchConfig

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
    _overlay(ax, overlays)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=7, frameon=False)
    return fig


def plot_jaq_gain(result, overlays=(), metric: str = "jaq", clip_quantile: float = 0.5, title: str = "",
                  annotate: bool | None = None) -> Figure:
    """The change of `metric` from the stock scheduler, metric - metric(1, 1), over the (start_eps, start_x) grid.

    A diverging colour scale centred at 0 (white = as good as stock, blue = better, red = worse), clipped at the
    `clip_quantile` of |change| (but never below the winner's gain): the corners where the images break are then
    plain dark red (the colour bar's arrow says they go further) instead of stretching the scale until every cell
    near (1, 1) has one colour. The stock (1, 1) cell is boxed, the winner starred, each cell annotated with its
    change (grids up to 11x11), the cheaper searches' points (`overlays`) drawn on top.
    """
    from ..search import SearchConfig

    if not 0 < clip_quantile <= 1:
        raise ValueError(f"clip_quantile={clip_quantile} must be in (0, 1]; 1 = no clipping, 0.5 = the median")
    axis = SearchConfig(**result.config).axis()
    values = result.grid_array(metric)  # (n_x, n_eps), rows = start_x
    one = np.flatnonzero(np.isclose(axis, 1.0))
    if not one.size or np.isnan(values[one[0], one[0]]):
        raise ValueError(f"the grid {axis.tolist()} has no evaluated (1, 1) point to compare with; search a grid with "
                         "an odd grid_points around 1 (e.g. [0.8, 1.2] with 5 or 11 points)")
    stock = float(values[one[0], one[0]])
    delta, best = values - stock, result.best
    gain = best[metric] - stock
    span = max(float(np.nanquantile(np.abs(delta), clip_quantile)), abs(gain), 1e-9)
    fig = Figure(figsize=(6.6, 6.2), layout="constrained")
    ax = fig.subplots()
    mesh = ax.pcolormesh(axis, axis, delta, cmap="RdBu", vmin=-span, vmax=span, shading="nearest")
    below, above = np.nanmin(delta) < -span, np.nanmax(delta) > span
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get((below, above), "neither")
    fig.colorbar(mesh, ax=ax, extend=extend, shrink=0.85,
                 label=f"{metric.upper()} - {metric.upper()}(1, 1)   (blue: better than stock, red: worse)")
    if annotate if annotate is not None else len(axis) <= 11:
        for i, x in enumerate(axis):
            for j, e in enumerate(axis):
                if np.isfinite(delta[i, j]):
                    ax.text(e, x, f"{delta[i, j]:+.3f}".replace("0.", "."), ha="center", va="center",
                            fontsize=5.5 if len(axis) > 7 else 7.5,
                            color="white" if abs(delta[i, j]) > 0.6 * span else "black")
    step = float(axis[1] - axis[0])
    ax.add_patch(Rectangle((1 - step / 2, 1 - step / 2), step, step, fill=False, ec="black", lw=2.5,
                           label=f"stock (1, 1): {metric.upper()} {stock:.4f}"))
    ax.plot(best["start_eps"], best["start_x"], "*", color="gold", mec="black", ms=17, ls="none",
            label=f"best: {gain:+.4f} at ({best['start_x']:.3g}, {best['start_eps']:.3g})")
    _overlay(ax, overlays, hollow=True)
    ax.set(xticks=axis, yticks=axis, aspect="equal", xlabel="start_eps  (c^eps at the first step)",
           ylabel="start_x  (c^x at the first step)")
    ax.tick_params(labelsize=7)
    head = title or f"{metric.upper()} change from the stock sampler"
    ax.set_title(f"{head}\ncolours clipped at ±{span:.3g} (the {clip_quantile:.0%} quantile of |change|)", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=7, frameon=False)
    return fig


def qsched_panel(pipe, scorer, prompts, start_x: float = 1.0, start_eps: float = 1.0, num_steps: int = 4,
                 guidance_scale: float = 4.0, seed: int = 0, k: float | None = None, title: str = "") -> Figure:
    """The same seeded images of `pipe` under the Q-Sched ramps starting at (start_x, start_eps), each titled
    with its own TC / IQ / JAQ and the set's JAQ above (the scorer's k unless `k` is given); no widgets needed."""
    from dataclasses import replace

    from ..sampling import sample_lcm
    from ..sched import QSchedCoefficients

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
