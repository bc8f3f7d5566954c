"""Fixtures for the robustness suite: one torch thread, a tiny random CLIP judge, the shipped tiny-world models."""
import pytest
import torch

from robust_helpers import tiny_open_clip


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def judge():
    """(model, tokenizer, name): a random 32x32 open_clip CLIP with the real BPE tokenizer."""
    open_clip = pytest.importorskip("open_clip")
    return tiny_open_clip(), open_clip.get_tokenizer("ViT-B-32"), "tiny-random-clip"


@pytest.fixture(scope="session")
def images():
    """Four valid images (4, 3, 32, 32) in [0, 1]."""
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def pipe():
    from qsched_core.tinyworld.loaders import load_pipeline
    return load_pipeline()


@pytest.fixture(scope="session")
def evaluator():
    from qsched_core.tinyworld.loaders import load_evaluator
    return load_evaluator()
