"""Checks for notebook 06's exercises: write your answer, run `check_...(answer, ...)`, read the verdict.

Same contract as the course's other checks: a check recomputes the answer from the objects the notebook holds (the
model, the prompt, the committed per-item results), prints one line (a tick and what the number means, or a cross
and a hint that does not give the answer away) and returns True or False. An answer left as `...` prints what to
fill in, so the notebook still runs top to bottom.
"""
from __future__ import annotations

import math

import torch

from ..exercises.common import _unanswered, _verdict
from . import diffusion
from .evaluate import paired_gap
from .outliers import activation_stats
from .vocab import TOKENIZER


def count_forward_passes(model, prompt: list[int], gen_len: int, block_len: int) -> int:
    """How many times `diffusion.generate` calls the network for one completion (a forward hook counts)."""
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        diffusion.generate(model, [prompt], gen_len, block_len, mask_id=TOKENIZER.mask_id, pad_id=TOKENIZER.pad_id)
    finally:
        handle.remove()
    return len(calls)


def check_forward_passes(answer, model, prompt: list[int], gen_len: int = 32, block_len: int = 4) -> bool:
    """Exercise 1: the number of full forward passes one generation of gen_len tokens costs."""
    if _unanswered(answer, "a whole number of forward passes"):
        return False
    want = count_forward_passes(model, prompt, gen_len, block_len)
    ok = isinstance(answer, (int, float)) and float(answer) == want
    return _verdict(ok, f"{want} forward passes: one per step, steps = gen_len = {gen_len}, each over the whole "
                        "sequence; each of them goes through the quantized network",
                    "count again: how many tokens are committed per step, and how many steps does generate take "
                    "when steps is left at its default? (a forward hook on the model can count the calls)")


def shared_top_channel(base, instruct, n_seqs: int) -> int:
    """Blocks whose down-projection input has the same largest channel in both models."""
    top = [{r["layer"]: r["top_channels"][0] for r in activation_stats(m, n_seqs=n_seqs)
            if r["input"].startswith("SwiGLU")} for m in (base, instruct)]
    return sum(top[0][layer] == top[1][layer] for layer in top[0])


def check_shared_top_channel(answer, base, instruct, n_seqs: int) -> bool:
    """Exercise 2: in how many blocks is the largest ff_out-input channel the same in Base and Instruct?"""
    if _unanswered(answer, "a whole number of blocks"):
        return False
    want = shared_top_channel(base, instruct, n_seqs)
    n = base.cfg.n_layers
    ok = isinstance(answer, (int, float)) and float(answer) == want
    return _verdict(ok, f"{want} of {n} blocks keep the largest channel of their down-projection input through SFT",
                    "compare `top_channels[0]` of the 'SwiGLU -> ff_out (down)' rows, block by block, with the same "
                    "n_seqs for both models")


def check_gap_interval(answer, fp: torch.Tensor, qa: torch.Tensor, qb: torch.Tensor) -> bool:
    """Exercise 3: (gap, lo, hi) = drop(a) - drop(b) in points of FP with a 95 % paired bootstrap interval."""
    if _unanswered(answer, "a tuple (gap, lo, hi) in points of FP accuracy"):
        return False
    try:
        gap, lo, hi = (float(v) for v in answer)
    except (TypeError, ValueError):
        return _verdict(False, "", "give three numbers: (gap, lo, hi)")
    want = paired_gap(fp, qa, qb)
    width = want[2] - want[1]
    if not (math.isfinite(gap) and abs(gap - want[0]) < 0.05):
        return _verdict(False, "", "the gap is off: average each method's per-item scores over its seeds, then "
                                   "100 * (mean(b) - mean(a)) / mean(fp)")
    if hi - lo > 1.5 * width:
        return _verdict(False, "", "your interval is much wider than the paired one: draw ONE set of item indices per "
                                   "resample and use it for FP and both methods")
    ok = abs(lo - want[1]) <= 0.25 * width and abs(hi - want[2]) <= 0.25 * width
    excl = "excludes 0: a real difference" if want[1] > 0 or want[2] < 0 else "includes 0: not resolved on these items"
    return _verdict(ok, f"{want[0]:+.1f} points, 95 % interval [{want[1]:+.1f}, {want[2]:+.1f}], which {excl}",
                    f"interval [{lo:+.1f}, {hi:+.1f}] is off: take the 2.5th and 97.5th percentiles of the resampled "
                    "gaps")
