"""Committed notebook outputs: execute a notebook in full mode, clean it for git, check that its outputs are current.

The course notebooks are committed *with* the outputs of a full-mode run (QSCHED_FAST=0), so a reader sees every
table and figure on GitHub without installing anything. Three functions keep that honest:

  * `execute(path)` runs the notebook top to bottom in its own kernel (QSCHED_FAST=0, QSCHED_HEADLESS=1, as
    `make notebooks` does) and writes it back in place through `clean`;
  * `clean(nb)` drops what changes on every run without meaning (execution timestamps, kernel version strings,
    widget state), stores PNG figures as palette PNGs when that is smaller (plots have few colours), and stamps
    `metadata.qsched` with the full-mode flag and a hash of the code cells;
  * `problems(nb)` lists what makes committed outputs untrustworthy: an error output or a traceback, cells run
    out of order or not at all, code edited since the run (the hash no longer matches), a FAST-mode run, no
    figure at all, or a file over the size budget. tests/course/test_notebook_outputs.py runs it on every
    notebook that has outputs.

`scripts/execute_notebooks.py` is the command line: `python scripts/execute_notebooks.py notebooks/00_tiny_world.ipynb`.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path

MAX_BYTES = 2_000_000          # per committed notebook (figures compressed)
CELL_META_NOISE = ("execution", "collapsed", "scrolled", "jupyter")


def code_hash(nb) -> str:
    """sha256 of the code cells' sources, in order: changes whenever code is edited, added or removed."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode() + b"\n\x00\n")
    return h.hexdigest()


def has_outputs(nb) -> bool:
    return any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


def compress_png(data: str) -> str:
    """Base64 PNG -> the same image as a 256-colour palette PNG (base64), if that is smaller."""
    from PIL import Image

    raw = base64.b64decode(data)
    img = Image.open(io.BytesIO(raw))
    small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(raw) else data


def clean(nb, fast: bool = False):
    """Strip run-to-run noise, compress figures and stamp `metadata.qsched` (mode and code hash); in place."""
    for cell in nb.cells:
        for key in CELL_META_NOISE:
            cell.metadata.pop(key, None)
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                out["data"]["image/png"] = compress_png(png)
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["qsched"] = {"mode": "fast" if fast else "full", "code_sha256": code_hash(nb)}
    return nb


def problems(nb, size: int | None = None) -> list[str]:
    """Why the outputs of `nb` cannot be trusted (empty list: they come from a clean full run of this code)."""
    found = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    if counts != list(range(1, len(code) + 1)):
        bad = next(i for i, (n, want) in enumerate(zip(counts, range(1, len(code) + 1))) if n != want)
        found.append(f"execution order broken at code cell {bad} (counts {counts[max(0, bad - 2):bad + 3]}, want "
                     f"1..{len(code)} in order): re-run the notebook top to bottom")
    for i, cell in enumerate(code):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"code cell {i} has an error output: {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and "Traceback (most recent call last)" in out.text:
                found.append(f"code cell {i} printed a traceback")
    stamp = nb.metadata.get("qsched", {})
    if stamp.get("code_sha256") != code_hash(nb):
        found.append("code cells changed since the outputs were made (metadata.qsched.code_sha256 does not match): "
                     "re-run it with scripts/execute_notebooks.py")
    if stamp.get("mode") != "full":
        found.append(f"outputs come from a {stamp.get('mode', 'unknown')!r} run; commit the outputs of a full run")
    if not any("image/png" in out.get("data", {}) for cell in code for out in cell.get("outputs", [])):
        found.append("no figure in the outputs")
    if size is not None and size > MAX_BYTES:
        found.append(f"{size / 1e6:.1f} MB > {MAX_BYTES / 1e6:.0f} MB: lower the figures' dpi or size")
    return found


def execute(path: str | Path, timeout: int = 3600, fast: bool = False) -> list[str]:
    """Run the notebook at `path` top to bottom (full mode unless `fast`), clean it, write it back; its problems."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = {"QSCHED_FAST": "1" if fast else "0", "QSCHED_HEADLESS": "1", "MPLBACKEND": "Agg",
           "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process' environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    clean(nb, fast=fast)
    nbformat.write(nb, path)
    return problems(nb, path.stat().st_size)
