"""Search for the Q-Sched coefficients (start_x, start_eps) that maximise JAQ on a few calibration prompts.

The paper (spec section 2.2) runs an exhaustive grid over (s, m) = (start_x, start_eps) in linspace(0.8, c_max, P)^2,
renders every calibration prompt at every point, scores each point by the set-averaged JAQ and keeps the argmax.
Three details decide whether that works, and all three are explicit here:
  * Common random numbers. The gains are small shifts around 1, easily swamped by seed noise on 5 prompts, so
    every point sees the same prompts, the same initial latents (drawn once) and the same per-step noise (every
    calibration image has its own generator, seed + 1 + its index, fresh at every point). Differences between
    points are then due to the coefficients, and a point's images do not depend on which points share its batch.
  * Batched points. Because the noise is per image, G grid points x n prompts run as ONE sampler call of G*n
    samples, each with its own coefficients (`sched.CoefficientBatch`); `max_rows` caps the rows per call. The
    grid and the coarse grid of coarse_to_fine are rendered this way (on a GPU a whole 11x11 grid is one or two
    calls); a point-at-a-time loop gives the same images up to float rounding (tested).
  * The argmax runs over JAQ. The released code took it over raw score lists, which in effect picked the point
    with the best CLIPScore (spec section 6.1); `SearchResult.best` is max(points, key=jaq) and `load` re-checks it.
  * Edge winners are flagged (`on_edge`): a winner on the border of the range may be a truncated optimum.
Cheaper alternatives to the P^2 grid:
  * coarse_to_fine: a coarse grid (3x3), then each round fits q(x, e) = a + b x + c e + d x^2 + f x e + g e^2 by
    least squares to the 9 points nearest the incumbent and evaluates q's best unevaluated fine-grid point in a
    box around the incumbent whose half-width halves every round (3 rounds: 12 of 121 points). It assumes JAQ
    is smooth at the coarse spacing; a bump narrower than one coarse cell can be missed.
  * gradient: Adam ascent on (start_x, start_eps) through the differentiable sampler, projected onto the range.
Cost: NFE = points x prompts x steps forward UNet image evaluations (the gradient method's backward passes cost
about two more each), plus wall time.

A scorer is any callable `scorer(images (B, 3, H, W) in [0, 1], prompts) -> {"tc", "iq", "jaq"}` of 0-d tensors
with a `.name` attribute; `qsched_core.jaq` provides the paper's JAQ = log(CLIPScore) + k * CLIP-IQA.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checks import check_number
from .utils import atomic_write_text
from .sampling import encode_prompts, initial_latents, sample_lcm
from .sched import CoefficientBatch, QSchedCoefficients

SCHEMA, VERSION = "qsched.search_result", 2  # 2: per-image common random numbers (SearchConfig.crn)
METHODS = ("grid", "coarse_to_fine", "gradient")
SCORE_KEYS = ("tc", "iq", "jaq")
POINT_KEYS = ("start_x", "start_eps", *SCORE_KEYS)


@dataclass
class SearchConfig:
    num_prompts: int = 5        # calibration prompts: the paper's 5 (the released code used 20-25)
    grid_min: float = 0.8       # both axes: linspace(grid_min, grid_max, grid_points), the paper's range
    grid_max: float = 1.2
    grid_points: int = 11
    num_steps: int = 4
    guidance_scale: float = 8.0  # LCM-Dreamshaper's default; w = guidance_scale - 1 is embedded
    scheduler_family: str = "lcm"  # "lcm" | "tcd"
    eta: float = 0.0            # TCD gamma (0 = deterministic, the paper's default)
    seed: int = 42
    batch_size: int = 5
    method: str = "grid"        # "grid" | "coarse_to_fine" | "gradient"
    coarse_points: int = 3      # coarse_to_fine: points per axis of the first grid (>= 3 for the quadratic fit)
    refine_rounds: int = 3      # coarse_to_fine: one surrogate-chosen point per round
    grad_steps: int = 6         # gradient: evaluated iterates (each one forward + one backward pass)
    grad_lr: float = 0.02       # gradient: Adam step size, roughly the coefficient change per iteration
    progress: bool = True       # tqdm bars
    max_rows: int = 640         # samples per batched sampler call (grid points x prompts); memory, not results
    crn: str = "per_image"      # one noise generator per calibration image; "per_batch" marks version-1 results

    def __post_init__(self):
        for name in ("grid_min", "grid_max", "eta", "grad_lr", "guidance_scale"):  # "0.8" or nan would fail later
            check_number(getattr(self, name), name)
        for name in ("num_prompts", "grid_points", "num_steps", "batch_size", "coarse_points", "grad_steps",
                     "max_rows"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be an int >= 1")
        if not (0 < self.grid_min < self.grid_max and math.isfinite(self.grid_max)):
            raise ValueError(f"grid_min={self.grid_min}, grid_max={self.grid_max} must satisfy "
                             "0 < grid_min < grid_max (the paper uses 0.8 and 1.1-1.2)")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} must be one of {METHODS}")
        if self.crn not in ("per_image", "per_batch"):
            raise ValueError(f"crn={self.crn!r} must be 'per_image' ('per_batch' only labels searches saved by "
                             "the version-1 engine, one noise generator per batch of prompts)")
        if self.scheduler_family not in ("lcm", "tcd"):
            raise ValueError(f"scheduler_family={self.scheduler_family!r} must be 'lcm' or 'tcd'")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta={self.eta} must lie in [0, 1] (TCD's gamma; 0 = deterministic)")
        if self.grid_points < 2:
            raise ValueError(f"grid_points={self.grid_points} would evaluate grid_min alone; use >= 2 (2 = the two "
                             "range ends, the paper uses 11)")
        # coarse_points only matters to coarse_to_fine: a 2-point grid search must not fail on it
        if not 3 <= self.coarse_points <= (self.grid_points if self.method == "coarse_to_fine" else math.inf):
            raise ValueError(f"coarse_points={self.coarse_points} must be in [3, grid_points={self.grid_points}] "
                             "(a 2-D quadratic needs at least a 3x3 grid)")
        if self.refine_rounds < 0 or self.seed < 0 or not (self.grad_lr > 0 and math.isfinite(self.grad_lr)):
            raise ValueError(f"refine_rounds={self.refine_rounds} and seed={self.seed} must be >= 0 and "
                             f"grad_lr={self.grad_lr} finite and > 0")

    def axis(self) -> np.ndarray:
        """The grid values of either coefficient, (grid_points,)."""
        return np.round(np.linspace(self.grid_min, self.grid_max, self.grid_points), 10)  # 1.0 stays exactly 1.0


@dataclass
class SearchResult:
    """Every evaluated point (start_x, start_eps, tc, iq, jaq), the JAQ argmax `best`, and the cost."""

    config: dict
    scorer: str
    method: str
    points: list[dict]
    best: dict
    wall_time_s: float
    network_evals: int
    on_edge: bool
    metadata: dict = field(default_factory=dict)

    def best_coefficients(self) -> QSchedCoefficients:
        return QSchedCoefficients(start_x=self.best["start_x"], start_eps=self.best["start_eps"])

    def summary(self) -> str:
        b, cfg = self.best, self.config
        head = f"{self.method} search with {self.scorer}: {len(self.points)} points, {self.network_evals} NFE"
        lines = [f"{head}, {self.wall_time_s:.1f} s",
                 f"best start_x={b['start_x']:.4f} start_eps={b['start_eps']:.4f}: JAQ={b['jaq']:.4f} "
                 f"(TC={b['tc']:.4f}, IQ={b['iq']:.4f})"]
        identity = [p for p in self.points if p["start_x"] == 1.0 and p["start_eps"] == 1.0]
        if identity:
            lines.append(f"stock scheduler (1, 1): JAQ={identity[0]['jaq']:.4f}")
        if self.on_edge:
            lines.append(f"WARNING: the winner lies on the edge of [{cfg['grid_min']}, {cfg['grid_max']}]; the "
                         "optimum may lie outside the searched range (widen grid_min/grid_max)")
        return "\n".join(lines)

    def grid_array(self, metric: str = "jaq") -> np.ndarray:
        """metric on the grid as (n_x, n_eps), rows = start_x = SearchConfig.axis(); NaN where not evaluated."""
        if metric not in SCORE_KEYS:
            raise ValueError(f"metric={metric!r} must be one of {SCORE_KEYS}")
        axis = SearchConfig(**self.config).axis()
        grid = np.full((len(axis), len(axis)), np.nan)
        for p in self.points:
            i, j = (int(np.argmin(np.abs(axis - p[k]))) for k in ("start_x", "start_eps"))
            if abs(axis[i] - p["start_x"]) > 1e-9 or abs(axis[j] - p["start_eps"]) > 1e-9:
                raise ValueError(f"point ({p['start_x']}, {p['start_eps']}) is off the grid (a {self.method} "
                                 "search); plot result.points as a scatter instead")
            grid[i, j] = p[metric]
        return grid

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps({"schema": SCHEMA, "version": VERSION, **asdict(self)}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        """Read a `save`d result and check it: schema, version, finite numbers, winner = argmax JAQ, edge flag."""
        try:
            raw = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); re-run the search to rewrite it") from err
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA or raw.get("version") not in (1, VERSION):
            found = (raw.get("schema"), raw.get("version")) if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"{path} has schema/version {found}, expected ({SCHEMA!r}, 1 or {VERSION}); it was not "
                             "written by SearchResult.save")
        if raw["version"] == 1 and isinstance(raw.get("config"), dict):  # rendered with one generator per batch
            raw["config"] = {**raw["config"], "crn": "per_batch"}
        raw = {k: v for k, v in raw.items() if k not in ("schema", "version")}
        try:
            result = cls(**raw)
            SearchConfig(**result.config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path} does not match the SearchResult/SearchConfig fields: {err}; re-run the "
                             "search to rewrite it") from err
        _check_result(result, str(path))
        return result


def _check_result(result: SearchResult, where: str) -> None:
    """Raise ValueError unless the points are finite and `best` / `on_edge` follow from them."""
    if not isinstance(result.points, list) or not result.points:
        raise ValueError(f"{where}: points must be a non-empty list")
    for p in [*result.points, result.best]:
        if not isinstance(p, dict) or set(p) != set(POINT_KEYS) or not all(_finite(p[k]) for k in POINT_KEYS):
            raise ValueError(f"{where}: point {p} must have finite numbers for exactly {POINT_KEYS}")
    if not (isinstance(result.network_evals, int) and result.network_evals >= 0 and _finite(result.wall_time_s)):
        raise ValueError(f"{where}: network_evals={result.network_evals!r} / wall_time_s={result.wall_time_s!r} "
                         "must be a non-negative int / a finite number")
    if result.best != max(result.points, key=lambda p: p["jaq"]):
        raise ValueError(f"{where}: best={result.best} is not the JAQ argmax of the points (was it ranked by "
                         "another score?)")
    if result.on_edge != on_edge(result.best, SearchConfig(**result.config)):
        raise ValueError(f"{where}: on_edge={result.on_edge} disagrees with the winner and the grid range")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _as_float(v) -> float:  # a python float as is, a (differentiable) tensor detached
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def on_edge(point: dict, cfg: SearchConfig) -> bool:
    """True when start_x or start_eps sits on the border of [grid_min, grid_max] (to float32 precision)."""
    edges = (cfg.grid_min, cfg.grid_max)
    return any(min(abs(point[k] - edge) for edge in edges) < 1e-6 for k in ("start_x", "start_eps"))


@dataclass
class CalibrationBatch:
    prompts: list[str]
    embeds: torch.Tensor   # (b, L, D)
    latents: torch.Tensor  # (b, C, h, w), drawn once and reused at every point
    seeds: list[int]       # per-image seeds of the fresh per-step-noise generators, the same at every point

    def generators(self, repeats: int = 1) -> list[torch.Generator]:
        """Fresh generators, one per image, the batch's images repeated `repeats` times (one copy per point)."""
        return [torch.Generator().manual_seed(s) for _ in range(repeats) for s in self.seeds]


