"""Committed notebook outputs come from a clean full-mode run of the current code (qsched_core/notebooks.py).

Every notebook committed with outputs is checked: no error output, execution counts 1..n in cell order, the code
hash stamped at run time equals the hash of the code now, full mode, at least one figure, under the size budget.
Notebooks 00-02 and 07 must have outputs (a reader sees results without running anything). A notebook whose
outputs were made some other way (no stamp) gets the error and order checks, then is skipped with the reason.
"""
import re
from pathlib import Path

import nbformat
import pytest

from qsched_core.notebooks import clean, code_hash, compress_png, has_outputs, problems

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MUST_HAVE_OUTPUTS = ("00_tiny_world", "01_quantization_error", "02_ptq_methods", "03_qsched_coefficients", "04_ablations",
                     "05_fid_clip_evaluation", "06_dllm_ptq", "07_kernels")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_outputs_are_current(path):
    nb = nbformat.read(path, as_version=4)
    if not has_outputs(nb):
        assert path.stem not in MUST_HAVE_OUTPUTS, f"{path.name} must be committed with the outputs of a full run"
        pytest.skip(f"{path.name} is committed without outputs")
    found = problems(nb, path.stat().st_size)
    if "qsched" not in nb.metadata and path.stem not in MUST_HAVE_OUTPUTS:
        basic = [f for f in found if re.match(r"execution order|code cell \d", f)]   # errors, order
        assert not basic, f"{path.name}: " + "; ".join(basic)
        pytest.skip(f"{path.name} has outputs that scripts/execute_notebooks.py did not make (no metadata.qsched "
                    "stamp), so only errors and execution order were checked; run it through that script")
    assert not found, f"{path.name}: " + "; ".join(found)


def _executed(sources, outputs):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t")]
    for i, (src, outs) in enumerate(zip(sources, outputs), start=1):
        cell = nbformat.v4.new_code_cell(src)
        cell.execution_count, cell.outputs = i, outs
        nb.cells.append(cell)
    return nb


PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")


def test_problems_finds_errors_order_and_stale_code():
    fig = nbformat.v4.new_output("display_data", data={"image/png": PNG})
    nb = clean(_executed(["x = 1", "x"], [[], [fig]]))
    assert problems(nb) == []
    assert nb.metadata.qsched["code_sha256"] == code_hash(nb)

    nb.cells[2].source = "x + 1"                                      # edited after the run
    assert any("code cells changed" in p for p in problems(nb))

    nb = clean(_executed(["1/0", "x"], [[nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="div",
                                                                    traceback=[])], [fig]]))
    assert any("ZeroDivisionError" in p for p in problems(nb))

    nb = clean(_executed(["a", "b"], [[], [fig]]))
    nb.cells[1].execution_count = 5
    assert any("execution order broken" in p for p in problems(nb))

    nb = clean(_executed(["a"], [[]]), fast=True)
    found = problems(nb)
    assert any("'fast' run" in p for p in found) and any("no figure" in p for p in found)
    assert any("MB" in p for p in problems(clean(_executed(["a"], [[fig]])), size=3_000_000))


def test_compress_png_never_grows():
    assert len(compress_png(PNG)) <= len(PNG)
