"""The notebook-02 plots render headless and reject bad input with a clear message."""
import io

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from qsched_core import viz

matplotlib.use("Agg")


def renders(fig) -> bool:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return isinstance(fig, Figure) and buf.tell() > 1000


def test_plot_error_maps():
    ref = torch.randn(16, 8)
    fig = viz.plot_error_maps({"rtn": (0.1 * torch.randn(16, 8), ref), "raw": torch.rand(16, 8)}, title="t")
    assert renders(fig) and "rel. error" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="must be 2-D"):
        viz.plot_error_maps({"bad": torch.randn(3)})
    with pytest.raises(ValueError, match="maps is empty"):
        viz.plot_error_maps({})


def test_plot_ptq_choice():
    fp = torch.rand(2, 3, 16, 16)
    results = {("rtn", "w4a8"): dict(images=torch.rand(2, 3, 16, 16), error=0.031)}
    fig = viz.plot_ptq_choice(results, fp, "rtn", "w4a8")
    assert renders(fig) and "0.0310" in fig.get_suptitle()
    with pytest.raises(ValueError, match=r"no run for \('gptq', 'w4a8'\); available"):
        viz.plot_ptq_choice(results, fp, "gptq", "w4a8")
