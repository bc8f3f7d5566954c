"""Training recipe of the JAQ judge: a tiny CLIP in open_clip format.

Q-Sched's JAQ objective needs two things from its judge: text-image compatibility (CLIPScore) and image
quality (CLIP-IQA, which compares an image with the antonym prompts "Good photo." / "Bad photo."). A CLIP
trained only on clean tiny-world images would know nothing about quality, so a third of the training images
are degraded (noise, blur, colour shift, blockiness) and their captions say so ("a blurry photo of ..."), and
an auxiliary loss asks the antonym prompts to tell clean from degraded. Hard negatives (the same caption with
one attribute changed) make CLIPScore sensitive to every attribute, not just the background.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from .models import CLIP_CONFIG, build_clip, n_params
from .render import DEGRADATIONS, render
from .train import Loop, TrainConfig, autocast, random_degrade, write_log
from .data import ScenePool
from .world import BACKGROUNDS, COLORS, SHAPES, SIZES, TEXTURES, Obj, Scene, sample_scenes

CLEAN_PREFIXES = ("", "a photo of ", "a good photo of ", "a sharp, clean photo of ")
BAD_PREFIXES = {"noise": "a noisy photo of ", "blur": "a blurry photo of ", "color_shift": "a discoloured photo of ",
                "blocky": "a blocky, pixelated photo of "}
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


def train_clip(cfg: TrainConfig) -> dict:
    import open_clip

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = build_clip().to(cfg.device).train()
    pool = ScenePool(cfg.pool_size, seed=cfg.seed + 20, device=cfg.device)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 21)
    antonym_ids = open_clip.tokenize([t for pair in ANTONYMS for t in pair]).to(cfg.device)
    loop = Loop(cfg, {"clip": model}, model.parameters())

    def step():
        scenes, x, _ = pool.batch(cfg.batch_size)
        x, bad, kinds = random_degrade(x, 0.35, gen)
        pos, neg = judge_texts(scenes, bad, [DEGRADATIONS[k] for k in kinds.tolist()], rng)
        with autocast(cfg):
            img = model.encode_image(normalize(x), normalize=True)
            txt = model.encode_text(open_clip.tokenize(pos + neg).to(cfg.device), normalize=True)
            ant = model.encode_text(antonym_ids, normalize=True).view(len(ANTONYMS), 2, -1)
        img, txt, ant = img.float(), txt.float(), ant.float()
        scale = model.logit_scale.exp().clamp(max=100)
        B = x.shape[0]
        target = torch.arange(B, device=x.device)
        logits = scale * img @ txt.T  # (B, 2B): positives then hard negatives
        clip_loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :B].T, target)) / 2
        iqa_logits = 100 * torch.einsum("bd,pkd->bpk", img, ant)  # (B, pairs, 2), as CLIP-IQA scores
        iqa_loss = F.cross_entropy(iqa_logits.reshape(-1, 2), bad.long().repeat_interleave(len(ANTONYMS)))
        return {"loss": clip_loss + 0.5 * iqa_loss, "clip": clip_loss, "iqa": iqa_loss}

    loop.run(step)
    model.eval()
    quality = evaluate_judge(model, cfg.device)
    out = Path(cfg.out_dir) / "clip"
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CONFIG, "preprocess_cfg": {
        "mean": MEAN.flatten().tolist(), "std": STD.flatten().tolist()}}, indent=2))
    write_log(out, cfg, loop, quality, {"params": n_params(model)})
    return quality


@torch.no_grad()
def evaluate_judge(model, device, n: int = 512, seed: int = 5) -> dict:
    """Zero-shot caption retrieval top-1 on n held-out pairs; how often CLIP-IQA ranks clean above degraded."""
    import open_clip

    scenes = sample_scenes(n, "eval", seed=seed)
    x = render(scenes, torch.Generator(device=device).manual_seed(seed), device)
    img = model.encode_image(normalize(x), normalize=True)
    txt = model.encode_text(open_clip.tokenize([s.caption for s in scenes]).to(device), normalize=True)
    top1 = float(((img @ txt.T).argmax(1) == torch.arange(n, device=device)).float().mean())
    ant = model.encode_text(open_clip.tokenize(list(ANTONYMS[0])).to(device), normalize=True)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    iqa = lambda im: (100 * model.encode_image(normalize(im), normalize=True) @ ant.T).softmax(-1)[:, 0]  # noqa: E731
    clean, wins = iqa(x), {}
    from .render import degrade
    for kind in DEGRADATIONS:
        wins[kind] = round(float((clean > iqa(degrade(x, kind, 0.5, gen))).float().mean()), 4)
    return {"retrieval_top1_512": round(top1, 4), "iqa_clean_wins": wins,
            "iqa_clean_wins_mean": round(sum(wins.values()) / len(wins), 4), "iqa_clean_mean": round(float(clean.mean()), 4)}
