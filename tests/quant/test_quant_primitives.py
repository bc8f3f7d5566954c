"""Quantization primitives: a naive per-element reference, invariants, properties and error messages."""
import math

import numpy as np

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsched_core.quant import (choose_qparams, dequantize, fake_quantize, qrange, quant_error, quantize,
                               round_ste, snr_db)

GRANULARITIES = [None, -1, 4]
BITS = list(range(2, 9))


def naive_quantize(x: torch.Tensor, bits: int, group_size, symmetric: bool, scale_rule: str = "torchao"):
    """Reference: plain Python loops over rows, groups and elements, in float64."""
    rows = x.reshape(-1, x.shape[-1]).tolist()
    k = len(rows[0])
    if group_size is None:
        groups = [[(r, c) for r in range(len(rows)) for c in range(k)]]
    else:
        g = k if group_size == -1 else group_size
        groups = [[(r, c) for c in range(start, start + g)] for r in range(len(rows)) for start in range(0, k, g)]
    codes, x_hat = [[0] * k for _ in rows], [[0.0] * k for _ in rows]
    for members in groups:
        vals = [rows[r][c] for r, c in members]
        lo, hi = min(min(vals), 0.0), max(max(vals), 0.0)
        if symmetric:
            qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            levels = (qmax - qmin) / 2 if scale_rule == "torchao" else qmax
            # float32 like the library: under "torchao" -max / s = qmin - 0.5 is an exact tie (to even)
            s, z = max(np.float32(max(-lo, hi)) / np.float32(levels), np.float32(1e-12)), 0
        else:
            qmin, qmax = 0, 2**bits - 1
            s = max((hi - lo) / qmax, 1e-12)
            z = min(max(round(-lo / s), qmin), qmax)
        for r, c in members:
            q = min(max(int(np.round(np.float32(rows[r][c]) * (np.float32(1) / np.float32(s)))) + z, qmin), qmax)
            codes[r][c], x_hat[r][c] = q, (q - z) * float(s)
    return torch.tensor(codes).reshape(x.shape), torch.tensor(x_hat, dtype=torch.float64).reshape(x.shape)


