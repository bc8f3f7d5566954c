"""Fixtures of the hub tests; the tiny pipelines themselves are built in tiny_hub_pipelines.py."""
import pytest


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty $QSCHED_HUB_DIR (so nothing on this machine can serve a hub id by accident)."""
    monkeypatch.setenv("QSCHED_HUB_DIR", str(tmp_path))
    return tmp_path
