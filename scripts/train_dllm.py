"""Train the tiny LLaDA-style model: python scripts/train_dllm.py --stages base,instruct --device cuda --out models/dllm

Each stage is seeded, time-boxed (--minutes, per stage with --instruct-minutes) and resumable (a checkpoint in
--out is picked up by a rerun). The instruct stage starts from <out>/base.safetensors. The model card
(models/dllm/README.md) records the command used for the shipped weights.
"""
import argparse
import json
from dataclasses import asdict, fields, replace
from pathlib import Path

from qsched_core.dllm.train import STAGES, TrainConfig, train_stage


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--stages", default="base,instruct", help=f"comma-separated, from {STAGES}")
    p.add_argument("--out", default="models/dllm")
    p.add_argument("--instruct-minutes", type=float, default=None, help="budget of the instruct stage")
    p.add_argument("--instruct-lr", type=float, default=None, help="learning rate of the instruct stage")
    for f in fields(TrainConfig):
        if f.name != "stage":
            kind = (lambda s: bool(int(s))) if isinstance(f.default, bool) else type(f.default)
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None)
    args = vars(p.parse_args())
    stages, out = args.pop("stages").split(","), args.pop("out")
    if any(s not in STAGES for s in stages):
        p.error(f"--stages {','.join(stages)!r} must be names from {STAGES}")
    extra = {"minutes": args.pop("instruct_minutes"), "lr": args.pop("instruct_lr")}
    for stage in stages:
        cfg = TrainConfig(stage=stage, **{k: v for k, v in args.items() if v is not None})
        if stage == "instruct":
            cfg = replace(cfg, **{k: v for k, v in extra.items() if v is not None})
        print(json.dumps(asdict(cfg)), flush=True)
        init = str(Path(out) / "base.safetensors") if stage == "instruct" else None
        log = train_stage(cfg, out, init=init)
        print(f"[{stage}] done: {log['steps']} steps, {log['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
