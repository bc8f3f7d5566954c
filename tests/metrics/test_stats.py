"""Bootstrap intervals, paired comparisons, the exact sign test, spread over seeds."""
import math

import numpy as np
import pytest

from qsched_core.metrics import bootstrap_ci, mean_std_over_seeds, paired_bootstrap_diff, sign_test


def test_bootstrap_ci_covers_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (25, 400):
        values = rng.normal(0.3, 0.1, size=n)
        mean, lo, hi = bootstrap_ci(values, n_boot=500, seed=1)
        assert mean == pytest.approx(values.mean()) and lo < mean < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2.5  # width ~ 1/sqrt(n): 4x narrower in theory


def test_bootstrap_ci_has_roughly_nominal_coverage():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(200):
        _, lo, hi = bootstrap_ci(rng.normal(1.0, 1.0, size=60), n_boot=400, alpha=0.1, seed=rng)
        covered += lo <= 1.0 <= hi
    assert 0.82 <= covered / 200 <= 0.97  # nominal 90%


def test_bootstrap_is_seeded_and_validates():
    values = np.arange(10.0)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    with pytest.raises(ValueError, match="alpha=1.5"):
        bootstrap_ci(values, alpha=1.5)
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, float("nan")])


def test_paired_difference_uses_the_pairing():
    rng = np.random.default_rng(4)
    prompt_difficulty = rng.normal(0, 1.0, size=100)  # shared by both methods (same prompts and noise)
    a = prompt_difficulty + 0.1 + rng.normal(0, 0.05, size=100)
    b = prompt_difficulty + rng.normal(0, 0.05, size=100)
    diff, lo, hi = paired_bootstrap_diff(a, b, seed=5)
    assert diff == pytest.approx((a - b).mean()) and lo < 0.1 < hi and lo > 0
    unpaired_width = (bootstrap_ci(a, seed=5)[2] - bootstrap_ci(a, seed=5)[1])
    assert hi - lo < unpaired_width / 5
    assert paired_bootstrap_diff(b + 0.25, b) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap_diff(a, b[:-1])


def test_sign_test_matches_exact_binomial():
    a, b = np.array([1] * 9 + [0] + [1] * 5), np.array([0] * 9 + [1] + [1] * 5)  # 9 wins, 1 loss, 5 ties
    assert sign_test(a, b) == pytest.approx(2 * (1 + 10) / 2**10)  # 22 / 1024 = 0.021484375
    assert sign_test(a, b) == sign_test(b, a)
    assert sign_test([1, 0, 1], [1, 0, 1]) == 1.0
    assert sign_test([1, 0], [0, 1]) == 1.0
    assert sign_test(np.ones(20), np.zeros(20)) == pytest.approx(2 / 2**20)


def test_sign_test_agrees_with_scipy_binomtest():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 2, size=60), rng.integers(0, 2, size=60)
    wins, losses = int((a > b).sum()), int((a < b).sum())
    assert sign_test(a, b) == pytest.approx(scipy_stats.binomtest(wins, wins + losses, 0.5).pvalue)


def test_mean_std_over_seeds():
    out = mean_std_over_seeds({0: 1.0, 1: 2.0, 2: 3.0})
    assert out == {"mean": 2.0, "std": 1.0, "n": 3}
    single = mean_std_over_seeds([4.0])
    assert single["mean"] == 4.0 and math.isnan(single["std"]) and single["n"] == 1
