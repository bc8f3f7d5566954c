"""Training recipe of the JAQ judge: a tiny CLIP in open_clip format.

Q-Sched's JAQ objective needs two things from its judge: text-image compatibility (CLIPScore) and image
quality (CLIP-IQA, which compares an image with the antonym prompts "Good photo." / "Bad photo." through the
CLIP's own learned logit scale). A CLIP trained only on clean tiny-world images would know nothing about
quality, so images are degraded at a continuous strength s (`degrade.SEEN`: noise, blur, colour shift,
blockiness, VAE-latent noise) and two quality losses shape the antonym logit d = scale * (cos+ - cos-):

    regression  BCE(sigmoid(d(x_s)), 0.9 - 0.8 s)     P(good) falls linearly from 0.9 (clean) to 0.1 (s = 1)
    ranking     softplus(d(x_s2) - d(x_s1)), s1 < s2  the same scene, less damaged, must score higher

The 0.9 ceiling keeps clean renders off the softmax's flat top, so CLIP-IQA stays graded near "clean", where
quantization damage lives; the ranking term makes the order within one scene explicit. Captions of strongly
degraded images say so ("a blurry photo of ..."), and hard negatives (the same caption with one attribute
changed) make CLIPScore sensitive to every attribute, not just the background.

The first judge (`models/tinyworld/legacy/clip_v1`) used a binary clean-vs-degraded target at a fixed logit
scale of 100; its quality score saturated (median 0.996 on FP generations). See results/instrument_validity.md.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from .degrade import HELD_OUT, KINDS, SEEN, degrade_graded, random_graded
from .models import CLIP_CONFIG, build_clip, n_params
from .render import render
from .train import Loop, TrainConfig, autocast, write_log
from .data import ScenePool
from .world import BACKGROUNDS, COLORS, SHAPES, SIZES, TEXTURES, Obj, Scene, sample_scenes

CLEAN_PREFIXES = ("", "a photo of ", "a good photo of ", "a sharp, clean photo of ")
BAD_PREFIXES = {"noise": "a noisy photo of ", "blur": "a blurry photo of ", "color_shift": "a discoloured photo of ",
                "blocky": "a blocky, pixelated photo of ", "latent": "a distorted photo of "}
BAD_ABOVE = 0.5  # captions name the damage from this strength on
ANTONYMS = (("Good photo.", "Bad photo."), ("Sharp photo.", "Blurry photo."), ("Clean photo.", "Noisy photo."),
            ("High quality photo.", "Low quality photo."))
MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> CLIP input (the OpenAI mean/std that open_clip's preprocess applies)."""
    return (x - MEAN.to(x.device)) / STD.to(x.device)


def perturb(scene: Scene, rng: random.Random) -> Scene:
    """The same scene with one attribute changed: a hard negative caption."""
    objs = list(scene.objects)
    i = rng.randrange(len(objs))
    field = rng.choice(["shape", "color", "size", "layout", "background", "texture"])
    pick = lambda opts, cur: rng.choice([o for o in opts if o != cur])  # noqa: E731
    if field in ("shape", "color", "size"):
        opts = {"shape": SHAPES, "color": COLORS, "size": SIZES}[field]
        o = objs[i]
        objs[i] = Obj(**{**o.__dict__, field: pick(opts, getattr(o, field))})
        return Scene(scene.layout, tuple(objs), scene.background, scene.texture)
    if field == "layout":
        if len(objs) == 2:
            return Scene(scene.layout, (objs[1], objs[0]), scene.background, scene.texture)
        return Scene(pick(("left", "right", "top", "bottom", "center"), scene.layout), tuple(objs),
                     scene.background, scene.texture)
    if field == "background":
        return Scene(scene.layout, tuple(objs), pick(BACKGROUNDS, scene.background), scene.texture)
    return Scene(scene.layout, tuple(objs), scene.background, pick(TEXTURES, scene.texture))


def judge_texts(scenes, bad, kinds, rng) -> tuple[list[str], list[str]]:
    """Positive captions (with quality words) and hard-negative captions for a batch."""
    pos, neg = [], []
    for s, b, k in zip(scenes, bad.tolist(), kinds):
        prefix = BAD_PREFIXES[k] if b else rng.choice(CLEAN_PREFIXES)
        pos.append(prefix + s.caption)
        neg.append(prefix + perturb(s, rng).caption)
    return pos, neg


def quality_losses(d_a: torch.Tensor, d_b: torch.Tensor, s_a: torch.Tensor, s_b: torch.Tensor) -> dict:
    """Regression + ranking losses on antonym logits d (B, P) of the same scenes at strengths s_a < s_b (B,)."""
    d, s = torch.cat([d_a, d_b]), torch.cat([s_a, s_b])
    target = (0.9 - 0.8 * s)[:, None].expand_as(d)  # P(good) target, (2B, P)
    reg = F.binary_cross_entropy_with_logits(d, target)
    rank = F.softplus(d_b - d_a).mean()  # less damaged (a) must score higher than more damaged (b)
    return {"reg": reg, "rank": rank}


