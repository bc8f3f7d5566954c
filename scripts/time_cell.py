"""Time one ablation cell with the machine to itself: a fresh Q-Sched search, 1,000 images, every metric.

    python scripts/time_cell.py --device cuda --batch-size 500   # W4A8, 4 steps, 11x11 grid, 1,000 images, 7 repeats
    QSCHED_FAST=1 python scripts/time_cell.py                     # CI smoke size -> results/fast/

A cell of `scripts/qsched_ablations.py` is one calibration recipe evaluated like a main-table row: the recipe's
search, its winner's images of the evaluation prompts, and every metric (FID with its interval, CLIPScore by both
judges, CLIP-IQA, attribute accuracy). Inside `make tables` cells share the GPU with other stages, so their "cell s"
column says little about one cell alone. Here every repeat starts from an empty temporary cache, with no saved search
to reuse (`search_dirs=()`), so nothing is reused. The models and FID reference statistics are loaded first, once
per process, and timed apart. The first repeat also pays one-off GPU costs (kernel loading, allocator growth), so
the target is read from the median of the others. Writes results/cell_timing.md and .json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from qsched_core import fast_mode
from qsched_core.evaluate import FAST_METRICS, Calibration, EvalConfig, Setting, load_models, run_settings
from qsched_core.metrics import machine_description
from qsched_core.utils import atomic_write_text, results_dir

TARGET_S = 10.0  # issue target: one ablation cell (search + 1,000 images + all metrics) <= 10 s on one H200


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="w4a8")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--n-prompts", type=int, default=None, help="evaluation images (default 1000; FAST 16)")
    p.add_argument("--grid-points", type=int, default=None, help="grid points per axis (default 11; FAST 3)")
    p.add_argument("--repeats", type=int, default=7, help="cells timed, each from an empty cache (>= 2; the first "
                                                           "is not counted)")
    p.add_argument("--batch-size", type=int, default=None, help="images per sampler call (default 500 on a GPU, 64 "
                                                                  "on the CPU)")
    p.add_argument("--profile", action="store_true", help="after the timed repeats, run one more under "
                                                          "torch.profiler and add its 20 costliest operators")
    args = p.parse_args(argv)
    fast = fast_mode()
    defaults = dict(n_prompts=16 if fast else 1000, grid_points=3 if fast else 11,
                    batch_size=16 if fast else 500 if args.device != "cpu" else 64)
    for name, value in defaults.items():  # None = not given; a given 0 is an error below, never replaced
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("steps", "n_prompts", "grid_points", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give a positive number")
    if args.repeats < 2:
        p.error(f"--repeats {args.repeats}: give at least 2 (the first repeat pays one-off costs and is not the "
                "target's measurement)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    fast = fast_mode()
    setting = Setting(args.preset, args.steps, "qsched", calibration=Calibration(grid_points=args.grid_points))
    base = dict(n_prompts=args.n_prompts, seeds=(0,), batch_size=args.batch_size, device=args.device,
                **(FAST_METRICS if fast else {}))
    t0 = time.perf_counter()
    models = load_models(EvalConfig(**base))
    load_s = time.perf_counter() - t0
    print(f"models and FID reference loaded in {load_s:.1f} s", flush=True)

    def fresh_cell(i: int):
        with tempfile.TemporaryDirectory(prefix="qsched-cell-") as tmp:
            cfg = EvalConfig(**base, cache_dir=Path(tmp), search_dirs=())
            t0 = time.perf_counter()
            (cell,) = run_settings([setting], cfg, models, log=lambda *a, **k: None)
            wall = time.perf_counter() - t0
            source = str(cell.calibration.get("source", ""))
            if cell.from_cache or not source.startswith(tmp):
                raise RuntimeError(f"repeat {i + 1} reused a cell or search ({source!r}); the timing would be void")
        return cell, wall

    repeats = []
    for i in range(args.repeats):
        cell, wall = fresh_cell(i)
        search_s = float(cell.calibration["wall_s"])
        repeats.append(dict(repeat=i + 1, wall_s=wall, search_s=search_s, images_s=cell.gen_s, metrics_s=cell.eval_s,
                            other_s=wall - search_s - cell.gen_s - cell.eval_s, nfe=cell.calibration["nfe"],
                            coefficients=cell.coefficients, fid=cell.metrics["fid"][0]))
        r = repeats[-1]
        print(f"repeat {i + 1}: {wall:.2f} s (search {search_s:.2f} + images {r['images_s']:.2f} + metrics "
              f"{r['metrics_s']:.2f} + other {r['other_s']:.2f}), winner {cell.coefficients}", flush=True)
    median = statistics.median(r["wall_s"] for r in repeats[1:])
    profile = profile_one(fresh_cell, args.repeats) if args.profile else None
    out = dict(command="python scripts/time_cell.py " + shlex.join(sys.argv[1:] if argv is None else argv),
               machine=machine_description(), fast=fast, setting=setting.label, steps=args.steps,
               n_prompts=args.n_prompts, grid_points=args.grid_points, batch_size=args.batch_size,
               device=args.device, load_s=load_s, repeats=repeats, median_after_first_s=median, target_s=TARGET_S,
               date=time.strftime("%Y-%m-%d %H:%M"), profile=profile)
    write(out)
    return out


def profile_one(fresh_cell, i: int) -> str:
    """One more fresh cell under torch.profiler (not timed: the profiler slows it): its 20 costliest operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        fresh_cell(i)
        if cuda:
            torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=20)


def write(out: dict) -> None:
    d = results_dir()
    met = "met" if out["median_after_first_s"] <= out["target_s"] else "missed"
    lines = ["# One ablation cell, timed alone", "",
             f"`{out['command']}` on {out['machine']}, {out['date']}" + (" (FAST smoke size)" if out["fast"] else "")
             + ".", "",
             f"Cell: {out['setting']}, {out['steps']} steps, a {out['grid_points']}x{out['grid_points']} JAQ grid "
             f"search on 5 calibration prompts, then {out['n_prompts']} evaluation images (batches of "
             f"{out['batch_size']}) and every metric of a main-table row. Each repeat starts from an empty cache: its "
             "search and images are computed, never reused. Models and FID reference statistics were loaded once "
             f"before the repeats: {out['load_s']:.1f} s. 'other' = the cell's wall time minus search, images and "
             "metrics (quantizing the UNet, bookkeeping).", "",
             "| repeat | cell s | search s | NFE | images s | metrics s | other s | winner (c^x_0, c^eps_0) | FID |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in out["repeats"]:
        lines.append(f"| {r['repeat']} | {r['wall_s']:.2f} | {r['search_s']:.2f} | {r['nfe']} | {r['images_s']:.2f} | "
                     f"{r['metrics_s']:.2f} | {r['other_s']:.2f} | {tuple(r['coefficients'])} | {r['fid']:.2f} |")
    lines += ["", f"Target: one cell <= {out['target_s']:g} s (median of repeats 2..{len(out['repeats'])}, "
              f"{out['median_after_first_s']:.2f} s): **{met}**" + (" (only meaningful on the GPU the target names)"
                                                                     if out["device"] == "cpu" else "") + "."]
    if out.get("profile"):
        lines += ["", "## Where one more fresh cell spends its time (torch.profiler; this repeat is not timed above)",
                  "", "```", out["profile"].rstrip(), "```"]
    atomic_write_text(d / "cell_timing.md", "\n".join(lines) + "\n")
    atomic_write_text(d / "cell_timing.json", json.dumps(out, indent=1, default=float))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
