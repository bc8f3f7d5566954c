"""Every results table, timed: python scripts/tables.py [--device cuda] [--jobs N] [--stages a,b] [--deadline-min M]

`make tables` runs this. Each stage is one script of scripts/ (its own command line, machine and wall time go
into the results file it writes); this driver runs them one after another, stops starting new stages after
--deadline-min minutes (the running one is stopped at the deadline), and writes results/tables_timing.md: per
stage the command, wall time and outcome (done / failed / stopped at the deadline / not run), and the total.
Cells, searches and reference features are cached under .cache/, so a stopped run resumes where it stopped.

--jobs N runs up to N stages at once, longest first (each stage's output then goes to .cache/tables_logs/STAGE.log,
and each gets 1/N of the CPU threads). The stages share no results file; their caches are written atomically, and a
search, cell or FID reference that several stages need is computed by one of them while the others wait for it
(`utils.load_or_compute`). On a GPU the stages' processes share the device by time-slicing, so side by side they
overlap only their CPU work (model loading, PTQ calibration, bootstraps, reports) with each other's GPU work; on the
H200 the GPU then stayed 97-100% busy. The main table, the
longest stage, is then split: main2 / main4 / main8 compute its cells for one step count each (`qsched_eval.py
--cells-only`) side by side with the rest, and main, started once they have ended, writes the report from the cache.

Stages (default order; --stages picks and orders a subset):
  validity   instrument validity: can the judge and the FID see quantization damage?
  main       the main table: FP, naive, Q-Sched at W8A8 / W4A8 / W4A4, 2 / 4 / 8 steps, 5,000 images per row
  search     the coefficient-search sweep: grid vs coarse-to-fine vs gradient, share of the grid's gain, held-out
  ptq        PTQ baselines (SmoothQuant, GPTQ, QuaRot, PTQD) alone and under Q-Sched, 3 noise seeds
  sweep      the bit-width sweep (W3A4, all layers quantized, 1 step), 3 noise seeds
  ablations  calibration-recipe ablations at 4 steps, and at 2 steps (ablations2)
  quality    the student vs teacher quality table (eval_tinyworld)
  cpuspeed   the student's CPU speed (CPU only: skipped with --device other than cpu)
  dllm       the diffusion-LLM study report, rebuilt from the committed per-job results (no model runs)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


MAIN_SPLIT = (8, 4, 2)  # step counts of the main table, each one process's cells when stages run side by side


def stages(device: str, batch_size: int = 500) -> dict[str, list[str]]:
    runon = ["--device", device] + ([] if device == "cpu" else ["--batch-size", str(batch_size)])
    py = [sys.executable]
    return {
        "validity": py + ["scripts/instrument_validity.py", *runon],
        "main": py + ["scripts/qsched_eval.py", "--n-prompts", "5000", "--seeds", "0", "--steps", "2,4,8",
                      "--ptq-methods", "", "--no-sweep", *runon],
        **{f"main{n}": py + ["scripts/qsched_eval.py", "--n-prompts", "5000", "--seeds", "0", "--steps", str(n),
                             "--ptq-methods", "", "--no-sweep", "--cells-only", *runon] for n in MAIN_SPLIT},
        "search": py + ["scripts/qsched_tinyworld_sweep.py", "--device", device],
        "ptq": py + ["scripts/qsched_eval.py", "--n-prompts", "1000", "--seeds", "0,1,2", "--steps", "4",
                     "--presets", "w4a8,w8a8", "--ptq-presets", "w4a8,w8a8", "--no-sweep", "--name", "qsched_ptq",
                     *runon],
        "sweep": py + ["scripts/qsched_eval.py", "--n-prompts", "1000", "--seeds", "0,1,2", "--steps", "4",
                       "--presets", "w4a8", "--ptq-methods", "", "--name", "qsched_sweep", *runon],
        "ablations": py + ["scripts/qsched_ablations.py", *runon],
        "ablations2": py + ["scripts/qsched_ablations.py", "--steps", "2", "--n-prompts", "200", "--name",
                            "qsched_ablations_2step", *runon],
        "quality": py + ["scripts/eval_tinyworld.py", "--n-prompts", "500", "--no-speed", *runon],
        "cpuspeed": py + ["scripts/bench_tinyworld_cpu.py"],
        "dllm": py + ["scripts/dllm_study.py", "--report-only", "--out", "results/dllm_ptq.jsonl"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--stages", default="", help="comma-separated subset, in the order to run (default: all)")
    p.add_argument("--deadline-min", type=float, default=0.0, help="stop after this many minutes (0: no limit)")
    p.add_argument("--jobs", type=int, default=1, help="stages run at once (default 1: one after another)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="images per sampler call on a GPU (default 500; a larger batch launches fewer kernels, and "
                        "changes float rounding, hence a few fake-quantized codes: results/engine_batch_invariance.md)")
    p.add_argument("--out", default="results/tables_timing.md")
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: give a positive number of stages to run at once (1 = serial)")
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size {args.batch_size}: give a positive number of images per sampler call")
    table = stages(args.device, args.batch_size)
    split = [f"main{n}" for n in MAIN_SPLIT if f"main{n}" in table]
    order = [s for s in args.stages.split(",") if s] or [s for s in table if s not in split]
    unknown = [s for s in order if s not in table]
    if unknown:
        raise SystemExit(f"unknown stages {unknown}; choose from {', '.join(table)}")
    if args.device != "cpu" and "cpuspeed" in order:
        order.remove("cpuspeed")  # a CPU measurement; on a GPU machine it would time the host's CPU
    if args.jobs > 1 and "main" in order and not set(split) & set(order):  # side by side: split the longest stage
        order[order.index("main"):order.index("main")] = split
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    found = cache_state()
    t0 = time.perf_counter()
    rows = run_serial(order, table, env, args.deadline_min, t0) if args.jobs == 1 else \
        run_parallel(order, table, env, args.deadline_min, t0, args.jobs)
    failed = any(o.startswith("failed") for _, _, _, o in rows)
    total = time.perf_counter() - t0
    write_timing(Path(args.out), args, rows, total, found)
    return 1 if failed else 0


# longest first when stages run side by side (wall minutes of the cold H200 runs in results/tables_timing.md)
LONGEST_FIRST = ("main", "main8", "ptq", "search", "main4", "validity", "ablations", "sweep", "main2", "ablations2",
                 "quality", "cpuspeed", "dllm")
AFTER = {"main": tuple(f"main{n}" for n in MAIN_SPLIT)}  # a stage starts once these have ended (when they run)


def _left(deadline_min: float, t0: float) -> float | None:
    return deadline_min * 60 - (time.perf_counter() - t0) if deadline_min else None


def _outcome(rc: int | str, log: Path | None = None) -> str:
    """A stage's outcome from its exit code ("deadline": stopped there), naming its log when it has one."""
    if rc == "deadline":
        return "stopped at the deadline"
    return "done" if rc == 0 else f"failed (exit {rc}" + (f"; see {log})" if log else ")")


