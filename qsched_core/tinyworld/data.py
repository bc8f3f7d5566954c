"""Training batches for the tiny world: a pool of tokenized scenes, rendered fresh (new jitter) at every step.

Scene sampling and tokenization run once on the CPU (a few seconds for 200k scenes); rendering runs on the
training device, so no data set is ever written to disk and no two batches repeat an image.
"""
from __future__ import annotations

import torch

from .render import render_attributes, scenes_to_tensors
from .tokenizer import load_tokenizer
from .world import sample_scenes


def tokenize(captions: list[str], device="cpu") -> torch.Tensor:
    """Token ids (B, 77), padded to the full context as diffusers pipelines pad them."""
    tok = load_tokenizer()
    ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    return ids.to(device)


class ScenePool:
    """`n` scenes of one split with their token ids; `batch()` draws a random subset and renders it."""

    def __init__(self, n: int, split: str = "train", seed: int = 0, device="cpu"):
        self.scenes = sample_scenes(n, split, seed=seed)
        self.ids = tokenize([s.caption for s in self.scenes], device)  # (n, 77) int64
        self.attrs = scenes_to_tensors(self.scenes, device)  # integer attributes, indexed per batch
        self.device = device
        self.rng = torch.Generator().manual_seed(seed)  # CPU: which scenes
        self.render_gen = torch.Generator(device=device).manual_seed(seed + 1)  # device: their jitter

    def batch(self, size: int):
        """(scenes, images (B, 3, 64, 64) in [0, 1] on the device, token ids (B, 77))."""
        idx = torch.randint(len(self.scenes), (size,), generator=self.rng)
        scenes = [self.scenes[i] for i in idx.tolist()]
        idx = idx.to(self.ids.device)
        images = render_attributes({k: v[idx] for k, v in self.attrs.items()}, self.render_gen)
        return scenes, images, self.ids[idx]
