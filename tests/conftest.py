"""Shared pytest set-up: offline hub, one torch thread for the tiny-model suites, the `gpu` marker skips without
CUDA."""
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


@pytest.fixture(autouse=True)
def one_cpu_thread(request):
    """Tiny models run fastest single-threaded on a shared 2-core CPU (two OpenMP threads wait on each other at
    each of the many small ops); the suites that run them get one thread, the rest keep torch's default."""
    if request.node.path.parent.name not in ONE_THREAD_SUITES:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
