"""How good is a tiny-world generator? Paired sampling plus GenEval-style, FID and CLIP measurements.

Every later comparison (FP vs quantized, stock vs Q-Sched scheduler, 2 vs 4 steps) asks whether method A
beats method B on the same prompts. The differences are small, so the noise must not differ between methods:
`generate` gives image i its own `torch.Generator` seeded by (seed, i), which draws its initial latent x_T and
then any per-step noise. Image i therefore sees the same noise whatever the batch size, the method or the
other prompts in the run (common random numbers), the teacher starts from the same x_T as the student, and
per-image scores of two methods are paired (`qsched_core.stats.paired_bootstrap_diff`, `sign_test`).

What is measured, on images (N, 3, 64, 64) in [0, 1]:
  attribute hits   the evaluator CNN reads every attribute back (a GenEval-style detector): "objects" = every
                   object's shape, colour and size right in its slot and the layout (position) right;
                   "background" = background colour and texture right
  FID              Frechet distance of evaluator features (the Inception stand-in) to features of ground-truth
                   renders of the same prompt distribution, cached in .cache/fid/ and keyed by the evaluator's
                   weights, so a retrained evaluator never reuses stale statistics
  CLIPScore        text-image agreement under the tiny CLIP judge (the same function JAQ uses)
  CLIP-IQA         the judge's "Good photo." vs "Bad photo." probability
Means come with percentile-bootstrap 95% intervals; FID's interval resamples the generated images.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..checks import check_images
from ..jaq import as_judge, clip_iqa, clip_score
from ..metrics import ReferenceStats, attribute_accuracy, attribute_correct, bootstrap_fid_ci, extract_features
from ..progress import progress
from ..sampling import latent_shape, sample_lcm
from ..stats import bootstrap_ci
from ..utils import REPO_ROOT
from .loaders import GUIDANCE_SCALE
from .render import render
from .world import LABEL_CLASSES, Scene, eval_prompts, sample_scenes

FID_CACHE = REPO_ROOT / ".cache" / "fid"
OBJECT1, OBJECT2 = ("shape1", "color1", "size1"), ("shape2", "color2", "size2")
# per-attribute hit names: the evaluator heads, with the background *colour* head renamed so that "background"
# can name the composite (colour and texture)
ATTRIBUTES = tuple("background_color" if k == "background" else k for k in LABEL_CLASSES)


# ------------------------------------------------------------------------------------- paired sampling
def noise_seed(seed: int, i: int) -> int:
    """The seed of image i's generator: (seed, i) -> seed * 2^20 + i, distinct for every pair.

    It must fit in 32 bits: torch's CPU generator (mt19937) keeps only the low 32 bits of its seed.
    """
    if not (0 <= seed < 2**11 and 0 <= i < 2**20):
        raise ValueError(f"seed={seed} must be in [0, 2048) and image index i={i} in [0, 2^20); "
                         "split larger prompt sets into runs with different seeds")
    return (seed << 20) | i


def image_generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One fresh CPU generator per image; diffusers' `randn_tensor` draws row b from generator b."""
    return [torch.Generator().manual_seed(noise_seed(seed, i)) for i in indices]


def initial_noise(pipe, seed: int, indices: Sequence[int]) -> torch.Tensor:
    """x_T (B, C, h, w) for images `indices`: row b depends only on (seed, indices[b])."""
    return randn_tensor(latent_shape(pipe, len(indices)), generator=image_generators(seed, indices),
                        device=pipe.unet.device, dtype=torch.float32)


def _captions(scenes: Sequence[Scene | str]) -> list[str]:
    if isinstance(scenes, str):  # a bare caption would be generated one character per image
        raise ValueError(f"scenes={scenes!r} is a single string; pass a list of scenes or captions: [{scenes!r}]")
    return [s.caption if isinstance(s, Scene) else s for s in scenes]


