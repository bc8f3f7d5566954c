"""Instrument validity: can the judge and the FID features see quantization damage at all?

Every Q-Sched table stands on two instruments: the JAQ judge (the search maximises it) and the evaluator
(FID features and attribute read-back). Before trusting either, this module measures them on cases whose
answer is known: a model quantized harder is damaged more (W8A8 < W4A8 < W4A4 < W3A4, all layers > linears
only), and fewer sampling steps damage a few-step student (1 < 2 < 4 steps).

For each variant (preset x steps) the FP student and its quantized copies generate the *same* prompts from the
*same* noise (paired), and every instrument scores the images. Reported, per instrument:
  1. JAQ of FP, W8A8, W4A8, W4A4, W3A4 at 4 steps, with paired 95% bootstrap intervals of JAQ(FP) - JAQ(X);
  2. Spearman's rho over all variants between dJAQ (vs FP at 4 steps) and dFID, and d(attribute accuracy);
  3. the quality term's saturation: the share of FP images with CLIP-IQA above 0.95;
  4. the FID noise floor: FID between two disjoint render sets of the table's N, next to FID(naive W4A8);
  5. P(JAQ(FP) > JAQ(W4A8)) on random calibration-sized prompt subsets (the search sees 5 prompts);
  6. the judge's quality curve on degradations it never saw in training (`train_clip.evaluate_judge`).
JAQ of a set is log(mean CLIPScore) + k * mean CLIP-IQA (`jaq.jaq`), so it is recomputed on every resample.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..jaq import clip_iqa, clip_score
from ..metrics import ReferenceStats, extract_features
from ..progress import progress
from ..stats import spearman
from .report import fid_eigh


@dataclass(frozen=True)
class Variant:
    preset: str
    steps: int
    quantize_convs: bool = False

    @property
    def name(self) -> str:
        return f"{self.preset}{'-all' if self.quantize_convs else ''}-{self.steps}step"


VARIANTS = (*(Variant("fp", s) for s in (1, 2, 4, 8)), Variant("w8a8", 4),
            *(Variant("w4a8", s) for s in (1, 2, 4, 8)), *(Variant("w4a4", s) for s in (2, 4, 8)),
            Variant("w3a4", 4), Variant("w4a8", 4, quantize_convs=True), Variant("w4a8-qmax", 4))
ORDER = ("fp-4step", "w8a8-4step", "w4a8-4step", "w4a4-4step", "w3a4-4step")


@dataclass
class Instrument:
    """A judge (with the CLIP-IQA logit scale it is read with) and an evaluator (FID features, accuracy)."""
    name: str
    judge: object               # jaq.Judge
    iq_logit_scale: float | None
    evaluator: torch.nn.Module
    note: str = ""


@dataclass
class ValidityConfig:
    n_prompts: int = 500
    seeds: tuple = (0, 1)
    prompt_seed: int = 0
    k: float = 2.0
    n_ref: int = 5000
    ref_seed: int = 1
    n_boot: int = 1000
    calib_sizes: tuple = (5, 10, 20, 40)
    n_draws: int = 2000
    batch_size: int = 250
    judge_curve_n: int = 512    # renders per degradation strength in the judge's quality curves
    table_n: int = 5000         # the main table's images per row: the FID noise floor is measured there too
    device: str = "cpu"
    variants: tuple = VARIANTS

    def __post_init__(self):
        if self.n_prompts < 10 or not self.seeds:
            raise ValueError(f"n_prompts={self.n_prompts} must be >= 10 and seeds={self.seeds} non-empty")
        names = [v.name for v in self.variants]
        if "fp-4step" not in names:
            raise ValueError(f"variants {names} must include fp-4step, the reference every difference is taken to")


@torch.no_grad()
def score_images(images: torch.Tensor, captions: list[str], inst: Instrument, scenes) -> dict[str, np.ndarray]:
    """Per-image CLIPScore, CLIP-IQA, evaluator features and object hits of one instrument."""
    from ..tinyworld.quality import attribute_hits

    dev = next(inst.evaluator.parameters()).device
    images = images.to(dev)
    j = inst.judge
    tc = clip_score(j.model, j.tokenizer, images, captions, batch_size=256)
    iq = clip_iqa(j.model, j.tokenizer, images, batch_size=256, logit_scale=inst.iq_logit_scale)
    feats = extract_features(images, inst.evaluator.features, batch_size=256)
    hits = attribute_hits(inst.evaluator, images, scenes)["objects"]
    return {"tc": tc.cpu().numpy(), "iq": iq.cpu().numpy(), "features": feats, "hits": hits.numpy()}


def generate_variants(pipe, cfg: ValidityConfig, scenes) -> dict[str, torch.Tensor]:
    """Images (N * seeds, 3, 64, 64) in [0, 1] per variant, paired: same prompts and noise in every variant."""
    from ..tinyworld.quality import generate
    from .runner import quantized_pipeline

    out, pipes = {}, {}
    for v in progress(cfg.variants, desc="variants"):
        key = (v.preset, v.quantize_convs)
        if key not in pipes:
            pipes[key] = quantized_pipeline(pipe, v.preset, v.quantize_convs)[0]
        out[v.name] = torch.cat([generate(pipes[key], scenes, v.steps, seed=s, batch_size=cfg.batch_size)
                                 for s in cfg.seeds])
    return out


def jaq_value(tc: np.ndarray, iq: np.ndarray, k: float) -> float:
    """JAQ of one image set: log(max(mean CLIPScore, 1)) + k * mean CLIP-IQA (as `jaq.jaq`)."""
    return math.log(max(float(tc.mean()), 1.0)) + k * float(iq.mean())


def paired_jaq_diff(a: dict, b: dict, k: float, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """(JAQ(a) - JAQ(b), lo, hi): percentile bootstrap with the same image indices for both sets."""
    rng, n = np.random.default_rng(seed), len(a["tc"])
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        boots.append(jaq_value(a["tc"][i], a["iq"][i], k) - jaq_value(b["tc"][i], b["iq"][i], k))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return jaq_value(a["tc"], a["iq"], k) - jaq_value(b["tc"], b["iq"], k), float(lo), float(hi)


def p_first_wins(a: dict, b: dict, k: float, size: int, n_draws: int, seed: int = 0) -> float:
    """P(JAQ(a) > JAQ(b)) on random subsets of `size` paired images drawn without replacement."""
    rng, n = np.random.default_rng(seed), len(a["tc"])
    wins = 0
    for _ in range(n_draws):
        i = rng.choice(n, size, replace=False)
        wins += jaq_value(a["tc"][i], a["iq"][i], k) > jaq_value(b["tc"][i], b["iq"][i], k)
    return wins / n_draws


def noise_floor(evaluator, n: int, seed: int = 11) -> tuple[float, np.ndarray]:
    """FID between two disjoint render sets of n images each (same prompt distribution), and the second set's features."""
    from ..tinyworld.render import render
    from ..tinyworld.world import eval_prompts

    def feats(s):
        scenes, gen = eval_prompts(n, seed=s), torch.Generator().manual_seed(s)
        dev = next(evaluator.parameters()).device
        return extract_features((render(scenes[lo:lo + 500], gen).to(dev) for lo in range(0, n, 500)),
                                evaluator.features)
    a, b = feats(seed), feats(seed + 1)
    return fid_eigh(a, ReferenceStats.from_features("renders-b", b)), b


