"""Q-Sched schedulers: exact reduction to diffusers at c = 1, hand-computed steps at c != 1, ramps, config I/O."""
import math

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from qsched_core.sched import (
    QSchedCoefficients,
    QSchedEulerAncestralScheduler,
    QSchedFlowMatchEulerScheduler,
    QSchedLCMScheduler,
    QSchedTCDScheduler,
    make_qsched_scheduler,
    ramp,
)

N = 4
SHAPE = (2, 4, 8, 8)
TCD_ETA = 0.3  # stochastic, so the re-noising branch is exercised


def stock_scheduler(family: str):
    """The stock scheduler of each family, configured as in the paper's pipelines."""
    if family == "lcm":
        return LCMScheduler()
    if family == "tcd":
        return TCDScheduler()
    if family == "euler_a":  # SDXL-Turbo
        return EulerAncestralDiscreteScheduler(timestep_spacing="trailing", steps_offset=1)
    return FlowMatchEulerDiscreteScheduler(shift=1.0)  # FLUX.1-schnell, no dynamic shifting


def set_steps(sched, family: str):
    if family == "flow":  # FluxPipeline passes sigma = linspace(1, 1/N, N)
        sched.set_timesteps(sigmas=np.linspace(1.0, 1.0 / N, N).tolist())
    else:
        sched.set_timesteps(N)


def run_step(sched, family, model_output, t, x, generator):
    """One step through the public API; returns every tensor the step returns."""
    if family == "euler_a":
        sched.scale_model_input(x, t)  # as the pipeline does (the network input is not what we test)
    kwargs = {"eta": TCD_ETA} if family == "tcd" else {}
    return sched.step(model_output, t, x, generator=generator, return_dict=False, **kwargs)


FAMILIES = ["lcm", "tcd", "euler_a", "flow"]


@pytest.mark.parametrize("family", FAMILIES)
def test_identity_coefficients_equal_stock_scheduler_bitwise(family):
    stock = stock_scheduler(family)
    qsched = make_qsched_scheduler(stock)
    set_steps(stock, family)
    set_steps(qsched, family)
    assert torch.equal(stock.timesteps, qsched.timesteps)
    outputs = torch.Generator().manual_seed(0)
    g_stock, g_q = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x_stock = torch.randn(SHAPE, generator=outputs) * getattr(stock, "init_noise_sigma", 1.0)
    x_q = x_stock.clone()
    for t in stock.timesteps:
        eps = torch.randn(SHAPE, generator=outputs)
        out_stock = run_step(stock, family, eps, t, x_stock, g_stock)
        out_q = run_step(qsched, family, eps, t, x_q, g_q)
        assert len(out_stock) == len(out_q)
        for a, b in zip(out_stock, out_q):
            assert torch.equal(a, b), f"{family} at t={t}: max |diff| = {(a - b).abs().max()}"
        x_stock, x_q = out_stock[0], out_q[0]


def expected_step(family, sched, i, x, eps, c_x, c_eps, z):
    """Step i from the paper's formulas, with alpha_bar / sigma read off the scheduler."""
    ts = sched.timesteps
    if family in ("lcm", "tcd"):
        ab = sched.alphas_cumprod
        t = int(ts[i])
        x, eps = c_x * x, c_eps * eps
        x0_hat = (x - math.sqrt(1 - ab[t]) * eps) / math.sqrt(ab[t])
        if family == "lcm":
            s = int(ts[i + 1])
            scaled = 10.0 * t  # timestep_scaling = 10, sigma_data = 0.5
            c_skip, c_out = 0.25 / (scaled**2 + 0.25), scaled / math.sqrt(scaled**2 + 0.25)
            denoised = c_out * x0_hat + c_skip * x
            return math.sqrt(ab[s]) * denoised + math.sqrt(1 - ab[s]) * z
        s = int(ts[i + 1])
        s_prime = math.floor((1 - TCD_ETA) * s)
        x_s_prime = math.sqrt(ab[s_prime]) * x0_hat + math.sqrt(1 - ab[s_prime]) * eps  # c^eps reused here
        ratio = ab[s] / ab[s_prime]
        return math.sqrt(ratio) * x_s_prime + math.sqrt(1 - ratio) * z
    sig, sig_next = float(sched.sigmas[i]), float(sched.sigmas[i + 1])
    if family == "euler_a":
        sigma_up = math.sqrt(sig_next**2 * (sig**2 - sig_next**2) / sig**2)
        sigma_down = math.sqrt(sig_next**2 - sigma_up**2)
        return c_x * x + c_eps * eps * (sigma_down - sig) + sigma_up * z
    return c_x * x + (sig_next - sig) * c_eps * eps