def train_clip(cfg: TrainConfig) -> dict:
    import open_clip

    from .loaders import load_pipeline

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = build_clip().to(cfg.device).train()
    vae = load_pipeline(device=cfg.device).vae.requires_grad_(False)  # for the "latent" degradation only
    pool = ScenePool(cfg.pool_size, seed=cfg.seed + 20, device=cfg.device)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 21)
    antonym_ids = open_clip.tokenize([t for pair in ANTONYMS for t in pair]).to(cfg.device)
    loop = Loop(cfg, {"clip": model}, model.parameters())

    def step():
        scenes, x, _ = pool.batch(cfg.batch_size)
        B, dev = x.shape[0], x.device
        s_a = torch.rand(B, generator=gen, device=dev)
        s_a = torch.where(torch.rand(B, generator=gen, device=dev) < 0.25, 0.0, s_a)
        s_b = (s_a + 0.15 + 0.5 * torch.rand(B, generator=gen, device=dev)).clamp(max=1.0)
        with torch.no_grad(), autocast(cfg):
            x_a, _, kind = random_graded(x, gen, SEEN, vae=vae, strength=s_a)
            x_b = torch.empty_like(x_a)
            for k, name in enumerate(SEEN):  # the same kind, stronger, on the same scenes
                sel = kind == k
                if sel.any():
                    x_b[sel] = degrade_graded(x[sel], name, s_b[sel], gen, vae=vae)
        bad = s_a > BAD_ABOVE
        pos, neg = judge_texts(scenes, bad, [SEEN[k] for k in kind.tolist()], rng)
        with autocast(cfg):
            img = model.encode_image(normalize(torch.cat([x_a, x_b])), normalize=True)
            txt = model.encode_text(open_clip.tokenize(pos + neg).to(dev), normalize=True)
            ant = model.encode_text(antonym_ids, normalize=True).view(len(ANTONYMS), 2, -1)
        img, txt, ant = img.float(), txt.float(), ant.float()
        scale = model.logit_scale.exp().clamp(max=100)
        target = torch.arange(B, device=dev)
        logits = scale * img[:B] @ txt.T  # (B, 2B): positives then hard negatives
        clip_loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :B].T, target)) / 2
        cos = torch.einsum("bd,pkd->bpk", img, ant)  # (2B, pairs, 2)
        d = scale * (cos[..., 0] - cos[..., 1])  # antonym logit with the judge's own scale, as CLIP-IQA uses it
        q = quality_losses(d[:B], d[B:], s_a, s_b)
        return {"loss": clip_loss + q["reg"] + 0.5 * q["rank"], "clip": clip_loss, **q, "scale": scale.detach()}

    loop.run(step)
    model.eval()
    quality = evaluate_judge(model, cfg.device, vae=vae)
    out = Path(cfg.out_dir) / "clip"
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CONFIG, "preprocess_cfg": {
        "mean": MEAN.flatten().tolist(), "std": STD.flatten().tolist()}}, indent=2))
    write_log(out, cfg, loop, quality, {"params": n_params(model)})
    return quality


STRENGTHS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def evaluate_judge(model, device, n: int = 512, seed: int = 5, vae=None, logit_scale: float | None = None) -> dict:
    """Zero-shot caption retrieval top-1 on n held-out pairs; CLIP-IQA against degradation strength per kind.

    For every kind (seen and held out) the n renders are degraded at each of STRENGTHS; reported: the mean
    CLIP-IQA per strength, Spearman's rho between strength and CLIP-IQA over all (image, strength) pairs (-1 =
    perfectly graded), and the share of clean renders above 0.95 (saturation). `logit_scale` None = learned.
    """
    import open_clip

    from ..jaq import clip_iqa
    from ..stats import spearman

    scenes = sample_scenes(n, "eval", seed=seed)
    x = render(scenes, torch.Generator(device=device).manual_seed(seed), device)
    img = model.encode_image(normalize(x), normalize=True)
    txt = model.encode_text(open_clip.tokenize([s.caption for s in scenes]).to(device), normalize=True)
    top1 = float(((img @ txt.T).argmax(1) == torch.arange(n, device=device)).float().mean())
    tok = open_clip.get_tokenizer("ViT-B-32")
    iqa = lambda im: clip_iqa(model, tok, im, logit_scale=logit_scale, batch_size=256)  # noqa: E731
    clean = iqa(x)
    curves, rhos = {}, {}
    for kind in KINDS if vae is not None else [k for k in KINDS if k != "latent"]:
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        scores = torch.stack([iqa(degrade_graded(x, kind, s, gen, vae=vae)) for s in STRENGTHS])  # (S, n)
        curves[kind] = [round(float(v), 4) for v in scores.mean(1)]
        strengths = torch.tensor(STRENGTHS).repeat_interleave(n)
        rhos[kind] = round(spearman(strengths, scores.flatten().cpu()), 4)
    held = [rhos[k] for k in HELD_OUT]
    return {"retrieval_top1_512": round(top1, 4), "iqa_clean_mean": round(float(clean.mean()), 4),
            "iqa_clean_above_095": round(float((clean > 0.95).float().mean()), 4),
            "iqa_strengths": list(STRENGTHS), "iqa_curves": curves, "iqa_spearman": rhos,
            "iqa_spearman_held_out_mean": round(sum(held) / len(held), 4)}
