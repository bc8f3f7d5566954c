"""Smoke tests for the notebook plots: each returns a Figure that renders headless (Agg)."""
import io

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from qsched_core import viz
from qsched_core.quant import ActStats

matplotlib.use("Agg")


def renders(fig) -> bool:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return isinstance(fig, Figure) and buf.tell() > 1000


@pytest.mark.parametrize("group_size", [None, -1, 32])
def test_plot_quant_error(group_size):
    assert renders(viz.plot_quant_error(viz.demo_weight(16, 64), bits=3, group_size=group_size, symmetric=False))
    assert renders(viz.plot_quant_error())  # the widget default: a seeded demo weight


def test_plot_outlier_channels_and_error_curves():
    s = ActStats()
    s.update(torch.randn(32, 16) * torch.arange(1, 17.0))
    assert renders(viz.plot_outlier_channels({"fc": s, "fc2": s}, top_k=2))
    with pytest.raises(ValueError, match="'nope'"):
        viz.plot_outlier_channels({"fc": s}, layers=["nope"])
    assert renders(viz.plot_error_curves([2, 4, 8], {"per-tensor": [0.5, 0.1, 0.01], "g32": [0.3, 0.05, 0.004]}))
    with pytest.raises(ValueError, match="has 2 points"):
        viz.plot_error_curves([2, 4, 8], {"bad": [1.0, 2.0]})


def test_show_images():
    assert renders(viz.show_images(torch.rand(5, 3, 16, 16), titles=list("abcde"), ncols=3))
    with pytest.raises(ValueError, match=r"shape \(3, 16, 16\)"):
        viz.show_images(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="map them to"):
        viz.show_images(torch.rand(2, 3, 8, 8) * 2 - 1)


def test_plot_heatmap_marks_argmax():
    gx, gy = torch.linspace(0.8, 1.1, 4), torch.linspace(0.8, 1.2, 3)
    vals = torch.zeros(3, 4)
    vals[2, 1] = 1.0
    fig = viz.plot_heatmap(gx, gy, vals, xlabel="c_eps", ylabel="c_x", title="JAQ")
    assert renders(fig) and "at (0.9, 1.2)" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match=r"expected \(len\(grid_y\), len\(grid_x\)\) = \(3, 4\)"):
        viz.plot_heatmap(gx, gy, vals.T)
