"""An explicit few-step sampler for latent consistency models, differentiable in the Q-Sched coefficients.

`sample_lcm` is `LatentConsistencyModelPipeline.__call__` written out as one loop with the Q-Sched scheduler in
it, so that a reader sees every tensor and the gradient search can backpropagate from the images to
(start_x, start_eps). It reproduces the pipeline exactly (same prompt encoding, initial latents, guidance-scale
embedding, UNet calls, scheduler steps, VAE decode and [0, 1] post-processing), with three differences:
  * no `@torch.no_grad`: the UNet and VAE run with autograd on (the text encoder does not: nothing upstream
    of the prompt embeddings depends on the coefficients);
  * the scheduler is a fresh `QSchedLCMScheduler` / `QSchedTCDScheduler` built from `pipe.scheduler.config`,
    so `pipe` is never modified and coefficients may be tensors with `requires_grad`;
  * `scheduler_family="tcd"` runs the same distilled UNet under TCD with stochasticity gamma = `eta` (the
    stock pipeline cannot: it passes eta=None to the scheduler).

LCM guidance: the student was distilled with the guidance scale as an input, so each step makes ONE UNet call
with timestep_cond = embed(w), w = guidance_scale - 1 (the Imagen convention used by diffusers); there is no
conditional/unconditional batch doubling as in classifier-free guidance.

Shapes: B prompts, latents (B, C, h, w) with h = H / vae_scale_factor, images (B, 3, H, W) in [0, 1].
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from diffusers import LCMScheduler, TCDScheduler
from diffusers.utils.torch_utils import randn_tensor

from .checks import check_number
from .sched import CoefficientBatch, QSchedCoefficients, QSchedLCMScheduler, QSchedTCDScheduler

FAMILIES = {"lcm": QSchedLCMScheduler, "tcd": QSchedTCDScheduler}


def encode_prompts(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """CLIP text embeddings (B, L, D) exactly as the pipeline computes them (max-length padding, no grad)."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or len(prompts) == 0:
        raise ValueError(f"prompts={prompts!r} must be a non-empty list of strings (wrap a single one: [prompt])")
    tok = pipe.tokenizer(list(prompts), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    device = pipe.text_encoder.device
    mask = tok.attention_mask.to(device) if getattr(pipe.text_encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        embeds = pipe.text_encoder(tok.input_ids.to(device), attention_mask=mask)[0]  # (B, L, D)
    return embeds.to(dtype=pipe.text_encoder.dtype)


def latent_shape(pipe, batch: int, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
    """(B, C, h, w) of the initial latents; height/width default to the UNet's native image size."""
    height = height or pipe.unet.config.sample_size * pipe.vae_scale_factor
    width = width or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if height % pipe.vae_scale_factor or width % pipe.vae_scale_factor:
        raise ValueError(f"height={height}, width={width} must be multiples of vae_scale_factor="
                         f"{pipe.vae_scale_factor}")
    f = pipe.vae_scale_factor
    return (batch, pipe.unet.config.in_channels, height // f, width // f)


def initial_latents(pipe, batch: int, generator: torch.Generator | None, height: int | None = None,
                    width: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian initial latents (B, C, h, w), drawn as the pipeline draws them (before init_noise_sigma)."""
    return randn_tensor(latent_shape(pipe, batch, height, width), generator=generator, device=pipe.unet.device,
                        dtype=dtype)


def guidance_embedding(pipe, guidance_scale: float, batch: int, dtype: torch.dtype) -> torch.Tensor | None:
    """The LCM guidance condition embed(w), w = guidance_scale - 1, (B, time_cond_proj_dim); None if unused."""
    dim = pipe.unet.config.time_cond_proj_dim
    if dim is None:
        return None
    w = torch.tensor(guidance_scale - 1).repeat(batch)  # (B,)
    if hasattr(pipe, "get_guidance_scale_embedding"):
        emb = pipe.get_guidance_scale_embedding(w, embedding_dim=dim)
    else:
        emb = sinusoidal_embedding(w * 1000.0, dim)
    return emb.to(device=pipe.unet.device, dtype=dtype)


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """[sin(v f_k), cos(v f_k)] with f_k = 10000^(-k / (dim/2 - 1)), (B,) -> (B, dim) (zero-padded if odd)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))  # (half,)
    args = values.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


def decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode latents (B, C, h, w) to images (B, 3, H, W) in [0, 1] (differentiable)."""
    images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]  # in [-1, 1]
    return (images * 0.5 + 0.5).clamp(0, 1)


def make_scheduler(pipe, family: str, coeffs: QSchedCoefficients | None):
    """A fresh Q-Sched scheduler of `family` ("lcm" | "tcd") with `pipe.scheduler`'s config."""
    if family not in FAMILIES:
        raise ValueError(f"scheduler_family={family!r} must be one of {sorted(FAMILIES)}")
    if not isinstance(pipe.scheduler, (LCMScheduler, TCDScheduler)):
        raise ValueError(f"pipe.scheduler is a {type(pipe.scheduler).__name__}; sample_lcm needs an LCM-distilled "
                         "pipeline whose scheduler is an LCMScheduler or TCDScheduler (its config sets the betas)")
    return FAMILIES[family].from_config(pipe.scheduler.config, coefficients=coeffs)


def sample_lcm(pipe, prompts: Sequence[str] | None = None, *, prompt_embeds: torch.Tensor | None = None,
               num_steps: int = 4, guidance_scale: float = 8.0, latents: torch.Tensor | None = None,
               generator: torch.Generator | list[torch.Generator] | None = None,
               coeffs: QSchedCoefficients | CoefficientBatch | None = None,
               scheduler_family: str = "lcm", eta: float = 0.0, output: str = "images") -> torch.Tensor:
    """Few-step LCM / TCD sampling with Q-Sched coefficients; images (B, 3, H, W) in [0, 1] or final latents.

    Matches `pipe(prompt=prompts, num_inference_steps=num_steps, guidance_scale=guidance_scale, latents=latents,
    generator=generator, output_type="pt").images` when coeffs is None and scheduler_family="lcm".
    `generator` draws the initial latents (when `latents` is None) and then the per-step noise, in that order;
    a list of B generators gives every sample its own noise stream (as diffusers' `randn_tensor` does).
    coeffs=None runs the stock update (identity ramps), whatever coefficients `pipe.scheduler` may hold; a
    `CoefficientBatch` of B entries gives sample j its own coefficients (the batched search engine).
    """
    if (prompts is None) == (prompt_embeds is None):
        raise ValueError("pass exactly one of prompts= (list of strings) or prompt_embeds= (B, L, D)")
    if output not in ("images", "latents"):
        raise ValueError(f"output={output!r} must be 'images' or 'latents'")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r} must be an int >= 1")
    check_number(guidance_scale, "guidance_scale", 0.0, hint="w + 1 as in diffusers; the tiny student uses 4.0")
    check_number(eta, "eta", 0.0, 1.0, hint="TCD's gamma; 0 = deterministic")
    # 1. text condition (B, L, D)
    embeds = encode_prompts(pipe, prompts) if prompt_embeds is None else prompt_embeds
    batch = embeds.shape[0]
    for name, n in (("coeffs", len(coeffs) if isinstance(coeffs, CoefficientBatch) else batch),
                    ("generator", len(generator) if isinstance(generator, list) else batch)):
        if n != batch:
            raise ValueError(f"{name} has {n} entries but the batch has {batch} prompts; give one per prompt")
    # 2. a fresh Q-Sched scheduler and its N timesteps (e.g. N=4: [999, 759, 499, 259])
    scheduler = make_scheduler(pipe, scheduler_family, coeffs)
    scheduler.set_timesteps(num_steps, device=pipe.unet.device)
    # 3. initial latents x_T (B, C, h, w), scaled by the scheduler's initial sigma (1 for LCM and TCD), and the
    #    guidance condition embed(w) (B, time_cond_proj_dim)
    if latents is None:
        latents = initial_latents(pipe, batch, generator, dtype=embeds.dtype)
    elif latents.shape[0] != batch:
        raise ValueError(f"latents has batch {latents.shape[0]} but there are {batch} prompts; pass one per prompt")
    latents = latents.to(pipe.unet.device) * scheduler.init_noise_sigma
    w_embedding = guidance_embedding(pipe, guidance_scale, batch, latents.dtype)
    step_kwargs = {"eta": eta} if scheduler_family == "tcd" else {}
    # 4. one UNet call per step; the scheduler applies (c^x_i, c^eps_i) inside its update
    for t in scheduler.timesteps:
        latents = latents.to(embeds.dtype)
        eps_hat = pipe.unet(latents, t, timestep_cond=w_embedding, encoder_hidden_states=embeds,
                            return_dict=False)[0]  # (B, C, h, w)
        latents, denoised = scheduler.step(eps_hat, t, latents, generator=generator, return_dict=False,
                                           **step_kwargs)
    # 5. LCM's result is the last consistency output `denoised`; TCD's is the last x_s (x_0 up to alpha_bar_0)
    final = denoised if scheduler_family == "lcm" else latents
    final = final.to(embeds.dtype)
    return final if output == "latents" else decode(pipe, final)


sample_lcm.supports_coefficient_batch = True  # search.generate_points may pass a CoefficientBatch
