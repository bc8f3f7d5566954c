"""Looking at the tiny world: captions to images, the VAE round trip, what the evaluator sees.

Notebook 00 walks through the tiny world with these; later notebooks reuse them to show a few images. Each one
wraps a call into the stock libraries (a diffusers pipeline, the open_clip judge, the evaluator) so a reader can
check that nothing here is a mock: `caption_to_images` is `sampling.sample_lcm` with a seed, and `sample_lcm`
itself equals `LatentConsistencyModelPipeline.__call__`. Measurements (attribute hits, FID, CLIP scores with
confidence intervals) live in `quality.py`; this file only helps to look.

Captions are checked before sampling. The text encoder accepts any string, but the student only ever saw
templated captions built from a small vocabulary (`world.caption_of`), so "a red dog" would give an image of
*something* with no meaning; `check_caption` rejects it and names the words the world does not know.

Shapes: n images (n, 3, 64, 64) in [0, 1]; latents (n, 4, 16, 16) (the VAE downsamples by 4 per side).
"""
from __future__ import annotations

import random
import re
import textwrap
from collections import Counter
from collections.abc import Sequence

import torch

from ..progress import progress
from ..sampling import decode, initial_latents, sample_lcm
from .loaders import GUIDANCE_SCALE
from .models import n_params
from .quality import target_labels
from .render import DEGRADATIONS, degrade
from .world import (BACKGROUNDS, COLORS, LABEL_CLASSES, LAYOUTS, POSITION_PHRASES, SHAPES, SIZES, TEXTURES,
                    Scene, caption_of, parse_caption, random_scene, split_of)

EXAMPLE_CAPTION = "a large red circle on the left and a small blue square on the right, on a plain white background"
_GLUE = ("a", "and", "on", "at", "in", "the", "background")

# What each tiny model stands in for, with the size of that real model (approximate, in parameters).
REAL_COUNTERPARTS = {
    "vae": ("SD 1.5 AutoencoderKL (512x512 -> 64x64x4)", 84e6),
    "text_encoder": ("SD 1.5 text encoder (CLIP ViT-L/14 text tower)", 123e6),
    "teacher_unet": ("SD 1.5 UNet", 860e6),
    "student_unet": ("LCM-Dreamshaper-v7 UNet (with w-embedding)", 860e6),
    "judge": ("CLIP ViT-L/14 (CLIPScore, CLIP-IQA)", 428e6),
    "evaluator": ("Inception-v3 (FID features) + GenEval detector", 24e6),
}


def vocabulary() -> frozenset[str]:
    """Every word a tiny-world caption may contain."""
    places = {w for phrase in POSITION_PHRASES.values() for w in phrase.split()}
    return frozenset({*SHAPES, *COLORS, *SIZES, *BACKGROUNDS, *TEXTURES, *places, *_GLUE})


def unknown_words(caption: str) -> list[str]:
    """Words of `caption` outside `vocabulary()`, in order of appearance (punctuation ignored)."""
    known = vocabulary()
    return [w for w in re.findall(r"[^\s,]+", caption) if w not in known]


def check_caption(caption: str) -> Scene:
    """The `Scene` a caption describes; ValueError naming unknown words or the template otherwise."""
    if not isinstance(caption, str):
        raise ValueError(f"caption={caption!r} must be a string such as {EXAMPLE_CAPTION!r}")
    unknown = unknown_words(caption)
    if unknown:
        raise ValueError(f"caption={caption!r} uses words outside the tiny world: {unknown}; it knows the shapes "
                         f"{list(SHAPES)}, colours {list(COLORS)}, sizes {list(SIZES)}, backgrounds "
                         f"{list(BACKGROUNDS)} and textures {list(TEXTURES)}")
    try:
        return parse_caption(caption)
    except ValueError as err:
        raise ValueError(f"caption={caption!r} has only known words but not the template; write it like "
                         f"{EXAMPLE_CAPTION!r} (one object: 'a small green star at the top, on a striped "
                         "gray background')") from err


def caption_to_images(pipe, caption: str, steps: int = 4, n: int = 4, seed: int = 0,
                      guidance_scale: float = GUIDANCE_SCALE) -> torch.Tensor:
    """`n` student samples (n, 3, 64, 64) in [0, 1] of one checked caption, reproducible from `seed`."""
    check_caption(caption)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be an int >= 1 (the number of images)")
    with torch.no_grad():
        return sample_lcm(pipe, [caption] * n, num_steps=steps, guidance_scale=guidance_scale,
                          generator=torch.Generator().manual_seed(seed))


