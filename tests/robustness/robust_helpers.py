"""Helpers for the bad-input suite: `clear(fn, *fragments)` asserts that `fn()` fails with a message that
names the argument, the value and the fix (each given as a fragment that must appear in the message)."""
from __future__ import annotations

import time

import pytest
from clip_helpers import tiny_open_clip as _tiny_open_clip
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
    """A small random open_clip CLIP (widths 32), enough to exercise the scorers' input checks."""
    return _tiny_open_clip(seed, image_size, width=32, embed_dim=16)