def _chunks(n: int, batch_size: int) -> list[range]:
    if n < 1 or batch_size < 1:
        raise ValueError(f"got {n} prompts and batch_size={batch_size}; both must be >= 1")
    return [range(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]


@torch.no_grad()
def generate(pipe, scenes: Sequence[Scene | str], num_steps: int, guidance_scale: float = GUIDANCE_SCALE,
             seed: int = 0, batch_size: int = 32, coeffs=None, scheduler_family: str = "lcm",
             eta: float = 0.0) -> torch.Tensor:
    """LCM student images (N, 3, H, W) in [0, 1] for scenes (or captions) via `sampling.sample_lcm`.

    Image i's initial latent and step noise come from its own generator seeded by (seed, i), so two methods run
    with the same seed see the same noise for the same prompt (paired comparisons).
    """
    captions, out = _captions(scenes), []
    for idx in progress(_chunks(len(captions), batch_size), desc=f"student, {num_steps} steps"):
        images = sample_lcm(pipe, [captions[i] for i in idx], num_steps=num_steps, guidance_scale=guidance_scale,
                            generator=image_generators(seed, idx), coeffs=coeffs,
                            scheduler_family=scheduler_family, eta=eta)
        out.append(images.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def generate_teacher(teacher_pipe, scenes: Sequence[Scene | str], num_steps: int = 25,
                     guidance_scale: float = GUIDANCE_SCALE, seed: int = 0, batch_size: int = 32) -> torch.Tensor:
    """DDIM teacher images (N, 3, H, W) in [0, 1] with classifier-free guidance, from the student's x_T."""
    captions, out = _captions(scenes), []
    for idx in progress(_chunks(len(captions), batch_size), desc="teacher"):
        images = teacher_pipe(prompt=[captions[i] for i in idx], num_inference_steps=num_steps,
                              guidance_scale=guidance_scale, latents=initial_noise(teacher_pipe, seed, idx),
                              output_type="pt").images
        out.append(images.float().cpu())
    return torch.cat(out)


def student_images_per_second(pipe, batch_size: int = 32, guidance_scale: float = GUIDANCE_SCALE, steps: int = 4,
                              repeats: int = 3, seed: int = 0) -> float:
    """Wall-clock images/s of `generate` at `steps` steps on one batch, after one untimed warm-up batch.

    Prompts: `eval_prompts(batch_size, seed=seed + 7)`; warm-up noise seed `seed`, repeat r uses seed + r + 1.
    Measures wherever `pipe` lives (`generate` returns CPU tensors, which waits for a GPU to finish); set the
    torch thread count before calling for a CPU measurement.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    scenes = eval_prompts(batch_size, seed=seed + 7)
    generate(pipe, scenes, steps, guidance_scale, seed=seed, batch_size=batch_size)
    t0 = time.perf_counter()
    for r in range(repeats):
        generate(pipe, scenes, steps, guidance_scale, seed=seed + r + 1, batch_size=batch_size)
    return repeats * batch_size / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------- attributes
def target_labels(scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    """Ground-truth labels (N,) int64 per evaluator head."""
    labels = [s.labels() for s in scenes]
    return {k: torch.tensor([lab[k] for lab in labels]) for k in LABEL_CLASSES}


@torch.no_grad()
def predict_labels(evaluator, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Evaluator argmax labels (N,) int64 per head for images (N, 3, 64, 64) in [0, 1]."""
    check_images(images)  # [0, 255] or NaN images would give confident wrong labels
    device = next(evaluator.parameters()).device
    logits = [evaluator(chunk.to(device)) for chunk in images.split(batch_size)]
    return {k: torch.cat([lg[k].argmax(1).cpu() for lg in logits]) for k in LABEL_CLASSES}


def attribute_hits(evaluator, images: torch.Tensor, scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    """Per-image (N,) bool hits: "objects", "background", "all" and one per attribute (see ATTRIBUTES).

    objects: one-object prompt -> its shape, colour, size and position (layout) right; two-object prompt ->
    both objects' shape, colour and size right in the right slots and the layout right.
    """
    if len(images) != len(scenes):
        raise ValueError(f"got {len(images)} images but {len(scenes)} scenes; pass one scene per image")
    correct = attribute_correct(predict_labels(evaluator, images), target_labels(scenes))
    two = torch.tensor([s.n_objects == 2 for s in scenes])
    first = torch.stack([correct[k] for k in (*OBJECT1, "layout")]).all(0)
    second = torch.stack([correct[k] for k in OBJECT2]).all(0)
    hits = {("background_color" if k == "background" else k): v for k, v in correct.items()}
    hits["objects"] = first & (second | ~two)
    hits["background"] = correct["background"] & correct["texture"]
    hits["all"] = torch.stack(list(correct.values())).all(0)
    return hits


def evaluator_accuracy(evaluator, n: int = 2048, seed: int = 7) -> dict[str, float]:
    """Evaluator accuracy on ground-truth renders of n eval-split scenes (the check `train_evaluator` ran).

    Adds "all" over scenes without / with a held-out colour-shape combination ("all_seen_combos",
    "all_held_out_combos"): the evaluator trains on the train split, which never shows a held-out combination.
    """
    scenes = sample_scenes(n, "eval")
    pred, target = predict_labels(evaluator, render(scenes, torch.Generator().manual_seed(seed))), target_labels(scenes)
    acc = attribute_accuracy(pred, target, groups={"object1": OBJECT1, "object2": OBJECT2})
    every = torch.stack(list(attribute_correct(pred, target).values())).all(0)  # (n,) all heads right
    held = torch.tensor([s.held_out() for s in scenes])
    acc["all_seen_combos"], acc["all_held_out_combos"] = (float(every[m].float().mean()) for m in (~held, held))
    return acc


@torch.no_grad()
def vae_psnr(vae, n: int = 512, seed: int = 123, batch_size: int = 128) -> float:
    """Reconstruction PSNR (dB) of the VAE (encode to the posterior mode, decode) on n eval-split renders.

    The renders are drawn on the CPU (the same images whatever the VAE's device), then encoded and decoded on
    the VAE's device.
    """
    x = render(sample_scenes(n, "eval"), torch.Generator().manual_seed(seed))  # (n, 3, 64, 64)
    device = next(vae.parameters()).device
    rec = torch.cat([vae.decode(vae.encode(c.to(device) * 2 - 1).latent_dist.mode()).sample.float().cpu()
                     for c in x.split(batch_size)])
    mse = torch.mean(((rec + 1) / 2).clamp(0, 1).sub(x) ** 2)
    return float(10 * torch.log10(1 / mse))


# ----------------------------------------------------------------------------------------------- FID
def weights_fingerprint(module: torch.nn.Module) -> str:
    """8 hex digits of a hash of the module's weights (names the cached reference statistics)."""
    h = hashlib.sha1()
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:8]


def reference_stats(evaluator, n: int = 5000, seed: int = 1, held_out: bool = False,
                    cache_dir=FID_CACHE) -> ReferenceStats:
    """FID reference: evaluator features of renders of `eval_prompts(n, seed, held_out)`, cached on disk.

    Use a `seed` different from the evaluated prompts' so reference and generated images are independent
    draws of the same prompt distribution (seen or held-out combinations).
    """
    if n < 2:
        raise ValueError(f"n={n} reference images: FID needs n >= 2 (and n well above the 256 feature dims)")
    split = "heldout" if held_out else "seen"
    name = f"tinyworld-eval-{split}-n{n}-s{seed}-ev{weights_fingerprint(evaluator)}"

    def compute():
        scenes, gen = eval_prompts(n, seed=seed, held_out=held_out), torch.Generator().manual_seed(seed)
        return extract_features((render(scenes[lo:lo + 512], gen) for lo in range(0, n, 512)), evaluator.features)

    return ReferenceStats.get_or_compute(name, compute, cache_dir=cache_dir)


# ------------------------------------------------------------------------------------------ evaluate
def _ci(values: torch.Tensor, n_boot: int, seed: int) -> tuple[float, float, float]:
    if len(values) == 0:
        return (float("nan"),) * 3
    return bootstrap_ci(values.float(), n_boot=n_boot, seed=seed)


def evaluate(images: torch.Tensor, scenes: Sequence[Scene], evaluator, judge, ref: ReferenceStats,
             n_boot: int = 1000, fid_boot: int = 100, seed: int = 0, keep_features: bool = False) -> dict:
    """Accuracy (one- and two-object prompts apart), FID, CLIPScore and CLIP-IQA, each as (value, lo, hi).

    judge: a `jaq.Judge` (or (model, tokenizer, name)). Also returns "attributes" (per-attribute accuracy) and
    "per_image" arrays (N,) for paired tests between methods evaluated on the same prompts and seed;
    keep_features=True adds the evaluator features (N, D) float64 numpy array as out["features"], so a caller that
    needs them does not run the evaluator over the images again.
    """
    judge = as_judge(judge)
    hits = attribute_hits(evaluator, images, scenes)
    two = torch.tensor([s.n_objects == 2 for s in scenes])
    with torch.no_grad():
        tc = clip_score(judge.model, judge.tokenizer, images, _captions(scenes))  # (N,) in [0, 100]
        iq = clip_iqa(judge.model, judge.tokenizer, images)  # (N,) in [0, 1]
    feats = extract_features(images, evaluator.features)  # (N, 256)
    return {
        "n": len(scenes), "n_single": int((~two).sum()), "n_two": int(two.sum()), "n_ref": ref.n,
        "acc_single": _ci(hits["objects"][~two], n_boot, seed), "acc_two": _ci(hits["objects"][two], n_boot, seed),
        "acc_objects": _ci(hits["objects"], n_boot, seed), "background": _ci(hits["background"], n_boot, seed),
        "fid": bootstrap_fid_ci(feats, ref, n_boot=fid_boot, seed=seed),
        "clip_score": _ci(tc, n_boot, seed), "clip_iqa": _ci(iq, n_boot, seed),
        "attributes": {k: float(hits[k].float().mean()) for k in (*ATTRIBUTES, "all")},
        "per_image": {"objects": hits["objects"], "background": hits["background"], "two_objects": two,
                      "clip_score": tc, "clip_iqa": iq},
        **({"features": feats} if keep_features else {}),
    }
