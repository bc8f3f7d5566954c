"""Helpers for the bad-input suite: `clear(fn, *fragments)` asserts that `fn()` fails with a message that
names the argument, the value and the fix (each given as a fragment that must appear in the message)."""
from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

MAX_SECONDS = 30.0  # no bad input may hang (the reported NaN hang took minutes); first imports count too


def clear(fn, *fragments: str, exc: type[BaseException] = ValueError) -> str:
    """Run fn(); it must raise `exc` quickly, with every fragment in its message. Returns the message."""
    t0 = time.perf_counter()
    with pytest.raises(exc) as info:
        fn()
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    missing = [f for f in fragments if f not in msg]
    assert not missing, f"message {msg!r} lacks {missing}"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.1f} s to reject the input"
    return msg


def tiny_open_clip(seed: int = 0, image_size: int = 32) -> nn.Module:
    """A small random open_clip CLIP in OpenAI layout, enough to exercise the scorers' input checks."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=16, quick_gelu=True, init_logit_scale=math.log(100.0),
        vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=32, patch_size=16, image_size=image_size),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=1, layers=1))
    return model.eval()
