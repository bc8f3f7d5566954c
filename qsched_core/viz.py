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

from .quant.primitives import choose_qparams, dequantize, quant_error, quantize
from .quant.stats import ActStats

BITS_RANGE = tuple(range(2, 9))


def demo_weight(n: int = 64, k: int = 256, outliers: int = 8, seed: int = 0) -> torch.Tensor:
    """A seeded (n, k) weight like a trained layer's: Gaussian, std 0.02, plus a few 10x outliers."""
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
    ax_bits.set(title="relative error vs bits", xlabel="bits", ylabel="||w_hat - w|| / ||w||")
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