def expand(scale: torch.Tensor, shape) -> torch.Tensor:
    """Per-element scale: repeat each group's scale over its G columns."""
    return scale.repeat_interleave(shape[-1] // scale.shape[-1], dim=-1).expand(shape)


@pytest.mark.parametrize("scale_rule", ["torchao", "qmax"])
@pytest.mark.parametrize("group_size", GRANULARITIES, ids=["tensor", "channel", "group4"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("bits", BITS)
def test_matches_naive_loop(bits, symmetric, group_size, scale_rule):
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(bits)) * 2 + 0.3
    scale, zero = choose_qparams(x, bits, group_size, symmetric, scale_rule=scale_rule)
    q = quantize(x, scale, zero, bits, symmetric)
    q_ref, x_hat_ref = naive_quantize(x, bits, group_size, symmetric, scale_rule)
    assert torch.equal(q.long(), q_ref), f"codes differ at {(q.long() != q_ref).nonzero().tolist()}"
    torch.testing.assert_close(dequantize(q, scale, zero).double(), x_hat_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("group_size", GRANULARITIES + [8], ids=["tensor", "channel", "group4", "group8"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_error_at_most_half_a_step(symmetric, group_size):
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    for bits in BITS:
        scale, zero = choose_qparams(x, bits, group_size, symmetric)
        err = (dequantize(quantize(x, scale, zero, bits, symmetric), scale, zero) - x).abs()
        assert bool((err <= expand(scale, x.shape) / 2 + 1e-6).all()), f"bits={bits}: max err {err.max()}"


def test_clip_ratio_bounds_error_inside_range_only():
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    scale, zero = choose_qparams(x, 4, -1, True, clip_ratio=0.5)
    x_hat = fake_quantize(x, 4, -1, True, clip_ratio=0.5)
    inside = x.abs() <= 7 * scale
    assert bool(((x_hat - x).abs()[inside] <= (scale.expand_as(x)[inside] / 2 + 1e-6)).all())
    assert bool((x_hat.abs() <= 8 * scale + 1e-6).all()) and bool((~inside).any())


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_requantization_is_idempotent(symmetric):
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
    scale, zero = choose_qparams(x, 3, 16, symmetric)
    q = quantize(x, scale, zero, 3, symmetric)
    assert torch.equal(quantize(dequantize(q, scale, zero), scale, zero, 3, symmetric), q)
    if symmetric:  # under "qmax" max |x| lands exactly on +-qmax * s, so even the scale is chosen again
        once = fake_quantize(x, 3, 16, True, scale_rule="qmax")
        assert torch.equal(fake_quantize(once, 3, 16, True, scale_rule="qmax"), once)
        # under "torchao" it does not: -max maps to qmin * s, so a second pass picks a larger scale
        once = fake_quantize(x, 3, 16, True)
        assert not torch.equal(fake_quantize(once, 3, 16, True), once)


@pytest.mark.parametrize("group_size", GRANULARITIES + [32], ids=["tensor", "channel", "group4", "group32"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_error_falls_with_bits_on_gaussian(symmetric, group_size):
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))
    errs = [quant_error(x, b, group_size, symmetric) for b in BITS]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.01  # 8 bits is below 1 % relative error on Gaussian data


def test_finer_granularity_lowers_error():
    x = torch.randn(32, 128, generator=torch.Generator().manual_seed(4)) * torch.rand(32, 1) * 5
    errs = [quant_error(x, 4, g) for g in (None, -1, 32)]
    assert errs[0] > errs[1] > errs[2], errs


def test_worked_example_from_the_docstring():
    x = torch.tensor([[-3.5, 0.0, 2.0, 10.2]])
    s_sym, z_sym = choose_qparams(x, 4, -1, symmetric=True)
    s_asym, z_asym = choose_qparams(x, 4, -1, symmetric=False)
    s_qmax, _ = choose_qparams(x, 4, -1, symmetric=True, scale_rule="qmax")
    assert math.isclose(s_sym.item(), 10.2 / 7.5, rel_tol=1e-6) and z_sym.item() == 0
    assert math.isclose(s_qmax.item(), 10.2 / 7, rel_tol=1e-6)
    assert math.isclose(s_asym.item(), 13.7 / 15, rel_tol=1e-6) and z_asym.item() == 4
    assert quantize(x, s_sym, z_sym, 4, True).tolist() == [[-3, 0, 1, 7]]  # 10.2 / s = 7.5 -> clipped to 7
    assert quantize(x, s_qmax, z_sym, 4, True).tolist() == [[-2, 0, 1, 7]]
    assert quant_error(x, 4, -1, False) < quant_error(x, 4, -1, True)


def test_shapes_dtypes_and_ranges():
    x = torch.randn(2, 5, 64)  # (B, T, K) activation
    s, z = choose_qparams(x, 8, -1, False)
    assert s.shape == (2, 5, 1) and s.dtype == torch.float32 and z.dtype == torch.int32
    assert choose_qparams(x, 8, None)[0].shape == (1, 1, 1)
    assert choose_qparams(x, 8, 16)[0].shape == (2, 5, 4)
    assert quantize(x, s, z, 8, False).dtype == torch.uint8
    assert quantize(x, *choose_qparams(x, 8), 8).dtype == torch.int8
    assert qrange(4, True) == (-8, 7) and qrange(4, False) == (0, 15) and qrange(2, True) == (-2, 1)
    half = x.half()
    assert fake_quantize(half, 4, 32).dtype == torch.float16


def test_zero_rows_and_static_range_override():
    x = torch.zeros(3, 8)
    x[1] = torch.linspace(-1, 1, 8)
    x_hat = fake_quantize(x, 4, -1, False)
    assert torch.isfinite(x_hat).all() and torch.equal(x_hat[0], torch.zeros(8))
    s, z = choose_qparams(torch.zeros(1), 8, None, False, min_val=-2.0, max_val=6.0)
    assert math.isclose(s.item(), 8 / 255, rel_tol=1e-6) and z.item() == round(2 / (8 / 255))
    y = fake_quantize(torch.tensor([[10.0, -5.0]]), 8, None, False, qparams=(s, z))
    assert torch.allclose(y, torch.tensor([[6.0, -2.0]]), atol=s.item())  # clamped to the static range


def test_round_ste_gradient_is_identity():
    x = torch.tensor([0.2, 0.5, 1.5, -2.7, 3.49], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [0.0, 0.0, 2.0, -3.0, 3.0]  # ties to even
    g = torch.tensor([1.0, -2.0, 3.0, 0.5, 7.0])
    y.backward(g)
    assert torch.equal(x.grad, g)


def test_fake_quantize_straight_through_and_clipped_gradient():
    x = torch.randn(4, 32, generator=torch.Generator().manual_seed(5), requires_grad=True)
    fake_quantize(x, 4, 8, True, scale_rule="qmax").sum().backward()
    # "qmax": nothing clipped, identity gradient (up to (1 / s) * s rounding: codes use the reciprocal scale)
    torch.testing.assert_close(x.grad, torch.ones_like(x), rtol=0, atol=1e-6)
    x.grad = None
    fake_quantize(x, 4, 8, True).sum().backward()  # "torchao": a group's positive max sits at 7.5 s, a tie
    groups = x.detach().view(4, 4, 8)          # that float rounding sends to 7 (kept) or 8 (clipped to 7)
    top = ((groups == groups.amax(-1, keepdim=True)) & (groups.amax(-1, keepdim=True) >= -groups.amin(-1, keepdim=True)))
    top = top.view(4, 32)
    ones = (x.grad - 1).abs() < 1e-6
    assert bool(ones[~top].all()) and bool((ones[top] | (x.grad[top] == 0)).all())
    x.grad = None
    scale, _ = choose_qparams(x, 4, -1, True, clip_ratio=0.5)
    fake_quantize(x, 4, -1, True, clip_ratio=0.5).sum().backward()
    q = (x.detach() * (1 / scale)).round()
    clipped = (q < -8) | (q > 7)
    assert clipped.any()
    torch.testing.assert_close(x.grad, (~clipped).float(), rtol=0, atol=1e-6)


def test_snr_db():
    x = torch.randn(64, 64)
    assert snr_db(x, x) == math.inf
    assert 20 < snr_db(x, fake_quantize(x, 4, 32)) < snr_db(x, fake_quantize(x, 8, 32))


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), n_groups=st.integers(1, 4), g=st.sampled_from([1, 2, 4, 8, 16]),
       bits=st.integers(2, 8), symmetric=st.booleans(), kind=st.sampled_from(["tensor", "channel", "group"]),
       seed=st.integers(0, 2**16), spread=st.floats(1e-3, 1e3))
def test_property_roundtrip(rows, n_groups, g, bits, symmetric, kind, seed, spread):
    k = n_groups * g
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(seed)) * spread
    group_size = {"tensor": None, "channel": -1, "group": g}[kind]
    scale, zero = choose_qparams(x, bits, group_size, symmetric)
    q = quantize(x, scale, zero, bits, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    assert q.shape == x.shape and int(q.min()) >= qmin and int(q.max()) <= qmax
    assert int(zero.min()) >= qmin and int(zero.max()) <= qmax
    err = (dequantize(q, scale, zero) - x).abs()
    assert bool((err <= expand(scale, x.shape) * (0.5 + 1e-4)).all())
    assert torch.equal(quantize(dequantize(q, scale, zero), scale, zero, bits, symmetric), q)


# ------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("bits", [1, 9, 16, 0, -4, 4.0, 4.5, True, "4", None])
def test_bad_bits_named_in_error(bits):
    with pytest.raises(ValueError, match=f"bits={bits!r}".replace("(", r"\(").replace(".", r"\.")):
        choose_qparams(torch.randn(2, 8), bits)
    with pytest.raises(ValueError, match="bits="):
        fake_quantize(torch.randn(2, 8), bits)


def test_group_size_not_dividing_suggests_divisors():
    with pytest.raises(ValueError, match=r"group_size=48 must divide in_features=320; pick a divisor such "
                                         r"as 32 or 40, or -1 for per-channel"):
        choose_qparams(torch.randn(4, 320), 4, 48)


@pytest.mark.parametrize("group_size", [0, -2, 32.0, "per_token", True])
def test_bad_group_size_named_in_error(group_size):
    with pytest.raises(ValueError, match=f"group_size={group_size!r}"):
        choose_qparams(torch.randn(4, 64), 4, group_size)


@pytest.mark.parametrize("bad, word", [(math.nan, "1 NaN"), (math.inf, "1 inf"), (-math.inf, "1 inf")])
def test_non_finite_input_rejected(bad, word):
    w = torch.randn(4, 8)
    w[2, 3] = bad
    with pytest.raises(ValueError, match=word):
        choose_qparams(w, 4)
    with pytest.raises(ValueError, match=word):
        fake_quantize(w, 4, qparams=choose_qparams(torch.randn(4, 8), 4))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.int64, torch.uint8])
def test_integer_tensor_rejected(dtype):
    with pytest.raises(ValueError, match=f"integer dtype {dtype}"):
        choose_qparams(torch.ones(2, 8, dtype=dtype), 8)


def test_other_bad_arguments():
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="clip_ratio=1.5"):
        choose_qparams(x, 4, clip_ratio=1.5)
    with pytest.raises(ValueError, match="clip_ratio=0"):
        choose_qparams(x, 4, clip_ratio=0)
    with pytest.raises(ValueError, match="min_val > max_val"):
        choose_qparams(x, 4, None, min_val=1.0, max_val=-1.0)
    with pytest.raises(ValueError, match="shape"):
        choose_qparams(torch.zeros(0, 8), 4)
    with pytest.raises(ValueError, match="3 groups"):
        dequantize(torch.zeros(2, 8, dtype=torch.int8), torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.int32))


@pytest.mark.parametrize("bits, group_size, symmetric", [(4, 32, True), (8, -1, False), (3, None, True)])
def test_inference_and_training_paths_give_the_same_values(bits, group_size, symmetric):
    """Without autograd the codes take a shorter path (round, clamp); with it, the straight-through one. Same values,
    also where codes are clamped (static qparams narrower than the data)."""
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(bits)) * 3
    narrow = choose_qparams(x * 0.5, bits, group_size, symmetric)  # half the range: many values clamp
    for qparams in (None, narrow):
        with torch.no_grad():
            fast = fake_quantize(x, bits, group_size, symmetric, qparams=qparams)
        xg = x.clone().requires_grad_(True)
        slow = fake_quantize(xg, bits, group_size, symmetric, qparams=qparams)
        assert torch.equal(fast, slow.detach())
        slow.sum().backward()
        g = xg.grad  # straight-through: 1 inside the range (up to s * (1 / s) rounding), 0 where clamped
        assert bool(((g == 0) | torch.isclose(g, torch.ones_like(g), atol=1e-6)).all())
    assert (g == 0).any()  # the narrow qparams clamped something
