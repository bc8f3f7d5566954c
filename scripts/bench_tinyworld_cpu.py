"""CPU speed of the shipped 4-step tiny-world student: python scripts/bench_tinyworld_cpu.py [--threads 2] [--fast]

Loads the LCM student on the CPU (float32), sets the torch thread count and times `quality.generate` at 4 steps on
one batch of `eval_prompts(batch, seed=7)` with `quality.student_images_per_second`: one untimed warm-up batch,
then `repeats` timed batches. Writes results/tinyworld_cpu_speed.{md,json} (results/fast/ with --fast, one
repeat). scripts/eval_tinyworld.py measures the same number itself only when it runs with --device cpu.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from qsched_core.metrics import machine_description
from qsched_core.tinyworld.loaders import GUIDANCE_SCALE, load_pipeline
from qsched_core.tinyworld.quality import student_images_per_second, weights_fingerprint
from qsched_core.utils import RESULTS_DIR

STEPS = 4


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--batch-size", type=int, default=32, help="images per timed batch (default 32)")
    p.add_argument("--repeats", type=int, default=None, help="timed batches (default 3, 1 with --fast)")
    p.add_argument("--seed", type=int, default=0, help="prompts eval_prompts(batch, seed + 7) and noise seeds")
    p.add_argument("--fast", action="store_true", help="one timed batch; writes under results/fast/")
    args = p.parse_args()
    args.repeats = args.repeats or (1 if args.fast else 3)
    if args.threads < 1 or args.batch_size < 1 or args.repeats < 1:
        p.error(f"--threads {args.threads}, --batch-size {args.batch_size} and --repeats {args.repeats} "
                "must all be >= 1")
    return args


def markdown(res: dict) -> str:
    return "\n".join([
        "# Tiny-world student: CPU speed", "",
        (f"Written by `scripts/bench_tinyworld_cpu.py` on {res['date']} on {res['machine']}. "
         "Every number below comes from that run."), "",
        f"Command: `{res['command']}`", "",
        "| setting | value |", "|---|---|",
        f"| model | LCM student (`models/tinyworld/lcm`, UNet weights {res['unet_fingerprint']}), CPU, float32 |",
        f"| sampling | `quality.generate`, {res['steps']} steps, guidance scale {res['guidance_scale']:g} |",
        f"| torch threads | {res['threads']} |",
        f"| batch size | {res['batch_size']} |",
        f"| timed repeats | {res['repeats']} (after one untimed warm-up batch) |",
        f"| images/s | {res['images_per_s']:.2f} |",
        f"| seconds per image | {res['s_per_image']:.4f} |",
        "", "Raw values: `tinyworld_cpu_speed.json`.",
    ]) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    pipe = load_pipeline(device="cpu")
    ips = student_images_per_second(pipe, args.batch_size, GUIDANCE_SCALE, steps=STEPS, repeats=args.repeats,
                                    seed=args.seed)
    res = {"machine": machine_description(), "date": datetime.date.today().isoformat(),
           "command": shlex.join(["python", *sys.argv]), "device": "cpu", "threads": torch.get_num_threads(),
           "batch_size": args.batch_size, "repeats": args.repeats, "steps": STEPS, "guidance_scale": GUIDANCE_SCALE,
           "seed": args.seed, "unet_fingerprint": weights_fingerprint(pipe.unet), "images_per_s": round(ips, 4),
           "s_per_image": round(1 / ips, 6), "wall_time_s": round(time.perf_counter() - t_start, 1)}
    out = RESULTS_DIR / "fast" if args.fast else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    md = Path(out) / "tinyworld_cpu_speed.md"
    md.write_text(markdown(res))
    (out / "tinyworld_cpu_speed.json").write_text(json.dumps(res, indent=1))
    print(f"{ips:.2f} images/s ({1 / ips:.4f} s/image), {args.threads} threads, batch {args.batch_size}; wrote {md}")


if __name__ == "__main__":
    main()
