"""Training recipes of the tiny text-to-image model: a teacher, then a latent consistency model (LCM).

Teacher: a `UNet2DConditionModel` and its `CLIPTextModel` trained together (no pretrained text encoder
exists here) with the epsilon objective of DDPM on VAE latents, SD 1.5's noise schedule, and 10% caption
dropout so that classifier-free guidance (CFG) works.

Student (Luo et al., "Latent Consistency Models", arXiv 2310.04378, Algorithm 1): the consistency function
f(x_t, t, w) = c_skip(t) x_t + c_out(t) x0_hat(x_t, t, w) must give the same answer at two neighbouring
points of one teacher trajectory. The teacher takes a CFG-guided DDIM step from t_n to t_{n-k} (k = 20,
i.e. the 50-step DDIM grid {19, 39, ..., 999}); the target is f computed by an EMA copy of the student at
t_{n-k}. The guidance scale w is an input (`time_cond_proj_dim` embedding), so one student call replaces the
two calls of CFG: this is what `LatentConsistencyModelPipeline` runs.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import ScenePool, tokenize
from .models import SCHEDULE, build_text_encoder, build_unet, n_params
from .train import Loop, TrainConfig, autocast, write_log

SKIP = 20                      # DDIM stride: 1000 train steps / 50 original inference steps
W_RANGE = (1.0, 7.0)           # guidance w sampled in training; pipeline guidance_scale = w + 1
TIMESTEP_SCALING = 10.0        # LCMScheduler default
SIGMA_DATA = 0.5


def alphas_cumprod(device) -> torch.Tensor:
    from diffusers import DDPMScheduler
    return DDPMScheduler(**SCHEDULE).alphas_cumprod.to(device)


def boundary(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip(t), c_out(t) as in LCMScheduler.get_scalings_for_boundary_condition_discrete."""
    s = t.float() * TIMESTEP_SCALING
    return SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2), s / (s**2 + SIGMA_DATA**2) ** 0.5


