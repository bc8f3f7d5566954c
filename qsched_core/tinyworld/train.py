"""Training recipes of the tiny world: VAE, evaluator and CLIP judge (this file); teacher and LCM student
(`distill.py`). `scripts/train_tinyworld.py` is the command line.

Every stage is seeded, runs for a wall-clock budget (`minutes`) or `max_steps`, saves a resume checkpoint to
`ckpt_dir/<stage>.pt` every `ckpt_every` seconds, and exports fp16 safetensors into `models/tinyworld/...`
together with a `train_log.json` (config, steps, wall time, final losses and quality numbers).
"""
from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..utils import atomic_write
from .data import ScenePool
from .models import Evaluator, build_vae, n_params
from .render import render
from .world import LABEL_CLASSES, sample_scenes

STAGES = ("vae", "evaluator", "clip", "teacher", "lcm")


@dataclass
class TrainConfig:
    stage: str = "vae"
    out_dir: str = "models/tinyworld"
    ckpt_dir: str = "checkpoints"
    device: str = "cpu"
    seed: int = 0
    minutes: float = 1.0          # wall-clock budget of the stage
    max_steps: int = 10**9
    batch_size: int = 64
    lr: float = 1e-3
    pool_size: int = 20000        # training scenes sampled once, re-rendered every step
    ckpt_every: float = 60.0      # seconds between resume checkpoints
    log_every: int = 100
    resume: bool = False
    warm_start: bool = False      # teacher: start from the exported weights in out_dir (a finished earlier run)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r} must be one of {STAGES}")
        if self.minutes <= 0 or self.batch_size <= 0 or self.max_steps <= 0:
            raise ValueError(f"minutes={self.minutes}, batch_size={self.batch_size}, max_steps={self.max_steps} must be > 0")


class Loop:
    """Time-boxed training loop with cosine LR, logging and resumable checkpoints."""

    def __init__(self, cfg: TrainConfig, modules: dict, params, warmup: int = 100):
        self.cfg, self.modules, self.warmup = cfg, modules, warmup
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.ckpt = Path(cfg.ckpt_dir) / f"{cfg.stage}.pt"
        if cfg.resume and self.ckpt.exists():
            try:
                state = torch.load(self.ckpt, map_location=cfg.device)
                for k, m in modules.items():
                    m.load_state_dict(state["modules"][k])
                self.opt.load_state_dict(state["opt"])
                self.step, self.elapsed = state["step"], state["elapsed"]
            except (OSError, EOFError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as err:
                raise ValueError(f"checkpoint {self.ckpt} does not resume this stage ({type(err).__name__}: {err}); "
                                 "delete it to start the stage afresh, or run without --resume") from err
            print(f"[{cfg.stage}] resumed at step {self.step} ({self.elapsed:.0f} s)")

    def lr_at(self, frac: float) -> float:
        warm = min(1.0, (self.step + 1) / self.warmup)
        return self.cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    def run(self, step_fn) -> dict:
        """Call `step_fn() -> dict(loss=Tensor, ...)` until the budget ends; return the last logged values."""
        budget, t0, last_ckpt, t_prev = self.cfg.minutes * 60, time.time(), time.time(), self.elapsed
        while self.step < self.cfg.max_steps:
            self.elapsed = t_prev + time.time() - t0
            if self.elapsed >= budget:
                break
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(self.elapsed / budget)
            out = step_fn()
            self.opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            self.opt.step()
            self.step += 1
            if self.step % self.cfg.log_every == 0:
                logs = {k: float(v.detach()) for k, v in out.items()}
                self.history.append({"step": self.step, "time": round(self.elapsed, 1), **logs})
                print(f"[{self.cfg.stage}] step {self.step} t={self.elapsed:.0f}s " +
                      " ".join(f"{k}={v:.4g}" for k, v in logs.items()), flush=True)
            if time.time() - last_ckpt > self.cfg.ckpt_every:
                self.save()
                last_ckpt = time.time()
        self.save()
        return self.history[-1] if self.history else {}

    def save(self):
        with atomic_write(self.ckpt, "wb") as f:  # a run killed mid-save keeps its previous checkpoint
            torch.save({"modules": {k: m.state_dict() for k, m in self.modules.items()},
                        "opt": self.opt.state_dict(), "step": self.step, "elapsed": self.elapsed}, f)


def write_log(path: Path, cfg: TrainConfig, loop: Loop, quality: dict, extra: dict | None = None):
    path.mkdir(parents=True, exist_ok=True)
    log = {"config": asdict(cfg), "steps": loop.step, "wall_time_s": round(loop.elapsed, 1),
           "device": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else "cpu",
           "quality": quality, "history": loop.history[-20:], **(extra or {})}
    (path / "train_log.json").write_text(json.dumps(log, indent=2))
    print(f"[{cfg.stage}] done: {loop.step} steps, {loop.elapsed:.0f} s, quality {quality}")


def autocast(cfg: TrainConfig):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.device.startswith("cuda"))


