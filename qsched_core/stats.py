"""Uncertainty for small evaluations: bootstrap intervals, paired comparisons, spread over seeds.

Few-step samplers are compared here on a few hundred prompts, and the differences Q-Sched makes are small
(a fraction of an FID point, a few CLIP-IQA hundredths), so every number in a results table comes with an
interval. Methods are always run on the same prompts and the same initial noise (common random numbers), which
makes their per-image scores *paired*: `paired_bootstrap_diff` and `sign_test` use that pairing and are far
more sensitive than comparing two independent intervals.

  bootstrap_ci           percentile bootstrap (Efron & Tibshirani 1993) of a per-image mean
  paired_bootstrap_diff  the same for mean(a - b) over paired scores
  sign_test              exact two-sided binomial test on the signs of a - b (ties dropped); on binary
                         outcomes (attribute right / wrong) this is the exact McNemar test
  mean_std_over_seeds    mean and sample standard deviation of one metric over training / sampling seeds

FID is not a per-image mean; its bootstrap lives in `metrics.bootstrap_fid_ci`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch


def _as_1d(values, name: str = "values") -> np.ndarray:
    values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    values = values.astype(np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"{name} of shape {values.shape} must be a non-empty 1-D array of finite per-image scores")
    return values


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_ci_args(n_boot: int, alpha: float) -> None:
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1 and alpha={alpha} in (0, 1) (0.05 gives a 95% interval)")


def bootstrap_ci(values, n_boot: int = 1000, alpha: float = 0.05, seed: int | np.random.Generator = 0
                 ) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of per-image values and its (1 - alpha) percentile bootstrap interval."""
    _check_ci_args(n_boot, alpha)
    values = _as_1d(values)
    idx = _rng(seed).integers(0, len(values), size=(n_boot, len(values)))  # (n_boot, N) resampled image ids
    lo, hi = np.quantile(values[idx].mean(1), [alpha / 2, 1 - alpha / 2])
    return float(values.mean()), float(lo), float(hi)


def paired_bootstrap_diff(a, b, n_boot: int = 1000, alpha: float = 0.05, seed: int | np.random.Generator = 0
                          ) -> tuple[float, float, float]:
    """(mean(a - b), lo, hi) for paired per-image scores (same prompts and noise); resamples the pairs."""
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has {len(a)} scores and b {len(b)}; paired scores need one per prompt in each")
    return bootstrap_ci(a - b, n_boot, alpha, seed)


def sign_test(a, b) -> float:
    """Two-sided exact sign test p-value for paired outcomes a_i vs b_i (ties dropped; 1.0 if all tie).

    With n untied pairs of which m favour a: p = min(1, 2 * sum_{i <= min(m, n - m)} C(n, i) / 2^n).
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has {len(a)} outcomes and b {len(b)}; the sign test needs paired outcomes")
    wins, losses = int((a > b).sum()), int((a < b).sum())
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


def mean_std_over_seeds(values: Mapping[int, float] | Sequence[float]) -> dict:
    """{"mean", "std", "n"} of one metric over seeds; std is the sample std (ddof=1), nan for a single seed."""
    values = _as_1d(list(values.values()) if isinstance(values, Mapping) else values)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "std": std, "n": len(values)}


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equal-length samples (average ranks for ties); nan if one is constant."""
    from scipy.stats import rankdata

    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman needs two samples of the same length >= 2; got {len(a)} and {len(b)}")
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def subsample_ci(estimate: float, draws, m: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Interval for a statistic of n samples from its values on `draws` subsets of m < n drawn without replacement.

    The spread of the subset values around their own mean, shrunk by sqrt(m / n) (a standard error falls like
    1 / sqrt(n)), is placed around the full-sample estimate: [est + sqrt(m/n) q_lo, est + sqrt(m/n) q_hi]. Centring
    on the subsets' mean removes their extra small-sample bias, so, unlike a with-replacement bootstrap of FID (whose
    duplicated rows bias every draw upwards), the interval contains its own estimate.
    """
    draws = _as_1d(draws, "draws")
    if not 1 < m < n:
        raise ValueError(f"subset size m={m} must be in (1, n={n}); the usual choice is m = n // 2")
    lo, hi = np.quantile(draws - draws.mean(), [alpha / 2, 1 - alpha / 2]) * math.sqrt(m / n)
    return float(estimate + lo), float(estimate + hi)