def w_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the guidance scale w (B,) -> (B, dim), as the LCM pipeline computes it."""
    w = w.float() * 1000.0
    half = dim // 2
    freq = torch.exp(-torch.log(torch.tensor(10000.0)) / (half - 1) * torch.arange(half, device=w.device))
    emb = w[:, None] * freq[None]
    return torch.cat([emb.sin(), emb.cos()], dim=1)


def load_frozen(cfg: TrainConfig):
    """The trained VAE (from models/) in eval mode, and its latent scaling factor."""
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(Path(cfg.out_dir) / "lcm" / "vae", dtype=torch.float32).to(cfg.device).eval()
    return vae.requires_grad_(False), vae.config.scaling_factor


def encode_latents(vae, scale: float, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.encode(x * 2 - 1).latent_dist.sample() * scale  # (B, 3, 64, 64) -> (B, 4, 16, 16)


def ema_update(ema, model, decay: float):
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)


def train_teacher(cfg: TrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    vae, scale = load_frozen(cfg)
    unet, text = build_unet(), build_text_encoder()
    if cfg.warm_start:  # continue from a finished run's exported (EMA) weights, with a fresh optimizer
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel
        unet = UNet2DConditionModel.from_pretrained(Path(cfg.out_dir) / "teacher_unet", dtype=torch.float32)
        text = CLIPTextModel.from_pretrained(Path(cfg.out_dir) / "lcm" / "text_encoder", dtype=torch.float32)
    unet, text = unet.to(cfg.device).train(), text.to(cfg.device).train()
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text).eval()
    pool = ScenePool(cfg.pool_size, seed=cfg.seed + 30, device=cfg.device)
    empty = tokenize([""], cfg.device)
    acp = alphas_cumprod(cfg.device)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 31)
    loop = Loop(cfg, {"unet": unet, "text": text, "ema_unet": ema_unet, "ema_text": ema_text},
                list(unet.parameters()) + list(text.parameters()), warmup=300)

    def step():
        _, x, ids = pool.batch(cfg.batch_size)
        z0 = encode_latents(vae, scale, x)
        drop = torch.rand(len(ids), generator=gen, device=cfg.device) < 0.1  # CFG: 10% unconditional
        ids = torch.where(drop[:, None], empty, ids)
        t = torch.randint(0, 1000, (len(ids),), generator=gen, device=cfg.device)
        eps = torch.randn(z0.shape, generator=gen, device=cfg.device)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps  # forward process q(z_t | z_0)
        with autocast(cfg):
            cond = text(ids).last_hidden_state
            eps_hat = unet(zt, t, cond).sample
        loss = F.mse_loss(eps_hat.float(), eps)
        return {"loss": loss}

    def step_with_ema():
        out = step()
        if loop.step > 0:
            ema_update(ema_unet, unet, 0.999 if loop.step > 1000 else 0.99)
            ema_update(ema_text, text, 0.999 if loop.step > 1000 else 0.99)
        return out

    loop.run(step_with_ema)
    out = Path(cfg.out_dir)
    ema_unet.to(torch.float16).save_pretrained(out / "teacher_unet")
    ema_text.to(torch.float16).save_pretrained(out / "lcm" / "text_encoder")
    write_log(out / "teacher_unet", cfg, loop, {}, {"params_unet": n_params(ema_unet), "params_text": n_params(ema_text)})
    return {}


def train_lcm(cfg: TrainConfig) -> dict:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(cfg.seed)
    vae, scale = load_frozen(cfg)
    root = Path(cfg.out_dir)
    teacher = UNet2DConditionModel.from_pretrained(root / "teacher_unet", dtype=torch.float32).to(cfg.device).eval()
    text = CLIPTextModel.from_pretrained(root / "lcm" / "text_encoder", dtype=torch.float32).to(cfg.device).eval()
    teacher.requires_grad_(False), text.requires_grad_(False)
    student = build_unet(student=True).to(cfg.device)
    missing = student.load_state_dict(teacher.state_dict(), strict=False).missing_keys
    assert all(k.startswith("time_embedding.cond_proj") for k in missing), missing
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)  # at init the student is the teacher
    target = copy.deepcopy(student).eval().requires_grad_(False)
    student.train()
    pool = ScenePool(cfg.pool_size, seed=cfg.seed + 40, device=cfg.device)
    acp = alphas_cumprod(cfg.device)
    with torch.no_grad():
        uncond = text(tokenize([""], cfg.device)).last_hidden_state
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 41)
    loop = Loop(cfg, {"student": student, "target": target}, student.parameters(), warmup=100)

    def x0_from_eps(z, eps, t):
        a = acp[t].view(-1, 1, 1, 1)
        return (z - (1 - a).sqrt() * eps) / a.sqrt()

    def f(model, z, t, c, w_emb):
        """The consistency function f(z_t, t, w) = c_skip z_t + c_out x0_hat."""
        c_skip, c_out = (v.view(-1, 1, 1, 1) for v in boundary(t))
        eps = model(z, t, c, timestep_cond=w_emb).sample.float()
        return c_skip * z + c_out * x0_from_eps(z, eps, t)

    def step():
        _, x, ids = pool.batch(cfg.batch_size)
        B = len(ids)
        z0 = encode_latents(vae, scale, x)
        n = torch.randint(0, 1000 // SKIP, (B,), generator=gen, device=cfg.device)
        t = n * SKIP + SKIP - 1                      # t_n on the DDIM grid {19, ..., 999}
        t_prev = (t - SKIP).clamp(min=0)             # t_{n-k}
        w = W_RANGE[0] + (W_RANGE[1] - W_RANGE[0]) * torch.rand(B, generator=gen, device=cfg.device)
        w_emb = w_embedding(w, student.config.time_cond_proj_dim)
        eps = torch.randn(z0.shape, generator=gen, device=cfg.device)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        with torch.no_grad(), autocast(cfg):
            cond = text(ids).last_hidden_state
            e_c = teacher(zt, t, cond).sample.float()
            e_u = teacher(zt, t, uncond.expand(B, -1, -1)).sample.float()
            e_w = e_u + (1 + w.view(-1, 1, 1, 1)) * (e_c - e_u)   # CFG with scale w + 1
            x0_w = x0_from_eps(zt, e_w, t)
            a_prev = acp[t_prev].view(-1, 1, 1, 1)
            z_prev = a_prev.sqrt() * x0_w + (1 - a_prev).sqrt() * e_w  # one DDIM step t_n -> t_{n-k}
            y = f(target, z_prev, t_prev, cond, w_emb)
        with autocast(cfg):
            pred = f(student, zt, t, cond, w_emb)
        return {"loss": F.mse_loss(pred.float(), y.float())}

    def step_with_ema():
        out = step()
        ema_update(target, student, 0.95)
        return out

    loop.run(step_with_ema)
    target.to(torch.float16).save_pretrained(root / "lcm" / "unet")  # LCM ships the EMA target network
    write_log(root / "lcm" / "unet", cfg, loop, {}, {"params": n_params(target)})
    from .loaders import export_pipeline
    export_pipeline(root)
    return {}