def run_serial(order, table, env, deadline_min, t0):
    rows = []
    for name in order:
        cmd, left = table[name], _left(deadline_min, t0)
        if left is not None and left <= 5:
            rows.append((name, cmd, 0.0, "not run (deadline)"))
            continue
        print(f"== {name}: {shlex.join(cmd)}", flush=True)
        s0 = time.perf_counter()
        try:
            outcome = _outcome(subprocess.run(cmd, check=False, cwd=ROOT, env=env, timeout=left).returncode)
        except subprocess.TimeoutExpired:
            outcome = _outcome("deadline")
        rows.append((name, cmd, time.perf_counter() - s0, outcome))
        print(f"== {name}: {outcome} after {rows[-1][2]:.0f} s", flush=True)
    return rows


def run_parallel(order, table, env, deadline_min, t0, jobs):
    """Up to `jobs` stages at once, longest first; rows come back in `order`."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    logs = ROOT / ".cache" / "tables_logs"
    logs.mkdir(parents=True, exist_ok=True)
    queue = sorted(order, key=lambda n: LONGEST_FIRST.index(n) if n in LONGEST_FIRST else len(LONGEST_FIRST))
    running, done = {}, {}
    while queue or running:
        left = _left(deadline_min, t0)
        ready = [n for n in queue if not any(d in queue or d in running for d in AFTER.get(n, ()))]
        while ready and len(running) < jobs and (left is None or left > 5):
            name = ready.pop(0)
            queue.remove(name)
            log = open(logs / f"{name}.log", "w")  # noqa: SIM115 (open while the stage runs; closed when it ends)
            print(f"== {name} started: {shlex.join(table[name])} (output: {log.name})", flush=True)
            proc = subprocess.Popen(table[name], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[name] = (proc, log, time.perf_counter())
        if left is not None and left <= 5:
            for name in queue:
                done[name] = (0.0, "not run (deadline)")
            queue = []
        for name, (proc, log, s0) in list(running.items()):
            rc = proc.poll()
            if rc is None and left is not None and left <= 0:
                proc.kill()
                proc.wait()
                rc = "deadline"
            if rc is None:
                continue
            log.close()
            outcome = _outcome(rc, Path(log.name).relative_to(ROOT))
            done[name] = (time.perf_counter() - s0, outcome)
            del running[name]
            print(f"== {name}: {outcome} after {done[name][0]:.0f} s", flush=True)
        time.sleep(0.5)
    return [(name, table[name], *done[name]) for name in order]


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return f"{where}, torch {torch.__version__}, python {platform.python_version()}"


def cache_state() -> dict[str, int]:
    """What a run can reuse, counted before it starts: cached cells, searches, FID reference features and image sets
    under .cache/, and the search sweep's saved searches (results/qsched_search/, committed with the results)."""
    def count(folder: str, pattern: str) -> int:
        return sum(1 for _ in (ROOT / folder).glob(pattern)) if (ROOT / folder).is_dir() else 0

    return {"cached cells": count(".cache/qsched_eval/cells", "*.json"),
            "cached searches": count(".cache/qsched_eval/search", "*.json"),
            "saved searches in results/qsched_search": count("results/qsched_search", "tinyworld-*.json"),
            "FID reference files": count(".cache/fid", "*"),
            "cached image sets of the quality table": count(".cache/eval_tinyworld", "*")}


def write_timing(path: Path, args, rows, total: float, found: dict[str, int] | None = None) -> None:
    found = found or {}
    lines = ["# Result tables: what ran, and how long it took\n",
             f"`python scripts/tables.py {shlex.join(sys.argv[1:])}` on {_machine(args.device)}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}; total {total / 60:.1f} min"
             + (f" (deadline {args.deadline_min:g} min)" if args.deadline_min else "")
             + (f"; {args.jobs} stages at a time" if args.jobs > 1 else "") + ". Reusable at the start: "
             + (", ".join(f"{n} {k}" for k, n in found.items()) or "not counted")
             + " (see each results file for what it reused).\n",
             "| stage | wall | outcome | command |", "|---|---|---|---|"]
    for name, cmd, sec, outcome in rows:
        lines.append(f"| {name} | {sec / 60:.1f} min | {outcome} | `{shlex.join(cmd[1:])}` |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    stages = [{"stage": n, "command": c[1:], "wall_s": s, "outcome": o} for n, c, s, o in rows]
    (path.with_suffix(".json")).write_text(json.dumps(
        {"total_s": total, "device": args.device, "jobs": args.jobs, "found": found, "stages": stages}, indent=1))
    print(path.read_text(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