def analyse(scores: dict[str, dict], inst: Instrument, ref: ReferenceStats, cfg: ValidityConfig,
            floor: tuple[float, np.ndarray]) -> dict:
    """Every number of the report for one instrument, from per-image scores of every variant.

    floor: `noise_floor(inst.evaluator, n)` at the number of images n per variant (passed in, so instruments that
    share an evaluator render it once)."""
    k, fp = cfg.k, scores["fp-4step"]
    rows = {}
    for name, s in scores.items():
        rows[name] = {"jaq": jaq_value(s["tc"], s["iq"], k), "clip_score": float(s["tc"].mean()),
                      "clip_iqa": float(s["iq"].mean()), "fid": fid_eigh(s["features"], ref),
                      "acc_objects": float(s["hits"].mean())}
    d = {n: {m: rows[n][m] - rows["fp-4step"][m] for m in ("jaq", "fid", "acc_objects")} for n in rows if n != "fp-4step"}
    order = {n: paired_jaq_diff(fp, scores[n], k, cfg.n_boot) for n in (*ORDER[1:], "w4a8-qmax-4step") if n in scores}
    n_img = len(fp["tc"])
    floor, render_b = floor
    ref_b = ReferenceStats.from_features("renders-b", render_b)
    w4 = scores.get("w4a8-4step")
    return {
        "instrument": inst.name, "note": inst.note, "rows": rows,
        "fp_minus": {n: list(v) for n, v in order.items()},
        "spearman_djaq_dfid": spearman([v["jaq"] for v in d.values()], [v["fid"] for v in d.values()]),
        "spearman_djaq_dacc": spearman([v["jaq"] for v in d.values()], [v["acc_objects"] for v in d.values()]),
        "iq_above_095_fp": float((fp["iq"] > 0.95).mean()), "iq_median_fp": float(np.median(fp["iq"])),
        "fid_floor": floor, "n_images": n_img,
        "fid_w4a8_vs_renders_same_n": None if w4 is None else fid_eigh(w4["features"], ref_b),
        "p_fp_beats_w4a8": {} if w4 is None else {
            n: p_first_wins(fp, w4, k, n, cfg.n_draws) for n in cfg.calib_sizes if n <= n_img},
        "dead_dims_fp": int((fp["features"].std(0) < 1e-6).sum()), "feature_dim": int(fp["features"].shape[1]),
    }


