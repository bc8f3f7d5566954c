"""The runner: quantize the student, find the Q-Sched coefficients, generate paired images, score, cache.

For each setting `run_settings`
  1. quantizes the student's UNet (a deep copy; nn.Linear only, as the paper's torchao setup, or every layer
     for the "all layers" ablation) and measures its packed size;
  2. finds (start_x, start_eps) by the JAQ search (`search.run_search`) on calibration prompts, which are
     disjoint from the evaluation prompts by construction (`world.calib_prompts`); a finished search is
     reused from `results/qsched_search/` or this runner's cache when its config, scorer, prompts and
     quantization match;
  3. generates one image per evaluation prompt with `quality.generate`, whose noise depends only on
     (seed, image index): every row sees the same prompts and the same x_T, so rows are *paired*;
  4. scores them with `quality.evaluate` (FID on evaluator features against ground-truth renders, CLIPScore,
     CLIP-IQA, attribute accuracy) and keeps the per-image arrays and features for paired tests (`report`).
Cells are cached under `.cache/qsched_eval/` by a hash of everything that determines them (setting,
coefficients, prompts, seed, weights' fingerprints) but not the device: a cell computed on a GPU is reused on
the CPU (the two differ by float rounding) and records where it was computed (`Cell.machine`). Rebuilding a
table after a crash or a format change costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..calibrate import quantized_pipeline as _quantized_linears
from ..jaq import as_judge, make_scorer
from ..progress import progress
from ..quant import QuantConfig, fake_quantize, model_size_report
from ..sched import QSchedCoefficients
from ..search import SearchConfig, SearchResult, run_search
from ..utils import atomic_write, atomic_write_text, load_or_compute
from .ptq import ptq_pipeline
from .settings import CACHE_VERSION, KEEP_IMAGES, Calibration, EvalConfig, Setting


@dataclass
class Models:
    pipe: object                # FP pipeline
    evaluator: nn.Module
    judge: object               # jaq.Judge
    ref: object                 # metrics.ReferenceStats
    judge2: object | None = None  # a second, independent judge for CLIPScore only (the search never maximised it)


def load_models(cfg: EvalConfig, pipeline: str = "tinyworld-lcm", judge: str = "tinyworld-clip") -> Models:
    """The FP student, evaluator, judge and FID reference statistics, on cfg.device."""
    from .. import hub
    from ..tinyworld.loaders import load_evaluator
    from ..tinyworld.quality import reference_stats

    evaluator = load_evaluator(device=cfg.device)
    # reference renders come from the CPU renderer, so their features are taken on a CPU copy (same weights,
    # same cache entry); the generated images are scored on cfg.device
    ref = reference_stats(load_evaluator(device="cpu"), n=cfg.n_ref, seed=cfg.ref_seed, held_out=cfg.held_out)
    # the tiny world's first judge scores CLIPScore a second time: a CLIPScore gain that the search's own judge sees
    # and this one does not is the search fitting its judge
    judge2 = hub.load_judge(SECOND_JUDGE[judge], device=cfg.device) if judge in SECOND_JUDGE else None
    return Models(hub.load_pipeline(pipeline, device=cfg.device), evaluator, hub.load_judge(judge, device=cfg.device),
                  ref, judge2)


SECOND_JUDGE = {"tinyworld-clip": "tinyworld-clip-v1"}  # judge -> the independent judge of `clip_score_v1`


# ------------------------------------------------------------------------------------------- quantization
def quantize_convs_(module: nn.Module, cfg: QuantConfig) -> int:
    """Fake-quantize every Conv2d in place (weights per cfg, inputs per pixel over channels); returns packed bytes.

    Weights (O, I, kh, kw) -> (O, K = I*kh*kw) use cfg.w_group_size when it divides K, else one scale per
    output channel (conv_in has K = 4*3*3 = 36). Activations: one scale per pixel over C channels, the conv
    analogue of per-token. Simulated, like QuantLinear: the convolution itself runs in float.
    """
    total = 0
    for conv in [m for m in module.modules() if isinstance(m, nn.Conv2d)]:
        w = conv.weight.detach()
        k = w[0].numel()
        g = cfg.w_group_size if cfg.w_group_size > 0 and k % cfg.w_group_size == 0 else -1
        w2 = w.reshape(len(w), k)  # (O, I, kh, kw) -> (O, K)
        conv.weight.data = fake_quantize(w2, cfg.w_bits, g, cfg.w_symmetric, clip_ratio=cfg.w_clip_ratio,
                                         scale_rule=cfg.w_scale_rule).view_as(w)
        n_scales = len(w) * (k // g if g > 0 else 1)
        zeros = 0 if cfg.w_symmetric else math.ceil(n_scales * cfg.w_bits / 8)
        total += math.ceil(w.numel() * cfg.w_bits / 8) + 2 * n_scales + zeros
        total += 2 * conv.bias.numel() if conv.bias is not None else 0
        if cfg.quantize_activations:
            conv.register_forward_pre_hook(lambda m, args, c=cfg: (_quantize_pixels(args[0], c), *args[1:]))
    return total


def _quantize_pixels(x: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    x_t = x.movedim(1, -1)  # (B, C, H, W) -> (B, H, W, C): one "token" per pixel
    return fake_quantize(x_t, cfg.a_bits, -1, cfg.a_symmetric, clip_ratio=cfg.a_clip_ratio,
                         scale_rule=cfg.a_scale_rule).movedim(-1, 1)


def quantized_pipeline(pipe, preset: str, quantize_convs: bool = False) -> tuple[object, dict]:
    """(`calibrate.quantized_pipeline` of pipe, optionally with Conv2d quantized too; packed / FP16 sizes in MB)."""
    if preset in ("fp", "w16a16"):
        mb = model_size_report(pipe.unet).fp16_bytes / 2**20
        return pipe, {"size_mb": mb, "fp16_mb": mb}
    qpipe = _quantized_linears(pipe, preset)
    report = model_size_report(qpipe.unet)
    size = report.quantized_bytes
    if quantize_convs:
        conv_fp16 = sum(2 * p.numel() for m in qpipe.unet.modules() if isinstance(m, nn.Conv2d)
                        for p in m.parameters())
        size += quantize_convs_(qpipe.unet, QuantConfig.from_name(preset)) - conv_fp16
    return qpipe, {"size_mb": size / 2**20, "fp16_mb": report.fp16_bytes / 2**20}


# ------------------------------------------------------------------------------------------- coefficients
def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _same_search(result: SearchResult, scfg: SearchConfig, scorer: str, prompts: list[str], meta: dict) -> bool:
    drop = ("progress", "max_rows")  # neither changes what a search measures
    mine = {k: v for k, v in asdict(scfg).items() if k not in drop}
    theirs = {k: v for k, v in result.config.items() if k not in drop}
    rmeta = result.metadata
    return (mine == theirs and result.scorer == scorer and rmeta.get("prompts") == prompts
            and all(rmeta.get(k) == v for k, v in meta.items())
            and rmeta.get("ptq", "rtn") == meta.get("ptq", "rtn"))  # a plain row must not reuse a GPTQ row's search


def find_cached_search(scfg: SearchConfig, scorer: str, prompts: list[str], meta: dict,
                       dirs) -> tuple[SearchResult | None, str]:
    """A saved SearchResult whose config, scorer, prompts and metadata (preset, ...) all match, and its path."""
    for d in dirs:
        for path in sorted(Path(d).glob("*.json")) if Path(d).is_dir() else []:
            try:
                result = SearchResult.load(path)
            except ValueError:
                continue  # another kind of JSON (or an older schema) in the folder
            if _same_search(result, scfg, scorer, prompts, meta):
                return result, str(path)
    return None, ""


def best_point(result: SearchResult, axes: str = "both") -> dict:
    """JAQ argmax over all points ("both") or over the line start_eps == 1 ("x") / start_x == 1 ("eps")."""
    if axes == "both":
        return result.best
    other = {"x": "start_eps", "eps": "start_x"}[axes]
    line = [p for p in result.points if abs(p[other] - 1.0) < 1e-9]
    if not line:
        raise ValueError(f"the search has no point with {other} = 1; axes={axes!r} needs a grid through 1.0")
    return max(line, key=lambda p: p["jaq"])


def calibrate(get_pipe, setting: Setting, judge, cfg: EvalConfig, fingerprint: str):
    """(QSchedCoefficients or None, calibration record): fixed, reused from a saved search, or searched now."""
    if setting.scheduler == "naive":
        return None, {"source": "stock scheduler", "wall_s": 0.0, "nfe": 0}
    if setting.coefficients is not None:
        return QSchedCoefficients(*setting.coefficients), {"source": "fixed", "wall_s": 0.0, "nfe": 0}
    from ..tinyworld.world import calib_prompts

    cal = setting.calibration
    scfg = cal.search_config(setting.steps, setting.guidance, setting.family, setting.eta)
    scorer = make_scorer(cal.objective, judge, cal.k)
    prompts = [s.caption for s in calib_prompts(cal.num_prompts, seed=cal.prompt_seed)]
    from ..tinyworld.quality import weights_fingerprint

    # the judge's weights are part of what a search measured: a retrained judge never reuses an old search
    meta = {"preset": setting.preset, "quantize_convs": setting.quantize_convs, "pipeline": setting.pipeline,
            "unet_fingerprint": fingerprint, "judge_fingerprint": weights_fingerprint(as_judge(judge).model),
            **({"ptq": setting.ptq} if setting.ptq != "rtn" else {})}
    own = Path(cfg.cache_dir) / "search"
    # own searches first: the cached cells were generated with their winners (a flat JAQ surface lets float
    # noise between machines move the argmax, so a CPU rerun of the same grid may pick a neighbouring point)
    name = f"{setting.preset}{'' if setting.ptq == 'rtn' else '-' + setting.ptq}-{setting.steps}step-{_digest([asdict(scfg), meta, scorer.name])}.json"

    def saved():
        found = find_cached_search(scfg, scorer.name, prompts, meta, (own, *cfg.search_dirs))
        return None if found[0] is None else found

    def search():
        result = run_search(get_pipe(), scorer, prompts, scfg, metadata=meta)
        own.mkdir(parents=True, exist_ok=True)
        return result, str(result.save(own / name))

    # several stages side by side need the same search: one runs it, the others wait and load it
    result, source = load_or_compute(own / name, saved, search)
    best = best_point(result, cal.axes)
    share = 1.0 if cal.axes == "both" else cal.grid_points / len(result.points)  # a line costs one row
    jaqs = np.array([p["jaq"] for p in result.points])
    identity = [p["jaq"] for p in result.points if p["start_x"] == 1.0 and p["start_eps"] == 1.0]
    record = {"source": source, "wall_s": result.wall_time_s * share, "nfe": round(result.network_evals * share),
              "best_jaq": best["jaq"], "identity_jaq": identity[0] if identity else None,
              "jaq_range": float(jaqs.max() - jaqs.min()), "on_edge": result.on_edge, "scorer": scorer.name}
    return QSchedCoefficients(best["start_x"], best["start_eps"]), record


# ------------------------------------------------------------------------------------------------- cells
@dataclass
class Cell:
    """One setting at one seed: metrics (value, lo, hi), per-image arrays, size and calibration cost."""
    setting: Setting
    seed: int
    coefficients: tuple[float, float] | None
    metrics: dict
    size: dict
    calibration: dict
    gen_s: float
    machine: str = ""           # where the cell was computed (CPU/GPU model): the cache key ignores the device
    per_image: dict = field(repr=False, default_factory=dict)  # name -> (N,) arrays, "features" (N, D)
    images: np.ndarray | None = field(repr=False, default=None)  # (KEEP_IMAGES, 3, H, W) uint8
    from_cache: bool = False    # reloaded by this run rather than computed (not saved)
    eval_s: float | None = None  # wall time of every metric of the cell (None: a cell saved before it was timed)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("per_image", "images", "from_cache")}


def _cell_paths(cfg: EvalConfig, key: str) -> tuple[Path, Path]:
    d = Path(cfg.cache_dir) / "cells"
    return d / f"{key}.json", d / f"{key}.npz"


def load_cell(cfg: EvalConfig, key: str) -> Cell | None:
    meta_path, arr_path = _cell_paths(cfg, key)
    if not (meta_path.is_file() and arr_path.is_file()):
        return None
    try:
        raw = json.loads(meta_path.read_text())
        raw["setting"] = Setting(**{**raw["setting"], "calibration": Calibration(**raw["setting"]["calibration"])})
        raw["coefficients"] = None if raw["coefficients"] is None else tuple(raw["coefficients"])  # JSON gave a list
        with np.load(arr_path) as f:
            arrays = {k: f[k] for k in f.files}
        images = arrays.pop("images", None)
        raw.pop("from_cache", None)
        return Cell(**raw, per_image=arrays, images=images, from_cache=True)
    except (OSError, EOFError, KeyError, TypeError, AttributeError, ValueError, zipfile.BadZipFile) as err:
        warnings.warn(f"cached cell {meta_path} / {arr_path.name} is unreadable ({type(err).__name__}: {err}); "
                      "it will be recomputed", stacklevel=2)
        return None  # a corrupt or stale cell is recomputed (and overwritten), never trusted


def save_cell(cfg: EvalConfig, key: str, cell: Cell) -> None:
    meta_path, arr_path = _cell_paths(cfg, key)
    with atomic_write(arr_path, "wb") as f:  # arrays first: the JSON's presence marks a complete cell
        np.savez_compressed(f, images=cell.images, **cell.per_image)
    atomic_write_text(meta_path, json.dumps(cell.to_json(), indent=1, default=float))


def evaluate_images(images: torch.Tensor, scenes, models: Models, cfg: EvalConfig, seed: int) -> tuple[dict, dict]:
    """(metrics, per-image arrays incl. evaluator features) via `quality.evaluate`, on cfg.device.

    FID's interval is recomputed with `report.fid_ci` (the same bootstrap, one eigendecomposition per draw
    instead of scipy's sqrtm), so quality.evaluate runs with a single FID draw.
    """
    from ..tinyworld.quality import evaluate
    from .report import fid_ci

    images = images.to(cfg.device)
    out = evaluate(images, scenes, models.evaluator, models.judge, models.ref, n_boot=cfg.n_boot, fid_boot=1,
                   seed=seed, keep_features=True)
    feats = out.pop("features")  # (N, D) float64: the evaluator's pass inside `evaluate`, not a second one
    per_image = {k: v.detach().cpu().numpy() for k, v in out.pop("per_image").items()}
    per_image["features"] = feats.astype(np.float32)
    out["fid"] = fid_ci(per_image["features"].astype(np.float64), models.ref, cfg.fid_boot, seed=seed)
    if models.judge2 is not None:  # CLIPScore by the independent judge (SECOND_JUDGE)
        from ..jaq import clip_score
        from ..tinyworld.quality import _captions, _ci

        with torch.no_grad():
            tc2 = clip_score(models.judge2.model, models.judge2.tokenizer, images, _captions(scenes))
        out["clip_score_v1"] = _ci(tc2, cfg.n_boot, seed)
        per_image["clip_score_v1"] = tc2.detach().cpu().numpy()
    return json.loads(json.dumps(out, default=float)), per_image


def _machine(device: str) -> str:
    gpu = torch.cuda.get_device_name(device) if str(device).startswith("cuda") else "CPU"
    return f"{gpu}, torch {torch.__version__}"


def _compute_cell(s: Setting, seed: int, coeffs, coeff_pair, calib: dict, get, scenes, models: Models,
                  cfg: EvalConfig) -> Cell:
    """Generate the setting's images at `seed` and evaluate them (timed apart)."""
    from ..tinyworld.quality import generate

    pipe, size = get(s)
    t0 = time.perf_counter()
    images = generate(pipe, scenes, s.steps, s.guidance, seed=seed, batch_size=cfg.batch_size,
                      coeffs=coeffs, scheduler_family=s.family, eta=s.eta)  # (N, 3, H, W) in [0, 1]
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, per_image = evaluate_images(images, scenes, models, cfg, seed)
    eval_s = time.perf_counter() - t0
    kept = (images[:KEEP_IMAGES] * 255).round().to(torch.uint8).numpy()
    return Cell(s, seed, coeff_pair, metrics, size, calib, gen_s, _machine(cfg.device), per_image, kept,
                eval_s=eval_s)


