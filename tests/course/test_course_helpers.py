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


def test_show_sweep_has_a_difference_row_per_prompt():
    imgs = torch.rand(2, 3, 16, 16)
    sweep = {f"c = {c}": (imgs * c).clamp(0, 1) for c in (0.9, 1.0, 1.1)}
    fig = viz.show_sweep(sweep, reference="c = 1.0", row_labels=["p1", "p2"], caption="same noise")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert renders(fig) and labels[0] == "p1" and labels[1].startswith("p1:\n|x - x(c = 1.0)| x")
    assert fig.axes[1].get_title().startswith("c = 1.0\nmean |diff| 0.0/255")
    with pytest.raises(ValueError, match="reference"):
        viz.show_sweep(sweep, reference="c = 2")


def _grid_result(values):
    from qsched_core.search import SearchConfig, SearchResult, on_edge

    cfg = SearchConfig(grid_points=3, num_prompts=1, num_steps=1)
    axis = cfg.axis()
    points = [{"start_x": float(x), "start_eps": float(e), "tc": 4.0, "iq": 0.5, "jaq": float(values[i][j])}
              for i, x in enumerate(axis) for j, e in enumerate(axis)]
    best = max(points, key=lambda p: p["jaq"])
    return SearchResult(config=vars(cfg), scorer="jaq-k2", method="grid", points=points, best=best, wall_time_s=1.0,
                        network_evals=9, on_edge=on_edge(best, cfg))


def test_jaq_gain_map_is_centred_on_the_stock_point_and_clipped():
    from matplotlib.patches import Rectangle

    change = [[-2.0, -0.01, -1.0], [0.02, 0.0, 0.01], [-0.5, 0.03, -3.0]]                 # JAQ - JAQ(1, 1)
    result = _grid_result([[6.0 + d for d in row] for row in change])
    fig = viz.plot_jaq_gain(result)
    ax = fig.axes[0]
    mesh = ax.collections[0]
    lo, hi = mesh.get_clim()
    assert renders(fig) and lo == -hi and hi < 1.0            # centred on 0, clipped far inside the -3 corner
    assert abs(mesh.get_array().reshape(3, 3)[1, 1]) == 0     # the stock cell is exactly 0
    assert any(isinstance(p, Rectangle) and p.get_label().startswith("stock (1, 1)") for p in ax.patches)
    assert "+.030" in [t.get_text() for t in ax.texts]          # each cell annotated with its change
    with pytest.raises(ValueError, match="clip_quantile"):
        viz.plot_jaq_gain(result, clip_quantile=0)


def test_metric_panels_say_what_is_better_and_explain_fid_intervals():
    rows = [{"method": m, "steps": s, "fid": 10.0 + s, "fid_lo": 12.0, "fid_hi": 20.0, "acc_objects": 0.6,
             "acc_objects_lo": 0.55, "acc_objects_hi": 0.65}
            for m in ("FP", "naive W4A8", "Q-Sched W4A8") for s in (2, 4)]
    fig = viz.plot_metric_vs_steps(rows, metrics=("fid", "acc_objects"))
    titles = [ax.get_title() for ax in fig.axes]
    assert renders(fig) and titles == ["FID (lower is better)", "attribute accuracy (higher is better)"]
    assert fig.axes[1].get_ylabel().endswith("(%)") and "half-samples without replacement" in " ".join(fig._supxlabel.get_text().split())
    paired = [{"comparison": "a - b", "steps": 4, "d_fid": -5.0, "d_fid_lo": -8.0, "d_fid_hi": -1.0},
              {"comparison": "c - b", "steps": 4, "d_fid": 1.0, "d_fid_lo": -2.0, "d_fid_hi": 3.0}]
    fig = viz.plot_paired_diffs(paired, "d_fid")
    assert renders(fig) and "left of 0: a better" in fig.axes[0].get_xlabel()


def test_distributions_and_kernel_tables_read_renamed_columns():
    fig = viz.plot_distributions({"FP": torch.rand(50), "W4A4": torch.rand(50) * 0.5}, xlabel="CLIP-IQA",
                                 better="higher", binrange=(0, 1))
    assert renders(fig) and "higher is better" in fig.axes[0].get_xlabel()
    def times(m):
        return ("cublas_fp16", 10.0), ("w4a16", 20.0 if m == 1 else 5.0)
    rows = [{"kind": "gemm", "impl": impl, "shape": shape, "M": m, "us_graph": t}      # `us` renamed: still found
            for shape in ("a", "b") for m in (1, 16) for impl, t in times(m)]
    assert viz.time_column(rows) == "us_graph"
    table = viz.gemm_times(rows, 1, ["cublas_fp16", "w4a16", "w8a8_gemm"])
    assert list(table.columns) == ["cublas_fp16", "w4a16"] and table.loc["a", "w4a16"] == 20.0
    assert set(viz.speedups(rows, ["w4a16"]).speedup) == {0.5, 2.0}
    assert renders(viz.plot_speedups(rows, impls=("w4a16",)))
    with pytest.raises(ValueError, match="no time column"):
        viz.time_column([{"kind": "gemm"}])
