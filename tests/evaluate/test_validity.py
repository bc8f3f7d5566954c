"""Instrument-validity statistics on planted effects: they must see a known difference and not invent one."""
import math

import numpy as np
import pytest

from qsched_core.evaluate.validity import (ValidityConfig, Variant, jaq_value, p_first_wins, paired_jaq_diff)
from qsched_core.stats import spearman


def scores(n, tc_mean, iq_mean, seed):
    rng = np.random.default_rng(seed)
    return {"tc": np.clip(rng.normal(tc_mean, 3, n), 0, 100), "iq": np.clip(rng.normal(iq_mean, 0.1, n), 0, 1)}


def test_jaq_value_matches_the_definition():
    s = {"tc": np.array([80.0, 90.0]), "iq": np.array([0.5, 0.7])}
    assert math.isclose(jaq_value(s["tc"], s["iq"], 2.0), math.log(85.0) + 2 * 0.6)
    assert jaq_value(np.zeros(3), np.zeros(3), 2.0) == 0.0  # the tc floor of 1


def test_paired_difference_sees_a_planted_damage_and_no_phantom():
    fp = scores(400, 88, 0.70, 0)
    damaged = {"tc": fp["tc"] - 1.5, "iq": fp["iq"] - 0.03}
    d, lo, hi = paired_jaq_diff(fp, damaged, 2.0, n_boot=300)
    assert d > 0 and lo > 0, (d, lo, hi)
    same = paired_jaq_diff(fp, {k: v.copy() for k, v in fp.items()}, 2.0, n_boot=300)
    assert same == (0.0, 0.0, 0.0)
    other = scores(400, 88, 0.70, 1)  # an equally good model: the interval must cover 0
    d, lo, hi = paired_jaq_diff(fp, other, 2.0, n_boot=300)
    assert lo < 0 < hi, (d, lo, hi)


def test_win_probability_grows_with_calibration_size():
    fp = scores(1000, 88, 0.70, 2)
    damaged = {"tc": fp["tc"] - 0.5 + np.random.default_rng(3).normal(0, 3, 1000), "iq": fp["iq"]}
    p = [p_first_wins(fp, damaged, 2.0, n, n_draws=400) for n in (5, 40, 400)]
    assert p[0] < p[1] < p[2] and p[2] > 0.9 and p[0] < 0.9, p


def test_spearman_signs_and_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_config_needs_the_fp_reference():
    with pytest.raises(ValueError, match="fp-4step"):
        ValidityConfig(variants=(Variant("w4a8", 4),))
    assert Variant("w4a8", 4, quantize_convs=True).name == "w4a8-all-4step"
