"""Quantization-error figures (notebooks 01-02): one weight's quantizer, error curves, outlier channels, error maps."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from ..checks import check_int
from ..quant.primitives import choose_qparams, dequantize, quant_error, quantize
from ..quant.stats import ActStats
from .images import _to_np, show_images

BITS_RANGE = tuple(range(2, 9))


def demo_weight(n: int = 64, k: int = 256, outliers: int = 8, seed: int = 0) -> torch.Tensor:
    """A seeded (n, k) weight like a trained layer's: Gaussian, std 0.02, plus a few 10x outliers."""
    check_int(n, "n", 1), check_int(k, "k", 1), check_int(outliers, "outliers", 0)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.02
    idx = torch.randint(0, n * k, (outliers,), generator=g)
    w.view(-1)[idx] *= 10.0
    return w


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
                      ylabel: str = "relative error", title: str = "", logy: bool = True, xticks=None) -> Figure:
    """One line per label in `curves`, all against `x_values` (e.g. error vs bits per granularity); `xticks`
    pins the ticks (e.g. `xticks=range(4)` for sampling steps, so no tick falls between two steps)."""
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for label, ys in curves.items():
        if len(ys) != len(x_values):
            raise ValueError(f"curve {label!r} has {len(ys)} points but x_values has {len(x_values)}")
        ax.plot(list(x_values), ys, "o-", label=label)
    if logy:
        ax.set_yscale("log")
    if xticks is not None:
        ax.set_xticks(list(xticks))
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