def calibration_batches(pipe, prompts: Sequence[str], cfg: SearchConfig) -> list[CalibrationBatch]:
    """The common random numbers: prompt embeddings, initial latents and per-image noise seeds, fixed once."""
    latents = initial_latents(pipe, len(prompts), torch.Generator().manual_seed(cfg.seed))  # (n, C, h, w)
    slices = [slice(lo, lo + cfg.batch_size) for lo in range(0, len(prompts), cfg.batch_size)]
    return [CalibrationBatch(list(prompts[s]), encode_prompts(pipe, prompts[s]), latents[s],
                             list(range(cfg.seed + 1 + s.start, cfg.seed + 1 + s.start + len(prompts[s]))))
            for s in slices]


def generate(pipe, batches: list[CalibrationBatch], cfg: SearchConfig, coeffs: QSchedCoefficients,
             sampler: Callable = sample_lcm) -> torch.Tensor:
    """All calibration images (n, 3, H, W) for one coefficient setting, under common random numbers."""
    kwargs = dict(num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale, coeffs=coeffs,
                  scheduler_family=cfg.scheduler_family, eta=cfg.eta)
    return torch.cat([sampler(pipe, prompt_embeds=b.embeds, latents=b.latents, generator=b.generators(), **kwargs)
                      for b in batches])