def images_at_steps(pipe, captions: Sequence[str], steps: Sequence[int] = (1, 2, 4, 8), seed: int = 0,
                    guidance_scale: float = GUIDANCE_SCALE, **sample_kwargs) -> dict[int, torch.Tensor]:
    """{N: images (B, 3, 64, 64)} for each step count N, all from the same initial noise x_T.

    Per-step noise (LCM re-noises between steps) comes from one generator seeded with `seed + 1` for every N,
    so the columns differ only by the number of steps.
    """
    x_T = initial_latents(pipe, len(captions), torch.Generator().manual_seed(seed))  # (B, 4, 16, 16)
    out = {}
    with torch.no_grad():
        for num_steps in progress(steps, desc="steps"):
            out[num_steps] = sample_lcm(pipe, list(captions), num_steps=num_steps, guidance_scale=guidance_scale,
                                        latents=x_T.clone(), generator=torch.Generator().manual_seed(seed + 1),
                                        **sample_kwargs)
    return out


def vae_round_trip(pipe, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode images (B, 3, 64, 64) in [0, 1] to scaled latents z (B, 4, 16, 16) and decode them back.

    z = scaling_factor * mean of q(z | x): the latents the UNet works on, at unit-ish variance as in SD.
    """
    with torch.no_grad():
        z = pipe.vae.encode(images * 2 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
        return z, decode(pipe, z)


def component_table(pipe, teacher_unet, judge_model, evaluator) -> list[dict]:
    """One row per tiny model: its class, its parameter count (counted now) and the real model it stands for."""
    parts = {"vae": pipe.vae, "text_encoder": pipe.text_encoder, "teacher_unet": teacher_unet,
             "student_unet": pipe.unet, "judge": judge_model, "evaluator": evaluator}
    rows = []
    for name, module in parts.items():
        real, real_params = REAL_COUNTERPARTS[name]
        cls, params = type(module), n_params(module)
        rows.append({"part": name, "class": f"{cls.__module__.split('.')[0]}.{cls.__name__}", "params": params,
                     "stands in for": real, "real params": f"~{real_params / 1e6:.0f}M",
                     "shrink": f"{real_params / params:.0f}x"})
    return rows


def label_words(head: str) -> tuple[str, ...]:
    """Class names of one evaluator head, in label order (object-2 heads end with 'none')."""
    names = {"layout": LAYOUTS, "shape": SHAPES, "color": COLORS, "size": SIZES, "background": BACKGROUNDS,
             "texture": TEXTURES}
    if head not in LABEL_CLASSES:
        raise ValueError(f"head={head!r} is not an evaluator head; pick one of {list(LABEL_CLASSES)}")
    words = names[head.rstrip("12")]
    return words + ("none",) if head.endswith("2") else words


def attribute_rows(pred: dict[str, torch.Tensor], scenes: Sequence[Scene]) -> list[dict]:
    """One row per image: the predicted word of each head, written "got ≠ want" where it misses the prompt.

    pred: labels (B,) per head, e.g. from `quality.predict_labels(evaluator, images)`.
    """
    target = target_labels(scenes)
    rows = []
    for i in range(len(scenes)):
        row = {}
        for head in LABEL_CLASSES:
            want, got = (label_words(head)[int(labels[i])] for labels in (target[head], pred[head]))
            row[head] = got if got == want else f"{got} ≠ {want}"
        rows.append({**row, "all right": all("≠" not in v for v in row.values())})
    return rows


def split_counts(n: int = 2000, seed: int = 0) -> dict[str, int]:
    """How `n` uniformly drawn scenes fall into train / calib / eval (held-out combinations all go to eval)."""
    rng = random.Random(seed)
    counts = Counter(split_of(random_scene(rng)) for _ in range(n))
    return {split: counts[split] for split in ("train", "calib", "eval")}


def degraded_copies(images: torch.Tensor, strength: float = 0.7, seed: int = 0) -> dict[str, torch.Tensor]:
    """{"clean": images, kind: degrade(images, kind, strength)} for every degradation the judge was taught."""
    out = {"clean": images}
    for kind in DEGRADATIONS:
        out[kind] = degrade(images, kind, strength, torch.Generator().manual_seed(seed))
    return out


def short_caption(scene: Scene, width: int | None = None) -> str:
    """The caption without its background clause (fits under a 64x64 thumbnail), wrapped at `width` if given."""
    text = caption_of(scene).rsplit(", on a ", 1)[0]
    return text if width is None else textwrap.fill(text, width)
