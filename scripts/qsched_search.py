"""Search the Q-Sched coefficients of one quantized pipeline by maximising JAQ on calibration prompts.

    python scripts/qsched_search.py --pipeline tinyworld-lcm --preset w4a8 --steps 4 --method grid \
        --n-prompts 5 --grid-min 0.8 --grid-max 1.2 --grid-points 11 --k 2 --judge tinyworld-clip --seed 42

Quantizes the denoiser's nn.Linear layers with the preset (convolutions, text encoder and VAE stay FP), runs
`search.run_search` on `calib_prompts(n)` with common random numbers and the JAQ scorer, writes the result JSON
(every evaluated point, the winner, scorer name, preset, steps, wall time, network evaluations, machine) and
prints its summary. Default output: results/qsched_search/<pipeline>_<preset>_<steps>step_<method>.json
(results/fast/... when QSCHED_FAST=1).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, fields
from pathlib import Path

from qsched_core.calibrate import CalibrationConfig, calibrate
from qsched_core.metrics import machine_description
from qsched_core.utils import results_dir


def parse_args(argv=None) -> tuple[CalibrationConfig, Path | None]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(CalibrationConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "progress":
            p.add_argument(flag, action="store_true", help="show tqdm bars")
        elif f.name == "guidance_scale":
            p.add_argument(flag, type=float, default=None, help="default: the pipeline's, from qsched_core.hub")
        else:
            p.add_argument(flag, type=type(f.default), default=f.default)
    p.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    return CalibrationConfig(**args), out


def default_out(cfg: CalibrationConfig) -> Path:
    name = f"{cfg.pipeline.replace('/', '--')}_{cfg.preset}_{cfg.steps}step_{cfg.method}.json"
    return results_dir("qsched_search") / name


def main(argv=None) -> None:
    cfg, out = parse_args(argv)
    print(json.dumps(asdict(cfg)), flush=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    result = calibrate(cfg)
    result.metadata.update(machine=machine_description(), started=started)
    out = out or default_out(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    print(result.summary())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
