"""Notebook 07's view of results/kernels.csv: timings and speedups, read without trusting the column names.

`kernels/bench.py` writes one row per (kind, impl, shape, M) with the time per call. Its columns have changed
between runs (eager launches in `us`, then CUDA-graph replays in `us` with the eager time in `us_eager`), so
these functions pick the time column that is there (`time_column`) and compute speedups from the times
themselves instead of reading a precomputed column. Missing kernels or shapes are left out, never invented.
"""
from __future__ import annotations

import math

from matplotlib.figure import Figure

TIME_COLUMNS = ("us", "us_graph", "median_us", "us_eager")   # microseconds per call, first match wins
BASELINE = "cublas_fp16"


def time_column(rows: list[dict]) -> str:
    """The name of the microseconds-per-call column of kernels.csv rows (the first of TIME_COLUMNS present)."""
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    for name in TIME_COLUMNS:
        if name in keys:
            return name
    guess = sorted(k for k in keys if k.startswith("us"))
    if guess:
        return guess[0]
    raise ValueError(f"no time column in these rows (looked for {TIME_COLUMNS} or any 'us...'); "
                     f"columns: {sorted(keys)}")


def _number(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def gemm_times(rows: list[dict], m: int, impls=None):
    """DataFrame (shape x impl) of microseconds per call of the GEMM rows at batch M = m; columns in `impls` order
    (those absent from the CSV are dropped), rows in the CSV's shape order."""
    import pandas as pd

    col = time_column(rows)
    gemm = [r for r in rows if r.get("kind") == "gemm" and int(_number(r.get("M"))) == m]
    if not gemm:
        raise ValueError(f"no GEMM rows at M={m}; batch sizes in the file: "
                         f"{sorted({int(_number(r['M'])) for r in rows if r.get('kind') == 'gemm'})}")
    table = pd.DataFrame([{"shape": r["shape"], "impl": r["impl"], "us": _number(r[col])} for r in gemm])
    table = table.pivot_table(index="shape", columns="impl", values="us", sort=False)
    keep = [i for i in (impls or table.columns) if i in table.columns]
    return table[keep]


def speedups(rows: list[dict], impls, baseline: str = BASELINE):
    """Long DataFrame (shape, M, impl, speedup): baseline time / impl time at the same shape and M."""
    import pandas as pd

    col = time_column(rows)
    t = {(r["shape"], int(_number(r["M"])), r["impl"]): _number(r[col]) for r in rows if r.get("kind") == "gemm"}
    out = [{"shape": s, "M": m, "impl": i, "speedup": t[(s, m, baseline)] / us}
           for (s, m, i), us in t.items() if i in impls and (s, m, baseline) in t and us > 0]
    return pd.DataFrame(out)


def plot_speedups(rows: list[dict], impls=("w4a16", "w8a8_gemm", "w4a8_gemm", "torch_dequant_fp16"),
                  baseline: str = BASELINE, title: str = "") -> Figure:
    """seaborn: speedup over `baseline` against batch size M, one line per kernel, the spread over layer shapes as
    a band (its 95% bootstrap interval over shapes); 1 = as fast as the baseline (higher is better)."""
    import seaborn as sns

    data = speedups(rows, impls, baseline)
    if data.empty:
        raise ValueError(f"no GEMM rows with both {baseline!r} and one of {list(impls)} at the same shape and M")
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(data, x="M", y="speedup", hue="impl", style="impl", markers=True, dashes=False, ax=ax,
                 errorbar=("ci", 95), seed=0)
    ax.axhline(1.0, color="black", lw=0.8)
    ms = sorted(data.M.unique())
    ax.set(xscale="log", yscale="log", xticks=ms, xticklabels=[str(m) for m in ms], xlabel="batch size M (tokens)",
           ylabel=f"speedup over {baseline} (x)", title=title or f"time of {baseline} / time of the kernel "
                                                                    "(higher is better)")
    ax.set_yticks([0.05, 0.1, 0.25, 0.5, 1, 2], labels=["0.05", "0.1", "0.25", "0.5", "1", "2"])
    ax.legend(fontsize=7, title=None)
    return fig
