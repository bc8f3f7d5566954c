"""Where a grid ran: the study's log, the machine it records, and the command line that reproduces each run.

`scripts/dllm_study.py` prints one JSON line with its `StudyConfig` first, then `{"machine": machine_info(...)}`, one
`[  t s] key {acc} ...` line per finished job and `{"wall_s": ...}` at the end; keep it as `<out stem>.log` next to
the JSONL (`... | tee results/dllm_ptq.log`). Several logs may feed one JSONL, since a run resumes the JSONL it is
given: `provenance` orders them by when their jobs entered it.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import fields
from pathlib import Path

import torch

from .study import StudyConfig

# results/dllm_ptq*.log predate the machine line; both runs used this machine
LOGGED_MACHINE = "one NVIDIA H200 GPU, torch 2.11; PTQ in CPU worker processes (one torch thread each)"


def machine_info(device: str) -> dict:
    """Where the grid runs, for the log (the report prints it)."""
    info = dict(torch=torch.__version__, cpus=os.cpu_count(), cpu=platform.processor() or platform.machine())
    if device.startswith("cuda") and torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), gpus=torch.cuda.device_count())
    return info


def command(cfg: dict, jsonl: Path) -> str:
    """The dllm_study.py command line that gives this StudyConfig (paths as in this repo)."""
    args = []
    for f in fields(StudyConfig):
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        v = cfg.get(f.name, default)
        if f.name in ("model_dir", "out") or v == default:
            continue
        flag = "--" + f.name.replace("_", "-")
        args.append(flag if v is True else f"{flag} {','.join(map(str, v)) if isinstance(v, list) else v}")
    out = jsonl.resolve().relative_to(Path.cwd()) if jsonl.resolve().is_relative_to(Path.cwd()) else jsonl
    return " ".join(["PYTHONPATH=. python scripts/dllm_study.py --model-dir models/dllm", *args, f"--out {out}"])


def _machine(m: dict) -> str:
    gpu = f"{m['gpus']} x {m['gpu']}" if m.get("gpu") else "no GPU"
    return f"{gpu}, torch {m['torch']}, {m['cpus']} CPUs; PTQ in CPU worker processes"


def _log(path: Path) -> dict:
    """A study log: its StudyConfig (first line), other JSON lines (machine, wall_s) and the finished jobs' keys."""
    lines = path.read_text().splitlines()
    jobs = [ln for ln in lines if ln.startswith("[")]
    return dict(name=path.name, cfg=json.loads(lines[0]), jobs=[ln.split("] ")[1].split(" ")[0] for ln in jobs],
                last_s=int(jobs[-1][1:].split("s]")[0]) if jobs else 0,
                meta={k: v for ln in lines[1:] if ln.startswith("{") for k, v in json.loads(ln).items()})


def provenance(jsonl: Path, rows: list[dict]) -> list[str]:
    """One bullet per log next to the JSONL, in the order their jobs entered it: command, machine, jobs, time."""
    order = {r["key"]: i for i, r in enumerate(rows)}
    logs = [_log(p) for p in jsonl.parent.glob(jsonl.stem + "*.log")]
    out = []
    for lg in sorted(logs, key=lambda lg: min((order.get(k, len(order)) for k in lg["jobs"]), default=len(order))):
        cfg, meta = lg["cfg"], lg["meta"]
        machine = _machine(meta["machine"]) if "machine" in meta else LOGGED_MACHINE
        wall = (f"{meta['wall_s']:.0f} s for the whole command" if "wall_s" in meta else
                f"last job logged {lg['last_s']} s after the grid started")
        where = "the GPU" if cfg["device"].startswith("cuda") else cfg["device"]
        how = (f"each worker also evaluates its model on {where}" if cfg.get("eval_in_workers") else
               f"the main process evaluates the models one at a time on {where}")
        out.append(f"- `{lg['name']}`: {len(lg['jobs'])} jobs, {cfg['workers']} PTQ worker processes ({how}); {wall}; "
                   f"{machine}.\n  `{command(cfg, jsonl)}`")
    return out
