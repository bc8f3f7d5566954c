"""scripts/gptq_sensitivity.py: GPTQ ignores perturbations far below float32's resolution and flips codes above it."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gptq_sensitivity.py"


def test_rows_and_the_two_ends():
    spec = importlib.util.spec_from_file_location("gptq_sensitivity", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [line.split(" | ") for line in mod.main([]).splitlines() if line.startswith("| 1e") or line.startswith("| 0.")]
    assert [r[0] for r in rows] == ["| 1e-12", "| 1e-09", "| 1e-07", "| 1e-06", "| 1e-05", "| 0.0001"]
    flipped = [float(r[1].rstrip("%")) for r in rows]
    assert flipped[0] == 0.0 and flipped[-1] > 10.0  # nothing moves at 1e-12; many codes move at 1e-4