# --------------------------------------------------------------------------------------------- VAE
def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


def train_vae(cfg: TrainConfig) -> dict:
    """AutoencoderKL 64x64x3 -> 16x16x4: L1 + MSE reconstruction, a small KL term; scaling_factor = 1/std(z)."""
    torch.manual_seed(cfg.seed)
    vae = build_vae().to(cfg.device).train()
    pool = ScenePool(cfg.pool_size, seed=cfg.seed, device=cfg.device)
    loop = Loop(cfg, {"vae": vae}, vae.parameters())

    def step():
        _, x, _ = pool.batch(cfg.batch_size)
        with autocast(cfg):
            post = vae.encode(x * 2 - 1).latent_dist
            rec = (vae.decode(post.sample()).sample.float() + 1) / 2
        kl = post.kl().mean() / x[0].numel()
        return {"loss": F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl, "kl": kl}

    loop.run(step)
    vae.eval()
    x = render(sample_scenes(512, "eval"), torch.Generator(device=cfg.device).manual_seed(123), cfg.device)
    with torch.no_grad():
        z = torch.cat([vae.encode(c * 2 - 1).latent_dist.mode() for c in x.split(128)])
        rec = torch.cat([(vae.decode(c).sample + 1) / 2 for c in z.split(128)])
    vae.register_to_config(scaling_factor=float(1 / z.std()))
    quality = {"psnr_db_eval512": round(psnr(rec, x), 2), "latent_std": round(float(z.std()), 4)}
    out = Path(cfg.out_dir) / "lcm" / "vae"
    vae.to(torch.float16).save_pretrained(out)
    write_log(out, cfg, loop, quality, {"params": n_params(vae)})
    return quality


# --------------------------------------------------------------------------------------- evaluator
def labels_of(scenes, device) -> dict[str, torch.Tensor]:
    labs = [s.labels() for s in scenes]
    return {k: torch.tensor([l[k] for l in labs], device=device) for k in LABEL_CLASSES}


EVALUATOR_CONFIG = dict(feat_dim=128, embedding="bn", n_quality=4)  # version 2; quality = degrade.SEEN[:4]


def train_evaluator(cfg: TrainConfig) -> dict:
    """Attribute classifier plus a degradation-strength head on a normalised (BatchNorm, no ReLU) feature layer.

    Images are degraded at graded strengths (`degrade.SEEN[:4]`, the pixel-space kinds; 20% clean) and the
    quality head regresses each kind's strength (0 for the kinds not applied), so the features that feed FID
    carry image damage as well as content, as Inception's pool3 does for real photos.
    """
    from .degrade import SEEN, random_graded

    torch.manual_seed(cfg.seed)
    ev = Evaluator(**EVALUATOR_CONFIG).to(cfg.device).train()
    kinds = SEEN[:EVALUATOR_CONFIG["n_quality"]]
    pool = ScenePool(cfg.pool_size, seed=cfg.seed + 10, device=cfg.device)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 11)
    loop = Loop(cfg, {"evaluator": ev}, ev.parameters())

    def step():
        scenes, x, _ = pool.batch(cfg.batch_size)
        x, strength, kind = random_graded(x, gen, kinds, p_clean=0.2)
        y = labels_of(scenes, cfg.device)
        target = F.one_hot(kind, len(kinds)).float() * strength[:, None]  # (B, kinds): the applied kind's strength
        with autocast(cfg):
            logits = ev(x)
        attr = sum(F.cross_entropy(logits[k].float(), y[k]) for k in LABEL_CLASSES)
        quality = F.binary_cross_entropy_with_logits(logits["quality"].float(), target)
        return {"loss": attr + quality, "attr": attr, "quality": quality}

    loop.run(step)
    ev.eval()
    scenes = sample_scenes(2048, "eval")
    x = render(scenes, torch.Generator(device=cfg.device).manual_seed(7), cfg.device)
    with torch.no_grad():
        pred = {k: torch.cat([ev(c)[k].argmax(1) for c in x.split(256)]) for k in LABEL_CLASSES}
        feats = torch.cat([ev.features(c) for c in x.split(256)])
    y = labels_of(scenes, cfg.device)
    acc = {k: round(float((pred[k] == y[k]).float().mean()), 4) for k in LABEL_CLASSES}
    acc["all"] = round(float(torch.stack([pred[k] == y[k] for k in LABEL_CLASSES]).all(0).float().mean()), 4)
    dead = int((feats.std(0) < 1e-6).sum())
    out = Path(cfg.out_dir) / "evaluator"
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file
    save_file({k: v.to(torch.float16) for k, v in ev.state_dict().items() if v.is_floating_point()} |
              {k: v for k, v in ev.state_dict().items() if not v.is_floating_point()}, out / "evaluator.safetensors")
    (out / "config.json").write_text(json.dumps(ev.config, indent=2))
    write_log(out, cfg, loop, {"accuracy_eval2048": acc, "dead_feature_dims_eval2048": dead}, {"params": n_params(ev)})
    return acc