@dataclass
class ValidityResult:
    config: dict
    instruments: list[dict]
    judge_curves: dict = field(default_factory=dict)
    wall_s: float = 0.0


def run_validity(pipe, instruments: list[Instrument], cfg: ValidityConfig, vae=None, log=print) -> ValidityResult:
    """Generate every variant once, score it with every instrument, and analyse (see the module docstring)."""
    from ..tinyworld.quality import reference_stats
    from ..tinyworld.train_clip import evaluate_judge
    from ..tinyworld.quality import generate
    from ..tinyworld.world import eval_prompts
    from .runner import quantized_pipeline

    t0 = time.perf_counter()
    scenes = eval_prompts(cfg.n_prompts, seed=cfg.prompt_seed)
    images = generate_variants(pipe, cfg, scenes)
    table_scenes = eval_prompts(cfg.table_n, seed=cfg.prompt_seed + 100)
    w4_table = generate(quantized_pipeline(pipe, "w4a8")[0], table_scenes, 4, seed=0, batch_size=cfg.batch_size)
    log(f"generated {len(images)} variants x {len(scenes) * len(cfg.seeds)} images in {time.perf_counter() - t0:.0f} s")
    captions, all_scenes = [s.caption for s in scenes] * len(cfg.seeds), list(scenes) * len(cfg.seeds)
    out, curves, floors = [], {}, {}

    def floor_of(evaluator, n: int) -> tuple[float, np.ndarray]:  # once per evaluator and size: thousands of renders
        if (id(evaluator), n) not in floors:
            floors[(id(evaluator), n)] = noise_floor(evaluator, n)
        return floors[(id(evaluator), n)]

    for inst in instruments:
        scores = {n: score_images(im, captions, inst, all_scenes) for n, im in images.items()}
        # reference renders come from the CPU renderer: their features are taken on a CPU copy of the evaluator
        ref = reference_stats(copy.deepcopy(inst.evaluator).cpu(), n=cfg.n_ref, seed=cfg.ref_seed)
        out.append(analyse(scores, inst, ref, cfg, floor_of(inst.evaluator, len(captions))))
        floor, render_b = floor_of(inst.evaluator, cfg.table_n)
        w4 = extract_features(w4_table.to(next(inst.evaluator.parameters()).device), inst.evaluator.features)
        out[-1].update(table_n=cfg.table_n, fid_floor_table_n=floor,
                       fid_w4a8_table_n=fid_eigh(w4, ReferenceStats.from_features("renders-b", render_b)))
        key = f"{inst.judge.name} (scale {'learned' if inst.iq_logit_scale is None else inst.iq_logit_scale})"
        if key not in curves:
            curves[key] = evaluate_judge(inst.judge.model, cfg.device, n=cfg.judge_curve_n, vae=vae,
                                         logit_scale=inst.iq_logit_scale)
        log(f"{inst.name}: rho(dJAQ, dFID) {out[-1]['spearman_djaq_dfid']:+.3f}, "
            f"rho(dJAQ, dAcc) {out[-1]['spearman_djaq_dacc']:+.3f}")
    cfg_dict = {**asdict(cfg), "variants": [v.name for v in cfg.variants]}
    return ValidityResult(cfg_dict, out, curves, time.perf_counter() - t0)