@pytest.mark.parametrize("family", FAMILIES)
def test_step_with_coefficients_matches_hand_computation(family):
    start_x, start_eps = 0.9, 1.15
    sched = make_qsched_scheduler(stock_scheduler(family), QSchedCoefficients(start_x, start_eps))
    set_steps(sched, family)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen)
    x = run_step(sched, family, torch.randn(SHAPE, generator=gen), sched.timesteps[0], x, gen)[0]  # step 0
    eps = torch.randn(SHAPE, generator=gen)
    z = torch.randn(SHAPE, generator=torch.Generator().set_state(gen.get_state()))  # the noise step 1 will draw
    got = run_step(sched, family, eps, sched.timesteps[1], x, gen)[0]
    c_x, c_eps = start_x + (1 - start_x) / (N - 1), start_eps + (1 - start_eps) / (N - 1)  # ramp at i = 1
    want = expected_step(family, sched, 1, x, eps, c_x, c_eps, z)
    torch.testing.assert_close(got, want.float(), atol=2e-6, rtol=1e-5)
    stock_like = expected_step(family, sched, 1, x, eps, 1.0, 1.0, z)
    assert (got - stock_like).abs().max() > 1e-3  # the coefficients really changed the update


def test_ramp_values_and_endpoints():
    torch.testing.assert_close(ramp(0.8, 1.0, 5), torch.tensor([0.8, 0.85, 0.9, 0.95, 1.0]))
    assert ramp(0.9, 1.0, 1).tolist() == pytest.approx([0.9])
    c_x, c_eps = QSchedCoefficients(start_x=0.955, start_eps=1.012, end_x=1.099, end_eps=0.967).ramps(3)
    torch.testing.assert_close(c_x, torch.tensor([0.955, 1.027, 1.099]))
    torch.testing.assert_close(c_eps, torch.tensor([1.012, 0.9895, 0.967]))
    c_x, c_eps = QSchedCoefficients(c_x=[0.9, 1.0, 1.1]).ramps(3)
    assert c_x.tolist() == pytest.approx([0.9, 1.0, 1.1]) and c_eps.tolist() == [1.0, 1.0, 1.0]
    assert QSchedCoefficients().is_identity and not QSchedCoefficients(start_eps=0.9).is_identity


@settings(max_examples=40, deadline=None)
@given(st.floats(0.05, 5.0), st.floats(0.05, 5.0), st.integers(2, 12))
def test_ramp_is_linear_from_first_to_last(first, last, n):
    c = ramp(first, last, n)
    assert c.shape == (n,)
    assert c[0] == torch.tensor(first, dtype=torch.float32) and c[-1] == torch.tensor(last, dtype=torch.float32)
    torch.testing.assert_close(c[1:] - c[:-1], torch.full((n - 1,), (last - first) / (n - 1)), atol=1e-5, rtol=1e-4)


def test_ramp_is_differentiable_in_start_values():
    start_x = torch.tensor(0.9, requires_grad=True)
    c_x, _ = QSchedCoefficients(start_x=start_x).ramps(4)
    (grad,) = torch.autograd.grad(c_x.sum(), start_x)
    assert float(grad) == pytest.approx(1 + 2 / 3 + 1 / 3)  # d c_i / d start = 1 - i / (N - 1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(start_x=float("nan")), "start_x=nan"),
    (dict(start_eps=0.0), "start_eps=0.0"),
    (dict(end_eps=-1.0), "end_eps=-1.0"),
    (dict(end_x=float("inf")), "end_x=inf"),
    (dict(start_x="0.9"), "start_x='0.9'"),
    (dict(start_x=True), "start_x=True"),
    (dict(start_x=torch.tensor([0.9, 1.0])), "start_x has shape"),
    (dict(c_eps=[1.0, -0.5]), "non-positive"),
    (dict(c_x=[[1.0]]), "1-D"),
    (dict(start_x=0.9, c_x=[0.9, 1.0]), "either the ramp"),
])
def test_bad_coefficients_are_rejected_with_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QSchedCoefficients(**kwargs)


