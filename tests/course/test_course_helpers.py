"""Progress bars stay quiet under make test; the course figures render and refuse bad input with a fix."""
import io

import pandas as pd
import pytest
import torch

from qsched_core import viz
from qsched_core.progress import progress, show_progress


def renders(fig) -> bool:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.tell() > 1000


def test_progress_is_quiet_under_make_test(monkeypatch):
    monkeypatch.setenv("QSCHED_FAST", "1")
    assert not show_progress()
    bar = progress(range(3), desc="x")
    assert bar.disable and list(bar) == [0, 1, 2]
    monkeypatch.setenv("QSCHED_FAST", "0")
    monkeypatch.setenv("QSCHED_HEADLESS", "1")
    assert not show_progress()
    assert not progress(range(2), disable=False).disable   # forced on


def test_image_grid_and_differences():
    imgs = torch.rand(3, 3, 16, 16)
    fig = viz.image_grid({"a": imgs, "b": imgs}, ["x", "y", "z"], caption="same noise")
    assert renders(fig) and fig.axes[0].get_title() == "x" and fig.axes[0].get_ylabel() == "a"
    with pytest.raises(ValueError, match="same number"):
        viz.image_grid({"a": imgs, "b": imgs[:2]})
    fig = viz.show_differences(imgs, {"q": (imgs + 0.01).clamp(0, 1)}, ref_label="FP")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert renders(fig) and labels[0] == "FP" and labels[2].startswith("|q - FP| x")   # gain picked automatically


def test_centered_heatmap_and_bars():
    fig = viz.plot_centered_heatmap(torch.tensor([[-1.0, 2.0], [0.5, 0.0]]), ["r1", "r2"], ["c1", "c2"], title="t")
    assert renders(fig)
    with pytest.raises(ValueError, match="expected"):
        viz.plot_centered_heatmap(torch.zeros(2, 3), ["r1", "r2"], ["c1", "c2"])
    data = pd.DataFrame({"set": ["a", "a", "b", "b"], "score": ["s", "t"] * 2, "value": [1.0, 2.0, 3.0, 4.0]})
    fig = viz.plot_bars(data, x="set", y="value", panel="score", better={"s": "higher"}, points=True)
    assert renders(fig) and fig.axes[0].get_title() == "s (higher is better)"
