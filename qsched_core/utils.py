"""Small shared helpers: seeding, the FAST switch, and where the repo keeps models and results.

`set_seed` is the one place that seeds every generator; `fast_mode()` reads the `QSCHED_FAST` environment
variable that `make test` sets to 1 (tiny sample counts, for CI) and `make reproduce` sets to 0 (full runs).
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
RESULTS_DIR = REPO_ROOT / "results"


def set_seed(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU `torch.Generator` seeded the same way."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def env_switch(name: str, default: bool = False) -> bool:
    """An on/off environment variable: '1' is on, '0' off, unset `default`; anything else is an error."""
    value = os.environ.get(name)
    if value is None:
        return default
    if value not in ("0", "1"):
        raise ValueError(f"{name}={value!r} must be '0' or '1'")
    return value == "1"


def fast_mode(default: bool = False) -> bool:
    """True when QSCHED_FAST=1 (CI and `make test`), False when QSCHED_FAST=0 (`make reproduce`)."""
    return env_switch("QSCHED_FAST", default)


def results_dir(*parts: str) -> Path:
    """`results/<parts>` (created if missing): where notebooks and scripts write tables and figures.

    In FAST mode (CI) outputs go to `results/fast/<parts>` instead, so a quick run never overwrites the
    full-mode results that README quotes.
    """
    path = (RESULTS_DIR / "fast" if fast_mode() else RESULTS_DIR).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs):
    """Open a temporary file beside `path`, yield it, and rename it onto `path` only if the block finished.

    An interrupted run (Ctrl-C, a killed job, a full disk) therefore leaves either the old file or none, never a
    truncated one that a later run would load as a cache. Usage: `with atomic_write(p) as f: f.write(text)`;
    binary writers (np.savez, torch.save) take `mode="wb"`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows when both live in one directory
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`Path.write_text`, but atomic (see `atomic_write`)."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)
