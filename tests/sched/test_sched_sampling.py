"""The explicit sampler reproduces LatentConsistencyModelPipeline exactly and is differentiable in the coefficients."""
import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, TCDScheduler

from qsched_core.sampling import (
    decode,
    encode_prompts,
    guidance_embedding,
    initial_latents,
    sample_lcm,
    sinusoidal_embedding,
)
from qsched_core.sched import QSchedCoefficients, QSchedLCMScheduler

STEPS, GUIDANCE = 4, 8.0


def pipe_images(pipe, prompts, latents=None, seed=0):
    return pipe(prompt=prompts, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=latents,
                generator=torch.Generator().manual_seed(seed), output_type="pt").images


def test_sample_lcm_equals_the_pipeline(tiny_pipe, prompts):
    want = pipe_images(tiny_pipe, prompts)  # the generator draws the latents, then the step noise
    got = sample_lcm(tiny_pipe, prompts, num_steps=STEPS, guidance_scale=GUIDANCE,
                     generator=torch.Generator().manual_seed(0))
    assert got.shape == (2, 3, 16, 16) and 0 <= got.min() and got.max() <= 1
    assert torch.equal(got, want), f"max |diff| = {(got - want).abs().max()}"


def test_sample_lcm_with_given_latents_and_embeddings_equals_the_pipeline(tiny_pipe, prompts):
    latents = initial_latents(tiny_pipe, 2, torch.Generator().manual_seed(3))
    want = pipe_images(tiny_pipe, prompts, latents=latents, seed=5)
    got = sample_lcm(tiny_pipe, prompt_embeds=encode_prompts(tiny_pipe, prompts), num_steps=STEPS,
                     guidance_scale=GUIDANCE, latents=latents, generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, want)


class TCDForLCMPipeline(TCDScheduler):
    """Stock TCD with a fixed gamma: LatentConsistencyModelPipeline would otherwise pass eta=None."""

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        return TCDScheduler.step(self, model_output, timestep, sample, eta=0.3, generator=generator,
                                 return_dict=return_dict)


def test_tcd_family_equals_the_pipeline_under_stock_tcd(tiny_pipe, prompts):
    tiny_pipe.scheduler = TCDForLCMPipeline.from_config(tiny_pipe.scheduler.config)
    latents = initial_latents(tiny_pipe, 2, torch.Generator().manual_seed(1))
    want = pipe_images(tiny_pipe, prompts, latents=latents)
    got = sample_lcm(tiny_pipe, prompts, num_steps=STEPS, guidance_scale=GUIDANCE, latents=latents,
                     generator=torch.Generator().manual_seed(0), scheduler_family="tcd", eta=0.3)
    assert torch.equal(got, want)


def test_coefficients_match_the_drop_in_scheduler_inside_the_pipeline(tiny_pipe, prompts):
    coeffs = QSchedCoefficients(start_x=0.9, start_eps=1.1)
    stock = pipe_images(tiny_pipe, prompts)
    tiny_pipe.scheduler = QSchedLCMScheduler.from_scheduler(tiny_pipe.scheduler, coeffs)
    want = pipe_images(tiny_pipe, prompts)
    got = sample_lcm(tiny_pipe, prompts, num_steps=STEPS, guidance_scale=GUIDANCE,
                     generator=torch.Generator().manual_seed(0), coeffs=coeffs)
    assert torch.equal(got, want)
    assert (got - stock).abs().max() > 1e-3  # and the coefficients changed the images


def test_gradients_flow_from_images_to_the_coefficients(tiny_pipe, prompts):
    start_x = torch.tensor(0.95, requires_grad=True)
    start_eps = torch.tensor(1.05, requires_grad=True)
    images = sample_lcm(tiny_pipe, prompts, num_steps=2, guidance_scale=GUIDANCE,
                        generator=torch.Generator().manual_seed(0),
                        coeffs=QSchedCoefficients(start_x=start_x, start_eps=start_eps))
    grads = torch.autograd.grad((images - 0.5).square().mean(), [start_x, start_eps])
    for g in grads:
        assert torch.isfinite(g) and g.abs() > 0


def test_output_latents_and_decode(tiny_pipe, prompts):
    latents = sample_lcm(tiny_pipe, prompts, num_steps=2, generator=torch.Generator().manual_seed(0),
                         output="latents")
    images = sample_lcm(tiny_pipe, prompts, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 8, 8)
    assert torch.equal(decode(tiny_pipe, latents), images)


def test_own_guidance_embedding_matches_the_pipeline(tiny_pipe):
    w = torch.tensor([7.0, 0.5, 2.0])
    torch.testing.assert_close(sinusoidal_embedding(w * 1000.0, 32),
                               tiny_pipe.get_guidance_scale_embedding(w, embedding_dim=32), atol=1e-6, rtol=1e-6)
    assert sinusoidal_embedding(w, 33).shape == (3, 33)
    assert guidance_embedding(tiny_pipe, 8.0, 3, torch.float32).shape == (3, 32)


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of prompts"),
    (dict(prompts="a red circle"), "list of strings"),
    (dict(prompts=["a"], output="pil"), "output='pil'"),
    (dict(prompts=["a"], num_steps=0), "num_steps=0"),
    (dict(prompts=["a"], scheduler_family="ddim"), "scheduler_family='ddim'"),
    (dict(prompts=["a"], latents=torch.zeros(2, 4, 8, 8)), "latents has batch 2"),
])
def test_bad_arguments_are_rejected(tiny_pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_lcm(tiny_pipe, **kwargs)


def test_non_lcm_scheduler_is_rejected(tiny_pipe):
    tiny_pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(tiny_pipe.scheduler.config)
    with pytest.raises(ValueError, match="pipe.scheduler is a EulerAncestralDiscreteScheduler"):
        sample_lcm(tiny_pipe, ["a red circle"])
