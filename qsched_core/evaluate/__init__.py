"""The Q-Sched evaluation: settings -> quantized student -> coefficients -> paired, cached metrics -> tables.

    cells = run_settings([Setting("fp"), Setting("w4a8"), Setting("w4a8", scheduler="qsched")], EvalConfig())
    summary_rows(cells); paired_diffs(cells, ref)

  settings.py  Setting (one table row), Calibration (how Q-Sched finds its coefficients), EvalConfig
  runner.py    quantize, calibrate (reusing saved searches), generate with per-image noise, score, cache
  report.py    summary rows, paired differences with CIs and sign tests, diagnostics, paper comparison

Every row is generated from the same prompts and the same per-image noise (`quality.generate`), so any two
rows are paired and their per-image scores can be differenced: that, not more images, is what makes the small
Q-Sched effects measurable (scripts/qsched_eval.py, scripts/qsched_ablations.py, notebooks 04 and 05).
"""
from .report import (METRICS, PAPER_LCM_FID, bootstrap_fids, default_pairs, diagnostics, fid_ci, fid_eigh, findings,
                     fmt, group_cells, markdown_table, paired_diffs, paired_fid_diff, paper_rows, search_reruns,
                     significance, summary_rows, write_csv)
from .runner import (Cell, Models, best_point, calibrate, find_cached_search, load_cell, load_models, quantize_convs_,
                     quantized_pipeline, run_settings)
from .settings import (AXES, CACHE_DIR, FAST_METRICS, SCHEDULERS, SEARCH_DIR, Calibration, EvalConfig, Setting,
                       naive_twin)

__all__ = [
    "AXES", "CACHE_DIR", "FAST_METRICS", "METRICS", "PAPER_LCM_FID", "SCHEDULERS", "SEARCH_DIR",
    "Calibration", "Cell", "EvalConfig", "Models", "Setting",
    "best_point", "bootstrap_fids", "calibrate", "default_pairs", "diagnostics", "fid_ci", "fid_eigh",
    "find_cached_search", "findings", "fmt", "group_cells", "load_cell", "load_models", "markdown_table",
    "naive_twin", "paired_diffs", "paired_fid_diff", "paper_rows", "quantize_convs_", "quantized_pipeline",
    "run_settings", "search_reruns", "significance", "summary_rows", "write_csv",
]
