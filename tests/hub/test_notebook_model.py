"""Notebook 03 runs on a hub model when its MODEL cell names one: the only change a reader makes.

The hub tier cannot download weights here, so a tiny random-weight LatentConsistencyModelPipeline (the class of
"SimianLuo/LCM_Dreamshaper_v7", tiny_hub_pipelines.build_lcm) is saved where `hub.load_pipeline` looks for that
id, $QSCHED_HUB_DIR/SimianLuo/LCM_Dreamshaper_v7. The notebook is then executed in FAST mode with exactly one
edit, made in memory (the file on disk is not touched): `MODEL = "tinyworld-lcm"` becomes the hub id, as a
parameter cell does in papermill. Every other cell must run unchanged and must really use the hub pipeline.
"""
import re
import time
from pathlib import Path

import nbformat
from tiny_hub_pipelines import build_lcm

from qsched_core import hub

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "03_qsched_coefficients.ipynb"
HUB_NAME = "SimianLuo/LCM_Dreamshaper_v7"
MODEL_CELL = re.compile(r'MODEL = "[^"]+"')


def with_model(nb, name: str):
    """`nb` with its one `MODEL = "..."` cell set to `name`; fails if there is not exactly one such cell."""
    cells = [c for c in nb.cells if c.cell_type == "code" and MODEL_CELL.fullmatch(c.source.strip())]
    assert len(cells) == 1, f"want exactly one `MODEL = \"...\"` cell, found {len(cells)}"
    cells[0].source = f'MODEL = "{name}"'
    return nb


def outputs_text(nb) -> str:
    return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_notebook_03_runs_on_a_tiny_random_hub_lcm(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    spec = hub.pipeline_spec(HUB_NAME)
    assert spec.tier == "hub" and spec.family == "lcm"
    build_lcm().save_pretrained(tmp_path / "hub" / spec.repo_id)
    env = {"QSCHED_HUB_DIR": str(tmp_path / "hub"), "QSCHED_FAST": "1", "QSCHED_HEADLESS": "1", "MPLBACKEND": "Agg",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)           # the kernel inherits this process' environment
    nb = with_model(nbformat.read(NOTEBOOK, as_version=4), HUB_NAME)
    t0 = time.time()
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = outputs_text(nb)
    # the written-out Q-Sched step matches the package on this model, whose images are 16x16 (tiny world: 64x64)
    assert "identical images, bit for bit: True" in text and "16x16 px" in text, text[-2000:]
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= 5, f"only {len(figures)} figures"
    out = ROOT / "results" / "fast" / "03_qsched_coefficients"
    prefix = HUB_NAME.replace("/", "--")
    saved = [p for p in out.glob(f"{prefix}_w4a8_4step_*") if p.stat().st_mtime >= t0]
    assert len(saved) == 3, f"the notebook should save its map, images and search under the hub model's name: {saved}"
