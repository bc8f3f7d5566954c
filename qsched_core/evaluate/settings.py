"""What one row of a Q-Sched results table is: a `Setting`, how its coefficients are found (`Calibration`),
and what every row is evaluated on (`EvalConfig`).

Settings are frozen dataclasses, hashable and validated on construction, so a bad row fails before any image is
generated and the same setting always maps to the same cache entry. A Q-Sched row is compared with its
`naive_twin`: the same model, steps, guidance and sampler family under the stock scheduler.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..jaq import OBJECTIVES
from ..quant.config import PRESETS
from ..search import METHODS, SearchConfig
from ..utils import REPO_ROOT, RESULTS_DIR

CACHE_DIR = REPO_ROOT / ".cache" / "qsched_eval"
SEARCH_DIR = RESULTS_DIR / "qsched_search"
CACHE_VERSION = 2  # 2: cells carry CLIPScore by a second judge (clip_score_v1)
SCHEDULERS, AXES = ("naive", "qsched"), ("both", "x", "eps")
PTQ_METHODS = ("rtn", "smoothquant", "gptq", "quarot", "ptqd")  # how a quantized row is quantized (evaluate.ptq)
PTQ_NAMES = {"rtn": "RTN", "smoothquant": "SmoothQuant", "gptq": "GPTQ", "quarot": "QuaRot", "ptqd": "PTQD"}
KEEP_IMAGES = 32  # first images of each cell kept (uint8) for figures and the FP-distance diagnostic


@dataclass(frozen=True)
class Calibration:
    """How Q-Sched picks (start_x, start_eps): the search objective, prompts, grid and method."""
    objective: str = "jaq"      # "jaq" = log CLIPScore + k * CLIP-IQA | "clipscore" | "iq" (jaq.OBJECTIVES)
    k: float = 2.0
    num_prompts: int = 5        # the paper's 5 calibration prompts
    prompt_seed: int = 0        # world.calib_prompts(num_prompts, seed)
    grid_points: int = 11       # linspace(grid_min, grid_max, P) per axis; odd P keeps 1.0 on the grid
    grid_min: float = 0.8
    grid_max: float = 1.2
    method: str = "grid"        # "grid" | "coarse_to_fine" | "gradient"
    axes: str = "both"          # "x" / "eps": argmax over the grid line where the other start is 1
    grad_steps: int = 6
    seed: int = 42

    def __post_init__(self):
        if self.objective not in OBJECTIVES or self.method not in METHODS or self.axes not in AXES:
            raise ValueError(f"objective={self.objective!r}, method={self.method!r}, axes={self.axes!r}: pick from "
                             f"{list(OBJECTIVES)}, {list(METHODS)} and {list(AXES)}")
        if not (self.k >= 0 and math.isfinite(self.k)) or self.num_prompts < 1:
            raise ValueError(f"k={self.k} must be finite and >= 0 and num_prompts={self.num_prompts} >= 1")
        on_grid = np.isclose(SearchConfig(grid_min=self.grid_min, grid_max=self.grid_max,
                                          grid_points=self.grid_points).axis(), 1.0).any()
        if self.axes != "both" and (self.method != "grid" or not on_grid):
            raise ValueError(f"axes={self.axes!r} restricts a grid to its line through 1.0: use method='grid' "
                             f"and an odd grid_points (got method={self.method!r}, grid_points={self.grid_points})")

    def search_config(self, steps: int, guidance: float, family: str, eta: float) -> SearchConfig:
        return SearchConfig(num_prompts=self.num_prompts, grid_min=self.grid_min, grid_max=self.grid_max,
                            grid_points=self.grid_points, num_steps=steps, guidance_scale=guidance,
                            scheduler_family=family, eta=eta, seed=self.seed, method=self.method,
                            grad_steps=self.grad_steps, progress=False)


@dataclass(frozen=True)
class Setting:
    """One table row: quantization preset x steps x scheduler (and how Q-Sched is calibrated)."""
    preset: str = "w4a8"        # quant.PRESETS name, "fp" = no quantization
    steps: int = 4
    scheduler: str = "naive"    # "naive" = stock scheduler, "qsched" = Q-Sched ramps
    coefficients: tuple[float, float] | None = None  # fixed (start_x, start_eps); None + qsched = search
    guidance: float = 4.0       # tinyworld.loaders.GUIDANCE_SCALE (LCM-Dreamshaper uses 8)
    quantize_convs: bool = False  # the "all layers" ablation: Conv2d weights and inputs too
    ptq: str = "rtn"            # PTQ method under the row: rtn (naive) | smoothquant | gptq | quarot | ptqd
    family: str = "lcm"         # "lcm" | "tcd"
    eta: float = 0.0            # TCD gamma
    pipeline: str = "tinyworld-lcm"  # hub name of Models.pipe; matches saved searches to their model
    calibration: Calibration = field(default_factory=Calibration)
    name: str = ""              # display name; derived from the fields when empty

    def __post_init__(self):
        if self.preset not in PRESETS or self.scheduler not in SCHEDULERS or self.family not in ("lcm", "tcd"):
            raise ValueError(f"preset={self.preset!r}, scheduler={self.scheduler!r}, family={self.family!r}: use a "
                             f"preset of {list(PRESETS)}, a scheduler of {SCHEDULERS} and family 'lcm' or 'tcd'")
        if not isinstance(self.steps, int) or self.steps < 1 or not self.guidance >= 1:
            raise ValueError(f"steps={self.steps!r} must be an int >= 1 and guidance={self.guidance} >= 1")
        if self.coefficients is not None:
            object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))
            if self.scheduler == "naive" or len(self.coefficients) != 2:
                raise ValueError(f"coefficients={self.coefficients} need scheduler='qsched' and two values "
                                 "(start_x, start_eps); the naive row always runs the stock scheduler")
        if self.ptq not in PTQ_METHODS or (self.ptq != "rtn" and (self.preset in ("fp", "w16a16")
                                                                   or self.quantize_convs)):
            raise ValueError(f"ptq={self.ptq!r} with preset={self.preset!r}, quantize_convs={self.quantize_convs}: "
                             f"choose ptq from {PTQ_METHODS}; a method other than 'rtn' needs a quantized preset "
                             "and Linear layers only (quantize_convs=False)")
        if self.quantize_convs and self.preset in ("fp", "w16a16"):
            raise ValueError("quantize_convs=True with preset='fp' quantizes nothing; pick a preset like 'w4a8'")
        if not 0 <= self.eta <= 1 or (self.eta > 0 and self.family != "tcd"):
            raise ValueError(f"eta={self.eta} is TCD's gamma in [0, 1]; set family='tcd' to use it")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        fp = self.preset in ("fp", "w16a16")
        base = ("FP" if fp else self.preset.upper()) + (" all layers" if self.quantize_convs else "")
        base += f" TCD g={self.eta:g}" if self.family == "tcd" else ""
        if self.ptq != "rtn":
            base = f"{PTQ_NAMES[self.ptq]} {base}"
            return base if self.scheduler == "naive" else f"Q-Sched + {base}"
        if self.scheduler == "naive":
            return base if fp else f"naive {base}"
        return f"{base} + Q-Sched" if fp else f"Q-Sched {base}"


@dataclass(frozen=True)
class EvalConfig:
    """What every setting is evaluated on (and where). FAST_METRICS: the smaller reference and bootstrap sizes of
    the CI smoke runs (QSCHED_FAST=1) that every script's fast configuration uses."""
    n_prompts: int = 1000       # evaluation images per cell and seed (world.eval_prompts)
    seeds: tuple[int, ...] = (0,)
    prompt_seed: int = 0
    held_out: bool = False      # True: prompts with held-out (colour, shape) combinations
    n_ref: int = 5000           # FID reference renders (a different seed than the prompts)
    ref_seed: int = 1
    batch_size: int = 128
    device: str = "cpu"
    n_boot: int = 1000          # bootstrap resamples for per-image means
    fid_boot: int = 100         # for FID's interval (report.fid_ci: one eigendecomposition each)
    cache_dir: Path = CACHE_DIR
    search_dirs: tuple[Path, ...] = (SEARCH_DIR,)

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.n_prompts < 2 or self.n_ref < 2 or not self.seeds or min(self.seeds) < 0:
            raise ValueError(f"n_prompts={self.n_prompts} and n_ref={self.n_ref} must be >= 2 (FID needs two "
                             f"images) and seeds={self.seeds} non-empty and >= 0")


FAST_METRICS = dict(n_ref=256, n_boot=200, fid_boot=5)  # CI smoke sizes of EvalConfig's metric fields


def naive_twin(s: Setting) -> Setting:
    """The stock-scheduler row that a Q-Sched row is compared with (same model, steps, guidance, family)."""
    return replace(s, scheduler="naive", coefficients=None, calibration=Calibration(), name="")
