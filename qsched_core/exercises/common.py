"""The verdict every check prints: a tick and what the number means, or a cross and a hint; `...` waits."""
from __future__ import annotations

import math


def _verdict(ok: bool, good: str, bad: str) -> bool:
    print(f"✓ {good}" if ok else f"✗ {bad}")
    return bool(ok)


def _unanswered(answer, what: str) -> bool:
    if answer is ... or answer is None:
        print(f"… no answer yet: replace `...` with {what}, then run this cell again")
        return True
    return False


def _close(answer, expected: float, rtol: float, atol: float = 0.0) -> bool:
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and abs(value - expected) <= atol + rtol * abs(expected)