def run_settings(settings: list[Setting], cfg: EvalConfig, models: Models | None = None, log=print) -> list[Cell]:
    """Evaluate every setting at every seed of cfg on the same prompts and noise; cached cells are reloaded."""
    from ..tinyworld.quality import weights_fingerprint
    from ..tinyworld.world import eval_prompts

    models = models or load_models(cfg)
    scenes = eval_prompts(cfg.n_prompts, seed=cfg.prompt_seed, held_out=cfg.held_out)
    fingerprint = weights_fingerprint(models.pipe.unet)
    judge_fp = weights_fingerprint(models.judge.model)
    pipes: dict[tuple[str, bool], tuple] = {}

    def get(s: Setting):
        k = (s.preset, s.quantize_convs) if s.ptq == "rtn" else (s.preset, s.ptq, s.steps, s.guidance)
        if k not in pipes:
            pipes[k] = (quantized_pipeline(models.pipe, *k) if s.ptq == "rtn"
                        else ptq_pipeline(models.pipe, s.preset, s.ptq, s.steps, s.guidance))
        return pipes[k]

    cells = []
    for s in progress(settings, desc="table rows"):
        coeffs, calib = calibrate(lambda s=s: get(s)[0], s, models.judge, cfg, fingerprint)
        coeff_pair = None if coeffs is None else (float(coeffs.start_x), float(coeffs.start_eps))
        for seed in cfg.seeds:
            key = _digest([CACHE_VERSION, asdict(s), coeff_pair, seed, cfg.n_prompts, cfg.prompt_seed, cfg.held_out,
                           models.ref.name, models.judge.name, judge_fp, fingerprint, cfg.n_boot, cfg.fid_boot])
            def compute(s=s, seed=seed, key=key, coeffs=coeffs, coeff_pair=coeff_pair, calib=calib) -> Cell:
                cell = _compute_cell(s, seed, coeffs, coeff_pair, calib, get, scenes, models, cfg)
                save_cell(cfg, key, cell)
                return cell

            # another stage may be computing this very cell: it is computed once
            cell = load_or_compute(_cell_paths(cfg, key)[0], lambda key=key: load_cell(cfg, key), compute)
            log(f"{s.label:>28} {s.steps} steps seed {seed}: FID {cell.metrics['fid'][0]:.2f}, "
                f"CLIP {cell.metrics['clip_score'][0]:.2f}, IQA {cell.metrics['clip_iqa'][0]:.3f}, "
                f"acc {cell.metrics['acc_objects'][0]:.3f}, coeffs {coeff_pair}")
            cells.append(cell)
    return cells
