"""Tiny random LLaDA-style models for the dLLM tests (CPU, one layer, d = 128)."""
import pytest
import torch

from qsched_core.dllm.model import DLLMConfig, LLaDAModel

TINY = DLLMConfig(d_model=128, n_layers=1, n_heads=2, d_ff=256, max_seq_len=128)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return LLaDAModel(TINY).eval()
