"""Plotting functions for the notebooks: each returns a matplotlib Figure and needs no widgets.

Widgets only wrap these functions (`interact(plot_quant_error, w=fixed(W), bits=(2, 8))`), so every plot
also renders headless under the Agg backend, in tests and in `make reproduce`. Figures are built with
`matplotlib.figure.Figure` rather than pyplot: nothing is left open in a global figure manager, and a
notebook shows each figure exactly once (as the cell's value).

One module per kind of figure, all names re-exported here (`from qsched_core import viz; viz.show_images(...)`):
  images.py   image grids with row labels and captions, amplified difference maps, sweeps (every notebook)
  quant.py    a weight's quantizer, error curves, outlier channels, error maps (notebooks 01-02)
  stats.py    heatmaps, seaborn bars, metrics against steps, paired differences, score distributions (01-05)
  qsched.py   the JAQ surface and its change from the stock (1, 1), the live coefficient panel (03-04)
  kernels.py  GPU kernel timings read defensively from results/kernels.csv, speedups (07)
"""
from .images import image_grid, show_differences, show_images, show_sweep
from .kernels import gemm_times, plot_speedups, speedups, time_column
from .qsched import plot_jaq_gain, plot_search, qsched_panel
from .quant import (BITS_RANGE, demo_weight, plot_error_curves, plot_error_maps, plot_outlier_channels,
                    plot_ptq_choice, plot_quant_error)
from .stats import (METRICS, plot_bars, plot_centered_heatmap, plot_distributions, plot_heatmap,
                    plot_metric_vs_steps, plot_paired_diffs)

__all__ = ["BITS_RANGE", "METRICS", "demo_weight", "gemm_times", "image_grid", "plot_bars", "plot_centered_heatmap",
           "plot_distributions", "plot_error_curves", "plot_error_maps", "plot_heatmap", "plot_jaq_gain",
           "plot_metric_vs_steps", "plot_outlier_channels", "plot_paired_diffs", "plot_ptq_choice",
           "plot_quant_error", "plot_search", "plot_speedups", "qsched_panel", "show_differences", "show_images",
           "show_sweep", "speedups", "time_column"]
