"""Images side by side: grids with row labels and captions, and amplified difference maps.

Quantized and FP samples often look alike to the eye; `show_differences` and `show_sweep` put the per-pixel
|difference| under them, multiplied by a power of two (`gain`) chosen so that the largest differences are
visible, on a dark-is-equal colour scale. Every grid takes a caption that says what is compared with what.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from ..checks import check_finite


def _to_np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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


def show_sweep(images: dict, reference: str, row_labels: list[str] | None = None, gain: int | None = None,
               caption: str = "") -> Figure:
    """A sweep of one setting, one column per value: `images` maps a column label (e.g. "c^eps_0 = 0.9") to images
    (B, 3, H, W) of the same B prompts and noise. Under each prompt's row of images comes its |difference| to the
    `reference` column, amplified `gain` times; each column title gives its mean |difference| in grey levels."""
    if reference not in images:
        raise ValueError(f"reference={reference!r} is not a column; pass one of {list(images)}")
    arrays = {k: _to_np(v) for k, v in images.items()}
    ref = arrays[reference]
    if any(a.shape != ref.shape for a in arrays.values()):
        raise ValueError(f"every column needs images of one shape; got {({k: a.shape for k, a in arrays.items()})}")
    labels = row_labels or [f"prompt {b + 1}" for b in range(len(ref))]
    if len(labels) != len(ref):
        raise ValueError(f"{len(labels)} row_labels for {len(ref)} images per column; pass one per image")
    diffs = {k: np.abs(a - ref).mean(1, keepdims=True) for k, a in arrays.items()}  # (B, 1, H, W)
    gain = gain or _nice_gain(np.concatenate([d.ravel() for k, d in diffs.items() if k != reference]))
    rows = {}
    for b, label in enumerate(labels):
        rows[label] = np.stack([arrays[k][b] for k in arrays])                       # (columns, 3, H, W)
        rows[f"{label}:\n|x - x({reference})| x{gain}"] = np.clip(np.stack([diffs[k][b] for k in arrays]) * gain, 0, 1)
    titles = [f"{k}\nmean |diff| {255 * d.mean():.1f}/255" for k, d in diffs.items()]
    note = (f"difference rows: black = identical to the {reference} column, yellow = differs by >= 1/{gain} of the "
            "range")
    return image_grid(rows, titles, caption=f"{caption}\n{note}" if caption else note)
