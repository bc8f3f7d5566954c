"""The course notebooks keep the course's shape: 2-4 graded exercises, each with a collapsed worked
solution, a check for the ones with a number or a function as answer, one MODEL cell near the top, and a closing
"what you should now be able to explain" list."""
import re
from pathlib import Path

import nbformat
import pytest

from qsched_core import exercises, hub

ROOT = Path(__file__).resolve().parents[2]
COURSE = ("00_tiny_world", "01_quantization_error", "02_ptq_methods", "03_qsched_coefficients", "04_ablations",
          "05_fid_clip_evaluation", "07_kernels")


def cells(name):
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells


@pytest.mark.parametrize("name", COURSE)
def test_exercises_have_solutions_and_checks(name):
    cs = cells(name)
    starts = [i for i, c in enumerate(cs) if c.cell_type == "markdown" and re.search(r"\*\*Exercise \d", c.source)]
    assert 2 <= len(starts) <= 4, f"{name}: {len(starts)} exercises; the course wants 2-4"
    assert "warm-up" in cs[starts[0]].source and "open question" in cs[starts[-1]].source, \
        f"{name}: exercises should go from a warm-up to an open question"
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(cs)
        block = cs[i:end]
        solution = [c for c in block[:4] if c.cell_type == "markdown" and "<details>" in c.source and "Solution" in c.source]
        assert solution, f"{name}: exercise {n + 1} has no collapsed <details> solution right after it"
        stubs = [c for c in block[:3] if c.cell_type == "code" and "exercises.check_" in c.source]
        for stub in stubs:
            check = re.search(r"exercises\.(check_\w+)", stub.source).group(1)
            assert hasattr(exercises, check), f"{name}: {check} is not in qsched_core.exercises"
            assert "= ..." in stub.source, f"{name}: the stub of exercise {n + 1} should leave the answer as `...`"
    assert sum("exercises.check_" in c.source for c in cs if c.cell_type == "code") >= 1, f"{name}: no check at all"


@pytest.mark.parametrize("name", COURSE)
def test_model_cell_and_closing_list(name):
    cs = cells(name)
    model = [c for c in cs[:8] if c.cell_type == "code" and re.match(r'MODEL = "[^"]+"$', c.source.strip())]
    assert len(model) == 1, f"{name}: want one `MODEL = \"...\"` cell near the top"
    hub.pipeline_spec(re.search(r'"([^"]+)"', model[0].source).group(1))   # a registry name
    assert any("What you should now be able to explain" in c.source for c in cs if c.cell_type == "markdown")
