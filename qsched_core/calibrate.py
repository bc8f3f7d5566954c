"""Glue for running Q-Sched end to end: quantize a pipeline's denoiser, search its coefficients, summarise.

The pieces live elsewhere (quant/ quantizes, sched.py schedules, search.py searches, jaq.py scores); this file
wires them the way the paper does (spec qsched.md §2.2, §3):
  1. `quantized_pipeline(pipe, "w4a8")`: a new pipeline whose denoiser (UNet or DiT) has every nn.Linear
     replaced by a QuantLinear; convolutions, text encoders and the VAE stay FP and are shared, not copied.
     Quantization is dynamic round-to-nearest, so no calibration data is needed for this step.
  2. `calibrate(CalibrationConfig(...))`: the JAQ search over (start_x, start_eps) on `calib_prompts(n)` with
     common random numbers, recorded with its preset, scorer, cost (wall time, network evaluations) and machine.
  3. `denoised_trajectory` / `trajectory_error`: where quantization error enters the few-step trajectory,
     i.e. the per-step distance between the FP and the quantized model's consistency outputs on the same noise.
  4. `grid_report` / `compare_methods` / `fresh_check`: the summary of one setting (grid winner vs the stock
     (1, 1), how close the cheaper searches got with how many of the grid's evaluations, and whether the
     winner's gain survives other prompts and noise: with 5 calibration images it may not).
`load_or_calibrate` reuses a saved search run with the same config, so notebooks can show the full sweep.
"""
from __future__ import annotations

import copy
import inspect
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from . import hub
from .checks import check_number
from .jaq import make_scorer
from .quant import PRESETS, QuantConfig, quantize_
from .sched import QSchedCoefficients, make_qsched_scheduler
from .search import METHODS, SearchConfig, SearchResult, calibration_batches, generate, run_search

DENOISERS = ("unet", "transformer")


def denoiser_name(pipe) -> str:
    """'unet' or 'transformer': the pipeline component that Q-Sched quantizes."""
    for name in DENOISERS:
        if getattr(pipe, name, None) is not None:
            return name
    raise ValueError(f"{type(pipe).__name__} has neither a unet nor a transformer component; Q-Sched quantizes "
                     "the denoiser of a diffusers text-to-image pipeline")


def rebuild_pipeline(pipe, **replaced):
    """A new pipeline of the same class sharing `pipe`'s modules, except those in `replaced` (and a fresh
    scheduler built from the same config, since schedulers hold per-call state)."""
    components = {**pipe.components, "scheduler": type(pipe.scheduler).from_config(pipe.scheduler.config),
                  **replaced}
    params = inspect.signature(type(pipe).__init__).parameters
    options = {k: v for k, v in pipe.config.items() if k in params and k not in components}
    if "requires_safety_checker" in params:
        options["requires_safety_checker"] = False
    new = type(pipe)(**components, **options)
    new.set_progress_bar_config(disable=True)
    return new


def quantized_pipeline(pipe, preset: str | QuantConfig):
    """`pipe` with a quantized copy of its denoiser's nn.Linear layers ("fp" keeps a plain copy).

    The original pipeline is left untouched; every other module is shared with it (they stay FP, as in the paper).
    """
    cfg = preset if isinstance(preset, QuantConfig) else QuantConfig.from_name(preset)
    name = denoiser_name(pipe)
    net = copy.deepcopy(getattr(pipe, name))
    if cfg.quantize_weights or cfg.quantize_activations:
        quantize_(net, cfg)
    return rebuild_pipeline(pipe, **{name: net.eval()})


def denoised_trajectory(pipe, prompts: Sequence[str], num_steps: int = 4, guidance_scale: float = 4.0,
                        seed: int = 0, coeffs: QSchedCoefficients | None = None) -> torch.Tensor:
    """The LCM consistency output `denoised` after every step, (N, B, C, h, w), from the stock pipeline call
    (with the Q-Sched scheduler swapped in when `coeffs` is given); same seed = same initial noise."""
    run = pipe if coeffs is None else rebuild_pipeline(pipe, scheduler=make_qsched_scheduler(pipe.scheduler, coeffs))
    steps = []

    def keep(_pipe, _i, _t, tensors):
        steps.append(tensors["denoised"].detach().clone())
        return {}

    with torch.no_grad():
        run(prompt=list(prompts), num_inference_steps=num_steps, guidance_scale=guidance_scale, output_type="latent",
            generator=torch.Generator().manual_seed(seed), callback_on_step_end=keep,
            callback_on_step_end_tensor_inputs=["denoised"])
    return torch.stack(steps)


def trajectory_error(reference: torch.Tensor, other: torch.Tensor) -> list[float]:
    """Relative error ||other_i - reference_i|| / ||reference_i|| at every step i of two (N, ...) trajectories."""
    if reference.shape != other.shape:
        raise ValueError(f"trajectories of shapes {tuple(reference.shape)} and {tuple(other.shape)} must match; "
                         "run both with the same prompts, steps and seed")
    diff = (other - reference).flatten(1).norm(dim=1)  # (N,)
    return (diff / reference.flatten(1).norm(dim=1).clamp_min(1e-12)).tolist()


