"""The JAQ equation on per-image scores: closed form, scales, the log floor, and argmax over JAQ (not raw lists)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsched_core.jaq import best_by_jaq, jaq


def test_jaq_closed_form():
    out = jaq(torch.tensor([30.0, 34.0]), torch.tensor([0.2, 0.4]), k=2.0)
    assert out["tc"].item() == pytest.approx(math.log(32.0))
    assert out["iq"].item() == pytest.approx(0.3)
    assert out["jaq"].item() == pytest.approx(math.log(32.0) + 0.6)


def test_k0_is_tc_only():
    tc, iq = torch.tensor([20.0, 25.0, 31.0]), torch.tensor([0.9, 0.1, 0.5])
    assert jaq(tc, iq, k=0.0)["jaq"].item() == pytest.approx(math.log(tc.mean().item()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 1)), min_size=1, max_size=20),
       st.floats(0, 5))
def test_terms_on_comparable_scales(pairs, k):
    tc, iq = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    out = jaq(tc, iq, k=k)
    assert 0.0 <= out["tc"].item() <= math.log(100.0) + 1e-5  # log CLIPScore in [0, 4.6]
    assert 0.0 <= k * out["iq"].item() <= k + 1e-5  # k * IQ in [0, k]
    assert out["jaq"].item() == pytest.approx(out["tc"].item() + k * out["iq"].item(), abs=1e-5)


def test_log_floor_keeps_objective_finite():
    out = jaq(torch.zeros(4), torch.full((4,), 0.5))  # every cosine <= 0: mean CLIPScore 0
    assert out["tc"].item() == 0.0 and math.isfinite(out["jaq"].item())
    assert jaq(torch.zeros(4), torch.full((4,), 0.5), tc_floor=0.1)["tc"].item() == pytest.approx(math.log(0.1))


@pytest.mark.parametrize("tc, iq, match", [
    ([-1.0, 30.0], [0.5, 0.5], r"\[0, 100\]"),
    ([30.0, 130.0], [0.5, 0.5], r"\[0, 100\]"),
    ([30.0, 30.0], [0.5, 1.5], r"\[0, 1\]"),
    ([30.0, 30.0], [0.5], "one score per image"),
    ([], [], "non-empty"),
])
def test_invalid_scores_raise(tc, iq, match):
    with pytest.raises(ValueError, match=match):
        jaq(torch.tensor(tc), torch.tensor(iq))


def test_negative_k_raises():
    with pytest.raises(ValueError, match="k=-1"):
        jaq(torch.tensor([30.0]), torch.tensor([0.5]), k=-1)


def test_argmax_runs_over_jaq_not_raw_score_lists():
    # Grid point A has the higher CLIPScore, B the higher JAQ: log(29) + 2*0.5 > log(30) + 2*0.2.
    score_sets = {"A": ([30.0, 30.0], [0.2, 0.2]), "B": ([29.0, 29.0], [0.5, 0.5]), "C": ([10.0, 12.0], [0.6, 0.6])}
    raw_lists = {key: tc + iq for key, (tc, iq) in score_sets.items()}
    assert max(raw_lists, key=raw_lists.get) == "A"  # what the released code's max over score lists picks
    best, values = best_by_jaq(score_sets, k=2.0)
    assert best == "B"
    assert values["B"] == pytest.approx(math.log(29.0) + 1.0, rel=1e-6)
    assert set(values) == set(score_sets)
    assert best_by_jaq(score_sets, k=0.0)[0] == "A"  # TC only: the highest CLIPScore wins


def test_best_by_jaq_empty_raises():
    with pytest.raises(ValueError, match="at least one candidate"):
        best_by_jaq({})


def test_gradient_flows_through_jaq():
    tc = torch.tensor([20.0, 40.0], requires_grad=True)
    iq = torch.tensor([0.3, 0.7], requires_grad=True)
    jaq(tc, iq, k=2.0)["jaq"].backward()
    assert torch.allclose(tc.grad, torch.full((2,), 0.5 / 30.0))  # d log(mean)/d tc_i = 1/(n * mean)
    assert torch.allclose(iq.grad, torch.full((2,), 1.0))  # k / n
