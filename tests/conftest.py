"""Shared pytest set-up: offline hub, one torch thread for the tiny-model suites (and the cores shared out among
pytest-xdist workers), the `gpu` marker skips without CUDA."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET once, at its first import, which any earlier test module may trigger (kernels/
    # is imported by qsched_core.quant.qlinear): set it here, before collection, not in tests/kernels/conftest.py
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


ONE_THREAD_SUITES = {"evaluate", "hub", "ptq", "qsched_tinyworld", "sched"}


def thread_cap(suite: str) -> int | None:
    """Torch CPU threads for a test of `suite`: 1 for the tiny-model suites; under pytest-xdist, the cores shared
    out among the workers (16 workers x 16 OpenMP threads each made a 6-s CPU test time out at 100 s on a 16-core
    GPU host); None = torch's default."""
    if suite in ONE_THREAD_SUITES:
        return 1
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


@pytest.fixture(autouse=True)
def one_cpu_thread(request):
    """Tiny models run fastest single-threaded on a shared 2-core CPU (two OpenMP threads wait on each other at
    each of the many small ops); the suites that run them get one thread, and parallel workers share the cores;
    the rest keep torch's default."""
    cap = thread_cap(request.node.path.parent.name)
    if cap is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(cap, before))
    yield
    torch.set_num_threads(before)