@dataclass
class CalibrationConfig:
    """One Q-Sched calibration run (what scripts/qsched_search.py parses its flags into)."""

    pipeline: str = "tinyworld-lcm"     # a name from qsched_core.hub.PIPELINES (lcm or tcd family)
    preset: str = "w4a8"                # a QuantConfig preset applied to the denoiser's nn.Linear layers
    steps: int = 4                      # sampling steps N
    method: str = "grid"                # "grid" | "coarse_to_fine" | "gradient"
    n_prompts: int = 5                  # calibration prompts (the paper: 5)
    grid_min: float = 0.8
    grid_max: float = 1.2
    grid_points: int = 11
    k: float = 2.0                      # JAQ = TC + k * IQ
    judge: str = "tinyworld-clip"       # a name from qsched_core.hub.JUDGES
    seed: int = 42                      # common random numbers: initial latents and per-step noise
    guidance_scale: float | None = None  # None: the pipeline's default from the hub registry
    grad_steps: int = 6
    grad_lr: float = 0.02
    threads: int = 2                    # torch CPU threads
    progress: bool = False

    def __post_init__(self):
        spec = hub.pipeline_spec(self.pipeline)
        if spec.family not in ("lcm", "tcd"):
            raise ValueError(f"pipeline={self.pipeline!r} uses the {spec.family} sampler; the coefficient search "
                             "runs on sample_lcm (lcm / tcd families), e.g. pipeline='tinyworld-lcm'")
        hub.judge_spec(self.judge)
        if self.preset.lower() not in PRESETS:
            raise ValueError(f"preset={self.preset!r} is unknown; use one of {', '.join(PRESETS)}")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} must be one of {METHODS}")
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads={self.threads!r} must be an int >= 1 (this machine: {os.cpu_count()} cores)")
        self.search_config()  # validates steps, prompts, grid and gradient settings
        check_number(self.k, "k", 0, hint="JAQ = TC + k * IQ, the paper uses k=2")

    def search_config(self) -> SearchConfig:
        spec = hub.pipeline_spec(self.pipeline)
        guidance = spec.guidance_scale if self.guidance_scale is None else self.guidance_scale
        return SearchConfig(num_prompts=self.n_prompts, grid_min=self.grid_min, grid_max=self.grid_max,
                            grid_points=self.grid_points, num_steps=self.steps, guidance_scale=guidance,
                            scheduler_family=spec.family, seed=self.seed, method=self.method,
                            grad_steps=self.grad_steps, grad_lr=self.grad_lr, progress=self.progress)


def calibration_captions(n: int) -> list[str]:
    """The first n calibration captions of the tiny world (disjoint from train and eval by construction)."""
    from .tinyworld.world import calib_prompts

    return [scene.caption for scene in calib_prompts(n)]


def calibrate(cfg: CalibrationConfig, pipe=None, judge=None) -> SearchResult:
    """Run one JAQ coefficient search (with torch set to cfg.threads threads); pass an already loaded FP `pipe` /
    `judge` to skip loading them.

    The metadata names the pipeline, preset and FP UNet fingerprint the way `evaluate.find_cached_search`
    matches saved searches, so the evaluation runner reuses these results instead of searching again.
    """
    torch.set_num_threads(cfg.threads)
    pipe = pipe if pipe is not None else hub.load_pipeline(cfg.pipeline)
    judge = judge if judge is not None else hub.load_judge(cfg.judge)
    scorer = make_scorer("jaq", judge, k=cfg.k)
    metadata = {"pipeline": cfg.pipeline, "preset": cfg.preset, "quantize_convs": False,
                **_fingerprint(pipe), "judge_fingerprint": judge_fingerprint(judge), "quant": QuantConfig.from_name(cfg.preset).describe(),
                "calibration": asdict(cfg), "scorer_description": scorer.describe(),
                "threads": torch.get_num_threads(), "load_avg_start": _load_avg()}
    cpu0 = time.process_time()
    qpipe = quantized_pipeline(pipe, cfg.preset)
    result = run_search(qpipe, scorer, calibration_captions(cfg.n_prompts), cfg.search_config(), metadata=metadata)
    result.metadata.update(load_avg_end=_load_avg(), cpu_time_s=time.process_time() - cpu0)
    return result


def judge_fingerprint(judge) -> str:
    from .jaq import as_judge
    from .tinyworld.quality import weights_fingerprint

    return weights_fingerprint(as_judge(judge).model)


def load_or_calibrate(cfg: CalibrationConfig, path, pipe=None, judge=None) -> SearchResult:
    """The search saved at `path` if it was run with this same config (threads and progress aside), else a new
    `calibrate(cfg)`; notebooks use it to show the full-mode sweep's results instead of recomputing them."""
    from pathlib import Path

    ignore = ("threads", "progress")
    wanted = {k: v for k, v in asdict(cfg).items() if k not in ignore}
    if path is not None and Path(path).is_file():
        try:
            saved = SearchResult.load(path)
        except ValueError as err:  # corrupt or stale: search again instead of failing
            warnings.warn(f"not reusing {path}: {err}", stacklevel=2)
            return calibrate(cfg, pipe=pipe, judge=judge)
        ran = {k: v for k, v in saved.metadata.get("calibration", {}).items() if k not in ignore}
        if ran == wanted:
            return saved
    return calibrate(cfg, pipe=pipe, judge=judge)


