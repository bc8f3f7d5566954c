"""The study's two side measurements, in one call: activation outliers (outliers.py) and CPU speed (evaluate.py)."""
from __future__ import annotations

import json
from pathlib import Path

from .evaluate import cpu_tokens_per_second
from .model import load_safetensors
from .outliers import write_outlier_results
from .tasks import make_suite


def run_analysis(model_dir, results_dir) -> dict:
    """Write <results>/dllm_outliers.{json,png}, dllm_outliers_methods.png and dllm_cpu_speed.json."""
    out = Path(results_dir)
    speed = {m: cpu_tokens_per_second(load_safetensors(Path(model_dir) / f"{m}.safetensors"),
                                      make_suite(n_train=1), threads=2) for m in ("base",)}
    (out / "dllm_cpu_speed.json").write_text(json.dumps(speed, indent=1))
    summary = write_outlier_results(model_dir, out / "dllm_outliers")
    return dict(speed=speed, largest=summary["largest"], effect=summary["effect"])
