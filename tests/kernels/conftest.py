"""Kernel tests run on a CUDA GPU, or on the CPU through the Triton interpreter (set here before triton loads).

Shapes: the CPU grid is tiny (the interpreter runs numpy per program); tests marked `gpu` add the full grid.
Shared helpers live in kernel_helpers.py (a conftest cannot be imported by name: tests/ has one too).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before the first `import triton`

pytest.importorskip("triton")


def pytest_runtest_logreport(report):
    """Each failure goes at once to the file $QSCHED_FAILURES, if set: a GPU run cut short by its time limit still
    names its failures (pytest -rf lists them only at the end). Under pytest-xdist the controller writes."""
    path = os.environ.get("QSCHED_FAILURES")
    if path and report.failed and not os.environ.get("PYTEST_XDIST_WORKER"):
        with open(path, "a") as f:
            f.write(f"FAILED {report.nodeid} ({report.when})\n{report.longreprtext[-4000:]}\n\n")