@torch.no_grad()
def generate_points(pipe, batches: list[CalibrationBatch], cfg: SearchConfig,
                    points: Sequence[QSchedCoefficients], sampler: Callable = sample_lcm) -> torch.Tensor:
    """Calibration images of many coefficient settings, (P, n, 3, H, W), in as few sampler calls as fit.

    Each call stacks g points x b prompts (g * b <= cfg.max_rows): prompt embeddings and initial latents are
    repeated g times and every sample gets its own coefficients and its image's own noise generator, so point p's
    images equal `generate(pipe, batches, cfg, points[p])` up to float rounding. A sampler without the attribute
    `supports_coefficient_batch` (a custom one taking a single QSchedCoefficients) renders one point per call.
    """
    if not getattr(sampler, "supports_coefficient_batch", False):  # a custom sampler: one point at a time
        return torch.stack([generate(pipe, batches, cfg, c, sampler) for c in points])
    kwargs = dict(num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale, scheduler_family=cfg.scheduler_family,
                  eta=cfg.eta)
    per_batch = []
    for b in batches:
        n, g = len(b.prompts), max(1, cfg.max_rows // len(b.prompts))
        chunks = []
        for lo in range(0, len(points), g):
            group = list(points[lo:lo + g])
            coeffs = CoefficientBatch([c for c in group for _ in range(n)])
            images = sampler(pipe, prompt_embeds=b.embeds.repeat(len(group), 1, 1),
                             latents=b.latents.repeat(len(group), 1, 1, 1), generator=b.generators(len(group)),
                             coeffs=coeffs, **kwargs)  # (g * n, 3, H, W), point-major
            chunks.append(images.unflatten(0, (len(group), n)))
        per_batch.append(torch.cat(chunks))  # (P, b, 3, H, W)
    return torch.cat(per_batch, dim=1)  # (P, n, 3, H, W)


class _Run:
    """Book-keeping shared by the three methods: CRN batches, evaluated points, NFE and the clock."""

    def __init__(self, pipe, scorer, prompts, cfg, sampler, metadata):
        if not isinstance(getattr(scorer, "name", None), str):
            raise ValueError(f"scorer {scorer!r} needs a string .name attribute (e.g. scorer.name = 'jaq-k2')")
        if len(prompts) < cfg.num_prompts:
            raise ValueError(f"got {len(prompts)} prompts but cfg.num_prompts={cfg.num_prompts}; pass more prompts "
                             "or lower num_prompts")
        if cfg.crn != "per_image":
            raise ValueError(f"crn={cfg.crn!r} labels searches saved by the version-1 engine; new searches render "
                             "with crn='per_image' (one noise generator per calibration image)")
        self.pipe, self.scorer, self.cfg, self.sampler = pipe, scorer, cfg, sampler
        self.prompts = list(prompts[: cfg.num_prompts])
        from .metrics import machine_description  # where the search ran: reported beside it, never a match key

        self.metadata = {"pipeline": type(pipe).__name__, "num_steps": cfg.num_steps, "prompts": self.prompts,
                         "scheduler_family": cfg.scheduler_family, "machine": machine_description(),
                         **(metadata or {})}
        self.t0 = time.perf_counter()
        self.batches = calibration_batches(pipe, self.prompts, cfg)
        self.points: dict[tuple[float, float], dict] = {}
        self.network_evals = 0  # forward UNet calls, counted per rendered point

    def score(self, start_x, start_eps) -> dict[str, torch.Tensor]:
        """Render and score one point (differentiable if the coefficients are), and record it."""
        images = generate(self.pipe, self.batches, self.cfg, QSchedCoefficients(start_x, start_eps), self.sampler)
        self.network_evals += len(self.prompts) * self.cfg.num_steps
        scores = self.scorer(images, self.prompts)
        self._record(start_x, start_eps, scores)
        return scores

    def _record(self, start_x: float, start_eps: float, scores: dict) -> dict:
        point = {"start_x": _as_float(start_x), "start_eps": _as_float(start_eps)}
        point.update({k: _as_float(scores.get(k, math.nan)) for k in SCORE_KEYS})
        if not all(math.isfinite(point[k]) for k in SCORE_KEYS):
            raise ValueError(f"scorer {self.scorer.name} returned {scores} at {point}; it must return finite "
                             f"0-d tensors for {SCORE_KEYS}")
        self.points[(point["start_x"], point["start_eps"])] = point
        return point

    def evaluate(self, start_x: float, start_eps: float) -> dict:
        return self.evaluate_many([(start_x, start_eps)])[0]

    def evaluate_many(self, pairs: Sequence[tuple[float, float]], desc: str = "points") -> list[dict]:
        """Render the points not yet evaluated in batched sampler calls (`generate_points`), score each point's
        images, record them; returns the points in the order of `pairs`."""
        keys = [(float(x), float(e)) for x, e in pairs]
        todo = list(dict.fromkeys(k for k in keys if k not in self.points))
        if todo:
            chunk = max(1, self.cfg.max_rows // max(1, min(self.cfg.batch_size, len(self.prompts))))
            bar = tqdm(total=len(todo), desc=desc, disable=not self.cfg.progress or len(todo) < 2)
            for lo in range(0, len(todo), chunk):
                part = todo[lo:lo + chunk]
                images = generate_points(self.pipe, self.batches, self.cfg,
                                         [QSchedCoefficients(x, e) for x, e in part], self.sampler)  # (g, n, ...)
                self.network_evals += len(part) * len(self.prompts) * self.cfg.num_steps
                with torch.no_grad():
                    for (x, e), imgs in zip(part, images):
                        self._record(x, e, self.scorer(imgs, self.prompts))
                bar.update(len(part))
            bar.close()
        return [self.points[k] for k in keys]

    def best(self) -> dict:
        return max(self.points.values(), key=lambda p: p["jaq"])  # argmax over JAQ, never over raw score lists

    def result(self, method: str) -> SearchResult:
        best = self.best()
        return SearchResult(config=asdict(self.cfg), scorer=self.scorer.name, method=method,
                            points=list(self.points.values()), best=best, wall_time_s=time.perf_counter() - self.t0,
                            network_evals=self.network_evals, on_edge=on_edge(best, self.cfg), metadata=self.metadata)


def grid_search(pipe, scorer, prompts, cfg: SearchConfig, sampler: Callable = sample_lcm,
                metadata=None) -> SearchResult:
    """Exhaustive grid over axis x axis with common random numbers (the paper's procedure)."""
    run, axis = _Run(pipe, scorer, prompts, cfg, sampler, metadata), cfg.axis()
    run.evaluate_many([(x, e) for x in axis for e in axis], desc="grid")
    return run.result("grid")


def _quadratic_fit(points: list[dict], center: dict) -> Callable[[float, float], float]:
    """Least-squares q(x, e) = a + b x + c e + d x^2 + f x e + g e^2 through the 9 points nearest `center`."""
    def features(x, e):
        u, v = x - center["start_x"], e - center["start_eps"]  # centred for conditioning
        return np.array([1.0, u, v, u * u, u * v, v * v])

    near = sorted(points, key=lambda p: float(np.square(features(p["start_x"], p["start_eps"])[1:3]).sum()))[:9]

    design = np.stack([features(p["start_x"], p["start_eps"]) for p in near])  # (9, 6)
    coef = np.linalg.lstsq(design, np.array([p["jaq"] for p in near]), rcond=None)[0]
    return lambda x, e: float(features(x, e) @ coef)


def coarse_to_fine_search(pipe, scorer, prompts, cfg: SearchConfig, sampler: Callable = sample_lcm,
                          metadata=None) -> SearchResult:
    """Coarse grid, then `refine_rounds` quadratic-surrogate picks in a shrinking box (points stay on the grid)."""
    run, axis = _Run(pipe, scorer, prompts, cfg, sampler, metadata), cfg.axis()
    coarse = axis[np.unique(np.round(np.linspace(0, len(axis) - 1, cfg.coarse_points)).astype(int))]
    run.evaluate_many([(x, e) for x in coarse for e in coarse], desc="coarse grid")
    half = coarse[1] - coarse[0]  # box half-width: one coarse cell, halved every round
    for _ in range(cfg.refine_rounds):
        best, q = run.best(), _quadratic_fit(list(run.points.values()), run.best())
        box = max(half, axis[1] - axis[0]) + 1e-9
        todo = [(x, e) for x in axis for e in axis if (float(x), float(e)) not in run.points
                and abs(x - best["start_x"]) <= box and abs(e - best["start_eps"]) <= box]
        if todo:
            run.evaluate(*max(todo, key=lambda p: q(*p)))
        half /= 2
    return run.result("coarse_to_fine")


def gradient_search(pipe, scorer, prompts, cfg: SearchConfig, sampler: Callable = sample_lcm, metadata=None,
                    init: tuple[float, float] = (1.0, 1.0)) -> SearchResult:
    """Adam ascent of JAQ in (start_x, start_eps) from `init`, projected onto [grid_min, grid_max]^2."""
    run = _Run(pipe, scorer, prompts, cfg, sampler, metadata)
    theta = torch.tensor(init, dtype=torch.float32).clamp(cfg.grid_min, cfg.grid_max).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=cfg.grad_lr, maximize=True)
    for k in tqdm(range(cfg.grad_steps), desc="gradient", disable=not cfg.progress):
        jaq = run.score(theta[0], theta[1])["jaq"]  # recorded at the current iterate
        if k == cfg.grad_steps - 1:
            break  # the last iterate is scored, not moved
        if not (isinstance(jaq, torch.Tensor) and jaq.requires_grad):
            raise ValueError(f"scorer {run.scorer.name} returned a JAQ without a gradient; gradient_search needs a "
                             "scorer differentiable in the images (no torch.no_grad or .item() inside)")
        (theta.grad,) = torch.autograd.grad(jaq, [theta])  # d JAQ / d (start_x, start_eps); weights untouched
        opt.step()
        with torch.no_grad():
            theta.clamp_(cfg.grid_min, cfg.grid_max)  # projection onto the search box
    return run.result("gradient")


SEARCHES = {"grid": grid_search, "coarse_to_fine": coarse_to_fine_search, "gradient": gradient_search}


def run_search(pipe, scorer, prompts, cfg: SearchConfig, sampler: Callable = sample_lcm,
               metadata=None) -> SearchResult:
    """Dispatch on cfg.method."""
    return SEARCHES[cfg.method](pipe, scorer, prompts, cfg, sampler=sampler, metadata=metadata)