def test_explicit_vector_of_wrong_length_is_rejected_at_use():
    coeffs = QSchedCoefficients(c_eps=[0.9, 1.0, 1.0])
    with pytest.raises(ValueError, match="c_eps has 3 entries but the sampler runs num_steps=4"):
        coeffs.ramps(4)
    with pytest.raises(ValueError, match="num_steps=0"):
        QSchedCoefficients().ramps(0)


def test_coefficients_round_trip_through_saved_config(tmp_path):
    coeffs = QSchedCoefficients(start_x=0.92, start_eps=1.08, c_eps=None)
    sched = QSchedTCDScheduler.from_scheduler(TCDScheduler(beta_end=0.02), coeffs)
    sched.save_config(tmp_path)
    loaded = QSchedTCDScheduler.from_pretrained(tmp_path)
    assert loaded.coefficients == coeffs and loaded.config.beta_end == 0.02
    same = QSchedTCDScheduler.from_config(sched.config)
    assert same.coefficients == coeffs
    assert QSchedTCDScheduler.from_config(TCDScheduler().config).coefficients.is_identity
    vectors = QSchedCoefficients(c_x=[0.9, 0.95, 1.0, 1.0], c_eps=torch.tensor([1.1, 1.0, 1.0, 1.0]))
    vec_sched = QSchedLCMScheduler.from_scheduler(LCMScheduler(), vectors)
    vec_sched.save_config(tmp_path / "vectors")
    assert QSchedLCMScheduler.from_pretrained(tmp_path / "vectors").coefficients == vectors
    direct = QSchedLCMScheduler(beta_start=0.001, coefficients=QSchedCoefficients(start_eps=0.8))
    assert direct.config.beta_start == 0.001 and direct.config.coefficients["start_eps"] == 0.8


def test_tensor_coefficients_are_stored_as_floats_in_the_config():
    start = torch.tensor(0.9, requires_grad=True)
    sched = QSchedLCMScheduler.from_scheduler(LCMScheduler(), QSchedCoefficients(start_x=start))
    assert sched.config.coefficients["start_x"] == pytest.approx(0.9)
    assert sched.coefficients.start_x is start  # the live tensor keeps its graph


@pytest.mark.parametrize("stock, klass", [
    (LCMScheduler(), QSchedLCMScheduler),
    (TCDScheduler(), QSchedTCDScheduler),
    (EulerAncestralDiscreteScheduler(), QSchedEulerAncestralScheduler),
    (FlowMatchEulerDiscreteScheduler(), QSchedFlowMatchEulerScheduler),
    (QSchedLCMScheduler(), QSchedLCMScheduler),
])
def test_make_qsched_scheduler_picks_the_family(stock, klass):
    sched = make_qsched_scheduler(stock, QSchedCoefficients(start_eps=0.9))
    assert type(sched) is klass and sched.coefficients.start_eps == 0.9
    assert isinstance(sched, type(stock))  # pipelines that check the stock class accept it


def test_unsupported_scheduler_is_named_in_the_error():
    with pytest.raises(ValueError, match="DDIMScheduler has no Q-Sched variant; supported: LCMScheduler"):
        make_qsched_scheduler(DDIMScheduler())


def test_step_errors_are_actionable():
    sched = QSchedLCMScheduler()
    with pytest.raises(ValueError, match="set_timesteps"):
        sched.step(torch.zeros(SHAPE), 999, torch.zeros(SHAPE))
    tcd = QSchedTCDScheduler()
    tcd.set_timesteps(N)
    with pytest.raises(ValueError, match="eta=None"):
        tcd.step(torch.zeros(SHAPE), tcd.timesteps[0], torch.zeros(SHAPE), eta=None)
    with pytest.raises(ValueError, match="coefficients=0.9 must be a QSchedCoefficients"):
        sched.set_coefficients(0.9)
