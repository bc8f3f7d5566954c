"""Fixtures of the hub tests; the tiny pipelines themselves are built in tiny_hub_pipelines.py."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny models run fastest single-threaded (and do not oversubscribe a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty $QSCHED_HUB_DIR (so nothing on this machine can serve a hub id by accident)."""
    monkeypatch.setenv("QSCHED_HUB_DIR", str(tmp_path))
    return tmp_path
