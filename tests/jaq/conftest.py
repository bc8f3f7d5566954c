"""Judges for the JAQ tests: a tiny random open_clip CLIP and hand-built CLIP-like models with known embeddings."""
import math

import pytest
import torch
from clip_helpers import tiny_open_clip
from torch import nn


@pytest.fixture(scope="session")
def tokenizer():
    return pytest.importorskip("open_clip").tokenizer.SimpleTokenizer()


@pytest.fixture(scope="session")
def tiny_clip():
    return tiny_open_clip()


@pytest.fixture
def make_tiny_clip():
    """Factory for fresh tiny CLIPs (tests that modify weights must not touch the shared one)."""
    return tiny_open_clip


class _Visual(nn.Module):
    """Input spec of a hand-built judge: native size, identity normalisation."""

    def __init__(self, size: int):
        super().__init__()
        self.image_size, self.image_mean, self.image_std = (size, size), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


class TableJudge(nn.Module):
    """CLIP-like judge with hand-set embeddings: E_T(p) = text_table[p]; E_I(x) = image_fn(x).

    `tokenizer` maps each prompt to its row in the table, so tests know every cosine in closed form.
    """

    def __init__(self, text_table: dict, image_fn, size: int = 8):
        super().__init__()
        self.visual, self.image_fn = _Visual(size), image_fn
        self.prompts = list(text_table)
        self.register_buffer("table", torch.tensor([text_table[p] for p in self.prompts], dtype=torch.float32))
        self.logit_scale = nn.Parameter(torch.tensor(100.0).log(), requires_grad=False)  # OpenAI CLIP's value

    def tokenizer(self, prompts):
        return torch.tensor([[self.prompts.index(p)] for p in prompts])  # (B, 1)

    def encode_text(self, ids):
        return self.table[ids[:, 0]]

    def encode_image(self, x):
        return self.image_fn(x)


def mean_colour(x):
    """E_I(x) = mean RGB, (B, 3)."""
    return x.mean(dim=(2, 3))


def sharpness_embedding(x, beta: float = 50.0, h0: float = 0.02):
    """E_I(x) = (1, beta * (h - h0), 0) with h the mean squared finite difference (high-frequency energy)."""
    h = ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean((1, 2, 3)) + ((x[..., 1:] - x[..., :-1]) ** 2).mean((1, 2, 3))
    return torch.stack([torch.ones_like(h), beta * (h - h0), torch.zeros_like(h)], dim=-1)


@pytest.fixture
def colour_judge():
    table = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "not red": (-1.0, 0.0, 0.0),
             "Good photo.": (0.30, math.sqrt(1 - 0.30**2), 0.0), "Bad photo.": (0.29, math.sqrt(1 - 0.29**2), 0.0)}
    return TableJudge(table, mean_colour)


@pytest.fixture
def sharpness_judge():
    table = {"Good photo.": (1.0, 1.0, 0.0), "Bad photo.": (1.0, -1.0, 0.0), "a scene": (1.0, 0.0, 0.0)}
    return TableJudge(table, sharpness_embedding, size=32)