def _fingerprint(pipe) -> dict:
    try:
        from .tinyworld.quality import weights_fingerprint
    except ImportError:  # the fingerprint only serves the evaluation runner's cache
        return {}
    return {"unet_fingerprint": weights_fingerprint(getattr(pipe, denoiser_name(pipe)))}


def _load_avg() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def identity_point(result: SearchResult) -> dict | None:
    """The evaluated point at (start_x, start_eps) = (1, 1), i.e. the naive stock scheduler, if any."""
    return next((p for p in result.points if p["start_x"] == 1.0 and p["start_eps"] == 1.0), None)


@dataclass
class MethodComparison:
    """How a cheaper search did against the exhaustive grid of the same setting."""

    method: str
    best: dict
    gap_pct: float          # 100 * (grid best JAQ - method best JAQ) / |grid best JAQ|; <= 0: as good or better
    nfe_fraction: float     # forward network evaluations relative to the grid's
    time_fraction: float    # wall time relative to the grid's
    within: bool            # gain_share >= min_gain_share and nfe_fraction <= max_nfe_fraction
    extra: dict = field(default_factory=dict)
    gain_share: float = math.nan  # (method best - JAQ(1, 1)) / (grid best - JAQ(1, 1)); 1 = all of the grid's gain


def compare_methods(grid: SearchResult, others: Sequence[SearchResult], min_gain_share: float = 0.90,
                    max_nfe_fraction: float = 0.10) -> list[MethodComparison]:
    """Score every non-grid search of one setting against the grid's JAQ *gain over (1, 1)* and cost.

    The relative JAQ gap is reported too, but it is met trivially: the whole JAQ surface spans a few hundredths
    of JAQ's value, so even the stock (1, 1) is "within 1 %" of the grid's best. The share of the gain is what a
    cheap search has to reach (NaN when the grid's winner is (1, 1) itself: there is no gain to share)."""
    if grid.method != "grid":
        raise ValueError(f"the reference must be a grid search, got method={grid.method!r}")
    out = []
    for res in others:
        if res.config["num_steps"] != grid.config["num_steps"]:
            raise ValueError(f"{res.method} ran {res.config['num_steps']} steps but the grid ran "
                             f"{grid.config['num_steps']}; compare searches of the same setting")
        gap = 100.0 * (grid.best["jaq"] - res.best["jaq"]) / max(abs(grid.best["jaq"]), 1e-12)
        nfe = res.network_evals / max(grid.network_evals, 1)
        ident = identity_point(grid)
        gain = grid.best["jaq"] - ident["jaq"] if ident else math.nan
        share = (res.best["jaq"] - ident["jaq"]) / gain if ident and gain > 0 else math.nan
        out.append(MethodComparison(res.method, res.best, gap, nfe, res.wall_time_s / max(grid.wall_time_s, 1e-9),
                                    bool(share >= min_gain_share and nfe <= max_nfe_fraction), gain_share=share))
    return out


def grid_report(grid: SearchResult) -> dict:
    """Winner, identity, JAQ range over the grid and the edge flag of one grid search, as a flat dict."""
    ident = identity_point(grid)
    jaqs = [p["jaq"] for p in grid.points]
    return {"best_start_x": grid.best["start_x"], "best_start_eps": grid.best["start_eps"],
            "best_jaq": grid.best["jaq"], "best_tc": grid.best["tc"], "best_iq": grid.best["iq"],
            "identity_jaq": ident["jaq"] if ident else math.nan,
            "gain_vs_identity": grid.best["jaq"] - ident["jaq"] if ident else math.nan,
            "jaq_min": min(jaqs), "jaq_range": max(jaqs) - min(jaqs), "on_edge": grid.on_edge,
            "winner_is_identity": ident is not None and ident == grid.best,
            "grid_wall_s": grid.wall_time_s, "grid_nfe": grid.network_evals}


def fresh_check(pipe, scorer, result: SearchResult, prompts: Sequence[str], seed: int = 1000) -> dict:
    """JAQ of the search's winner and of the stock (1, 1) on other prompts and noise than the calibration's,
    with the result's preset and settings: does the gain survive outside the 5 calibration images?"""
    cfg = replace(SearchConfig(**result.config), num_prompts=len(prompts), seed=seed, progress=False)
    qpipe = quantized_pipeline(pipe, result.metadata.get("preset", "fp"))
    batches = calibration_batches(qpipe, list(prompts), cfg)
    out = {"n_prompts": len(prompts), "seed": seed}
    for label, point in (("identity", (1.0, 1.0)), ("winner", (result.best["start_x"], result.best["start_eps"]))):
        with torch.no_grad():
            scores = scorer(generate(qpipe, batches, cfg, QSchedCoefficients(*point)), list(prompts))
        out[label] = {k: float(v) for k, v in scores.items()}
    out["gain"] = out["winner"]["jaq"] - out["identity"]["jaq"]
    return out
