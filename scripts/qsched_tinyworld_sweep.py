"""Q-Sched on the tiny world: W4A8 and W8A8 student at 2, 4 and 8 steps, three search methods each.

    python scripts/qsched_tinyworld_sweep.py                    # ~20-30 min on a shared 2-core CPU, resumable
    python scripts/qsched_tinyworld_sweep.py --presets w4a8 --steps 4 --grid-points 5   # a quick look

For every (preset, steps): the 11x11 JAQ grid (the paper's procedure), coarse-to-fine and gradient searches
from the same common random numbers, a heatmap PNG with the grid's argmax and the other searches' points, and a
fresh check (winner vs stock (1, 1) on the next calibration captions with other noise). Then
results/qsched_search/summary.{md,csv}: per setting the grid winner, its JAQ gain over (1, 1), the edge flag,
how close the cheap searches got (relative %) with which fraction of the grid's evaluations, the calibration
cost, and the targets met or missed. A finished JSON is reused (delete it to rerun that search). A separate
timing run of the CLI (`scripts/qsched_search.py ... --threads 2 --out <dir>/..._grid_2threads.json`) is
picked up by the summary when present.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from qsched_core import hub, viz
from qsched_core.calibrate import (
    CalibrationConfig,
    judge_fingerprint,
    calibrate,
    calibration_captions,
    compare_methods,
    fresh_check,
    grid_report,
)
from qsched_core.jaq import make_scorer
from qsched_core.metrics import machine_description
from qsched_core.checks import check_int, check_number
from qsched_core.quant import PRESETS
from qsched_core.search import METHODS as SEARCH_METHODS
from qsched_core.search import SearchConfig, SearchResult
from qsched_core.utils import atomic_write_text, results_dir

TARGET_GRID_S = 180.0       # 11x11 grid, 5 prompts, 4 steps
TARGET_SHARE, TARGET_NFE = 0.90, 0.10  # a cheap search must reach 90 % of the grid's gain over (1, 1)


@dataclass
class SweepConfig:
    presets: str = "w4a8,w8a8"
    steps: str = "2,4,8"
    methods: str = "grid,coarse_to_fine,gradient"
    n_prompts: int = 5
    grid_points: int = 11
    grid_min: float = 0.8
    grid_max: float = 1.2
    k: float = 2.0
    seed: int = 42
    threads: int = 1            # 1 thread: the shared 2-core CPU runs tiny convolutions fastest this way
    check_prompts: int = 10     # fresh check on calibration captions n_prompts .. n_prompts + check_prompts (0: skip)
    check_seed: int = 1000
    out_dir: str = ""           # default results/qsched_search (results/fast/... when QSCHED_FAST=1)
    notes: str = ""             # free text for the summary (e.g. runs that were stopped and why)
    device: str = "cpu"         # where the student and the judge run ("cuda" for the batched engine on a GPU)

    def __post_init__(self):
        # every bad value fails here, before minutes of sampling (SearchConfig checks the grid fields)
        unknown = [p for p in self.presets.split(",") if p not in PRESETS] + \
                  [m for m in self.methods.split(",") if m not in SEARCH_METHODS]
        if unknown:
            raise ValueError(f"unknown presets/methods {unknown}; presets: {', '.join(PRESETS)}; methods: "
                             f"{', '.join(SEARCH_METHODS)} (comma-separated, no spaces)")
        if not all(n.isdigit() and int(n) >= 1 for n in self.steps.split(",")):
            raise ValueError(f"steps={self.steps!r} must be comma-separated ints >= 1, e.g. --steps 2,4,8")
        SearchConfig(num_prompts=self.n_prompts, grid_points=self.grid_points, grid_min=self.grid_min,
                     grid_max=self.grid_max, seed=self.seed)
        check_number(self.k, "k", 0, hint="the paper uses k=2")
        check_int(self.threads, "threads", 1), check_int(self.check_prompts, "check_prompts", 0)
        if "grid" not in self.methods.split(","):
            raise ValueError(f"methods={self.methods!r} must include 'grid': the others are compared against it")
        self.out_dir = self.out_dir or str(results_dir("qsched_search"))
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)

    def settings(self) -> list[tuple[str, int]]:
        return [(p, int(n)) for p in self.presets.split(",") for n in self.steps.split(",")]


def run_name(preset: str, steps: int, method: str) -> str:
    return f"tinyworld-lcm_{preset}_{steps}step_{method}"


def run_setting(cfg: SweepConfig, preset: str, steps: int, pipe, judge, log) -> dict:
    out = Path(cfg.out_dir)
    results, reused = {}, 0
    judge_fp = judge_fingerprint(judge)
    for method in cfg.methods.split(","):
        path = out / f"{run_name(preset, steps, method)}.json"
        if path.is_file():
            try:
                old = SearchResult.load(path)
                if old.config.get("crn") != "per_image" or old.metadata.get("judge_fingerprint") != judge_fp:
                    raise ValueError("rendered by the version-1 engine or scored by another judge")
                results[method], reused = old, reused + 1
                log(f"{path.name}: reused")
                continue
            except ValueError as err:  # a corrupt or stale result is searched again, then overwritten
                log(f"{path.name}: not reusable ({err}); searching again")
        ccfg = CalibrationConfig(preset=preset, steps=steps, method=method, n_prompts=cfg.n_prompts,
                                 grid_min=cfg.grid_min, grid_max=cfg.grid_max, grid_points=cfg.grid_points,
                                 k=cfg.k, seed=cfg.seed, threads=cfg.threads)
        result = calibrate(ccfg, pipe=pipe, judge=judge)
        result.save(path)
        results[method] = result
        log(f"{path.name}: {result.summary().splitlines()[0]}; cpu {result.metadata['cpu_time_s']:.0f} s, "
            f"load {result.metadata['load_avg_start']} -> {result.metadata['load_avg_end']}")
    grid = results["grid"]
    others = [r for m, r in results.items() if m != "grid"]
    fig = viz.plot_search(grid, overlays=others, title=f"JAQ, {preset.upper()} student, {steps} steps")
    fig.savefig(out / f"{run_name(preset, steps, 'heatmap')}.png", dpi=110)
    row = {"preset": preset, "steps": steps, **grid_report(grid), "searches_reused": reused,
           "searches": len(results)}
    row["grid_cpu_s"] = grid.metadata.get("cpu_time_s", float("nan"))
    row["searches_wall_s"] = sum(r.wall_time_s for r in results.values())
    row["searches_cpu_s"] = sum(r.metadata.get("cpu_time_s", float("nan")) for r in results.values())
    for cmp in compare_methods(grid, others, TARGET_SHARE, TARGET_NFE):
        res = results[cmp.method]
        row.update({f"{cmp.method}_best_x": cmp.best["start_x"], f"{cmp.method}_best_eps": cmp.best["start_eps"],
                    f"{cmp.method}_gap_pct": cmp.gap_pct, f"{cmp.method}_gain_share": cmp.gain_share,
                    f"{cmp.method}_nfe_frac": cmp.nfe_fraction, f"{cmp.method}_time_frac": cmp.time_fraction,
                    f"{cmp.method}_wall_s": res.wall_time_s, f"{cmp.method}_within": cmp.within})
    if cfg.check_prompts:  # every method's winner on the same held-out captions and noise
        row.update(_fresh(cfg, grid, pipe, judge, out / f"{run_name(preset, steps, 'check')}.json"))
        for m, res in results.items():
            if m != "grid":
                fresh = _fresh(cfg, res, pipe, judge, out / f"{run_name(preset, steps, m + '_check')}.json")
                row[f"{m}_fresh_gain"] = fresh["fresh_gain"]
    return row


def _fresh(cfg: SweepConfig, grid: SearchResult, pipe, judge, path: Path) -> dict:
    try:
        check = json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        print(f"{path} is unreadable ({err}): recomputing the fresh check", flush=True)
        check = None
    if check is not None and check.get("winner_point") != [grid.best["start_x"], grid.best["start_eps"]]:
        check = None  # written for another winner (an older search): recompute
    if check is None:
        prompts = calibration_captions(cfg.n_prompts + cfg.check_prompts)[cfg.n_prompts:]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        check = fresh_check(pipe, make_scorer("jaq", judge, k=cfg.k), grid, prompts, cfg.check_seed)
        check.update(prompts=prompts, wall_s=time.perf_counter() - wall0, cpu_s=time.process_time() - cpu0,
                     winner_point=[grid.best["start_x"], grid.best["start_eps"]])
        atomic_write_text(path, json.dumps(check, indent=1))
    return {"fresh_identity_jaq": check["identity"]["jaq"], "fresh_winner_jaq": check["winner"]["jaq"],
            "fresh_gain": check["gain"], "fresh_wall_s": check.get("wall_s", float("nan")),
            "fresh_cpu_s": check.get("cpu_s", float("nan"))}


def _fmt(v, spec=".4f") -> str:
    return "yes" if v is True else "no" if v is False else format(v, spec) if isinstance(v, float) else str(v)


def write_summary(cfg: SweepConfig, rows: list[dict], wall_s: float, cpu_s: float) -> Path:
    out = Path(cfg.out_dir)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    methods = [m for m in cfg.methods.split(",") if m != "grid"]
    head = ["setting", "grid winner (x, eps)", "JAQ winner", "JAQ (1,1)", "gain", "JAQ range", "edge",
            "held-out gain", "grid s / NFE"] + [f"{m}: share of gain, NFE frac, held-out gain" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['preset'].upper()} {r['steps']}-step", f"({r['best_start_x']:.2f}, {r['best_start_eps']:.2f})",
                 _fmt(r["best_jaq"]), _fmt(r["identity_jaq"]), f"{r['gain_vs_identity']:+.4f}",
                 _fmt(r["jaq_range"]), _fmt(r["on_edge"]), f"{r.get('fresh_gain', float('nan')):+.4f}",
                 f"{r['grid_wall_s']:.0f} / {r['grid_nfe']}"]
        cells += [f"{r[f'{m}_gain_share']:.2f}, {r[f'{m}_nfe_frac']:.3f}, {r.get(f'{m}_fresh_gain', float('nan')):+.4f}"
                  for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    text = ["# Q-Sched coefficient search on the tiny world\n",
            (f"Written by `scripts/qsched_tinyworld_sweep.py` ({time.strftime('%Y-%m-%d %H:%M')}); config: "
             f"`{json.dumps(asdict(cfg))}`.\n"),
            (f"Machine: {machine_description()}; torch threads {cfg.threads}. The CPU was shared with other jobs "
             f"(load averages per run are in each JSON's metadata). All searches together: "
             f"{sum(r['searches_wall_s'] for r in rows) / 60:.1f} min wall, "
             f"{sum(r['searches_cpu_s'] for r in rows) / 60:.1f} min CPU; fresh checks "
             f"{sum(r.get('fresh_wall_s', 0.0) for r in rows) / 60:.1f} min wall, "
             f"{sum(r.get('fresh_cpu_s', 0.0) for r in rows) / 60:.1f} min CPU. (The last invocation, which reused "
             f"{sum(r.get('searches_reused', 0) for r in rows)} of {sum(r.get('searches', 0) for r in rows)} "
             f"searches saved before it: {wall_s / 60:.1f} min wall, {cpu_s / 60:.1f} min CPU.)\n"),
            (f"JAQ = log(CLIPScore) + k * CLIP-IQA with the tiny CLIP judge, k = {cfg.k:g}, {cfg.n_prompts} calibration "
             f"prompts, {cfg.grid_points}x{cfg.grid_points} grid over [{cfg.grid_min}, {cfg.grid_max}], common "
             "random numbers (one noise generator per calibration image), grid points rendered in batches. gain = "
             "JAQ(winner) - JAQ(1, 1) on the calibration set; held-out gain = the same difference on "
             f"{cfg.check_prompts} other calibration captions with other noise. share of gain = (method best - "
             "JAQ(1, 1)) / (grid best - JAQ(1, 1)) on the calibration set (> 1: the method found a higher JAQ off "
             "the grid; n/a when the grid's winner is (1, 1)). The relative JAQ gap (summary.csv) is not a "
             "criterion: JAQ's differences across the grid are small next to its value, so points far from the "
             "optimum are already within a few per cent of it.\n"),
            *lines, "", *targets(cfg, rows), *(["", "## Notes", "", cfg.notes] if cfg.notes else [])]
    (out / "summary.md").write_text("\n".join(text) + "\n")
    return out / "summary.md"


def targets(cfg: SweepConfig, rows: list[dict]) -> list[str]:
    """Met / missed lines for the calibration-cost targets, from the rows and the optional 2-thread timing run."""
    lines = ["## Targets\n"]
    four = [r for r in rows if r["steps"] == 4 and r["preset"] == "w4a8"]
    timing = Path(cfg.out_dir) / f"{run_name('w4a8', 4, 'grid')}_2threads.json"
    extra = sorted((Path(cfg.out_dir) / "timing").glob("*.json"))
    if four:
        r = four[0]
        lines.append(f"- 11x11 grid, 5 prompts, 4 steps (W4A8) <= {TARGET_GRID_S:.0f} s: "
                     f"{'met' if r['grid_wall_s'] <= TARGET_GRID_S else 'missed'} with {cfg.threads} thread(s): "
                     f"{r['grid_wall_s']:.0f} s wall, {r['grid_cpu_s']:.0f} s CPU.")
    if timing.is_file():
        t = SearchResult.load(timing)
        lines.append(f"- the same grid with torch.set_num_threads({t.metadata.get('threads')}): {t.wall_time_s:.0f} s "
                     f"wall, {t.metadata.get('cpu_time_s', float('nan')):.0f} s CPU "
                     f"({'met' if t.wall_time_s <= TARGET_GRID_S else 'missed'}); load average "
                     f"{t.metadata.get('load_avg_start')} at the start, {t.metadata.get('load_avg_end')} at the end.")
    for path in extra:  # short timing runs of scripts/qsched_search.py, e.g. the same grid at 1 and 2 threads
        t = SearchResult.load(path)
        lines.append(f"- timing/{path.name}: {len(t.points)} points at {t.metadata.get('threads')} thread(s), "
                     f"{t.wall_time_s / len(t.points):.2f} s wall per point ({t.wall_time_s:.0f} s, "
                     f"{t.metadata.get('cpu_time_s', float('nan')):.0f} s CPU), load average "
                     f"{t.metadata.get('load_avg_start')} -> {t.metadata.get('load_avg_end')}; JAQ at (1, 1) "
                     f"{next(p['jaq'] for p in t.points if p['start_x'] == 1.0 and p['start_eps'] == 1.0):.6f}.")
    for m in [m for m in cfg.methods.split(",") if m != "grid"]:
        ok = sum(bool(r[f"{m}_within"]) for r in rows)
        lines.append(f"- {m} reaches >= {TARGET_SHARE:.0%} of the grid's JAQ gain over (1, 1) with <= "
                     f"{TARGET_NFE:.0%} of its network evaluations: {ok} of {len(rows)} settings"
                     + (" (forward NFE only; each gradient iterate also runs a backward pass)" if m == "gradient"
                        else "") + ".")
    flat = [f"{r['preset'].upper()} {r['steps']}-step" for r in rows if r["winner_is_identity"]]
    lines.append(f"- settings whose grid winner is the stock (1, 1): {', '.join(flat) or 'none'}.")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(SweepConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    cfg = SweepConfig(**vars(p.parse_args(argv)))
    print(json.dumps(asdict(cfg)), flush=True)
    torch.set_num_threads(cfg.threads)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    pipe = hub.load_pipeline("tinyworld-lcm", device=cfg.device)
    judge = hub.load_judge("tinyworld-clip", device=cfg.device)
    rows = []
    for preset, steps in cfg.settings():
        rows.append(run_setting(cfg, preset, steps, pipe, judge, lambda msg: print(msg, flush=True)))
    path = write_summary(cfg, rows, time.perf_counter() - wall0, time.process_time() - cpu0)
    print(path.read_text())


if __name__ == "__main__":
    main()
