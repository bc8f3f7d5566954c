"""Small shared helpers: seeding, the FAST switch, where the repo keeps models and results, atomic writes, cache locks.

`set_seed` is the one place that seeds every generator; `fast_mode()` reads the `QSCHED_FAST` environment
variable that `make test` sets to 1 (tiny sample counts, for CI) and `make reproduce` sets to 0 (full runs).
"""
from __future__ import annotations

import os
import random
import socket
import time
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


def _holder_alive(text: str) -> bool | None:
    """True / False for a lock written on this machine by a live / finished process; None when unknown."""
    host, _, pid = text.strip().rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return None  # another machine sharing the folder, or a lock still being written: assume it is live
    try:
        os.kill(int(pid), 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


@contextmanager
def cache_lock(target: str | Path, wait_limit_s: float = 3600.0, poll_s: float = 0.25):
    """Let one process at a time compute the cache file `target`; the others wait, then find it written.

    Stages of `make tables` run side by side and several need the same search, cell or FID reference. Without this
    each computes it (the GPU is time-sliced between them, so duplicates cost full price). `load_or_compute` is the
    way to use it.

    The lock is `<target>.lock` holding "hostname pid". A lock whose process has ended on this machine (a killed
    run) is taken over; waiting longer than `wait_limit_s` raises an error naming the lock file.
    """
    target = Path(target)
    lock = target.with_name(target.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    waited = 0.0
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = lock.read_text()
            except FileNotFoundError:
                continue  # released between our attempt and the read: try again
            if _holder_alive(holder) is False:
                lock.unlink(missing_ok=True)  # a finished process left it (killed run): take over
                continue
            if waited >= wait_limit_s:
                raise TimeoutError(f"{lock} has been held by {holder.strip()!r} for over {wait_limit_s:.0f} s; if no "
                                   "such process is running, delete the lock file and run again") from None
            time.sleep(poll_s)
            waited += poll_s
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}")
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def load_or_compute(target: str | Path, load, compute):
    """`load()` if the cache behind `target` has the value, else `compute()` (which also saves it) with
    `cache_lock(target)` held. `load` returns None when there is nothing (usable) to load; it is called again once
    the lock is held, since another process may have written the value while this one waited."""
    if (value := load()) is not None:
        return value
    with cache_lock(target):
        if (value := load()) is not None:
            return value
        return compute()
