"""Train the tiny world, stage by stage: python scripts/train_tinyworld.py --stages vae,evaluator,clip --device cuda

Each stage is seeded, time-boxed (--minutes), resumable (--resume) and exports fp16 weights to models/tinyworld/.
Order matters: teacher needs vae; lcm needs vae + teacher. The model cards (models/tinyworld/*/README.md) record
the exact commands used for the shipped weights.
"""
import argparse
import json
from dataclasses import asdict, fields

from qsched_core.tinyworld.distill import train_lcm, train_teacher
from qsched_core.tinyworld.train import STAGES, TrainConfig, train_evaluator, train_vae
from qsched_core.tinyworld.train_clip import train_clip

RUN = {"vae": train_vae, "evaluator": train_evaluator, "clip": train_clip, "teacher": train_teacher, "lcm": train_lcm}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--stages", required=True, help=f"comma-separated, from {STAGES}")
    for f in fields(TrainConfig):
        if f.name != "stage":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default) if f.type != "bool" else int,
                           default=None)
    p.add_argument("--set", action="append", default=[], help="per-stage override, e.g. teacher.minutes=7")
    args = vars(p.parse_args())
    args_set = list(args["set"])
    stages = args.pop("stages").split(",")
    if any(st not in STAGES for st in stages):  # before the first stage trains, not after it
        p.error(f"--stages {','.join(stages)!r} must be comma-separated names from {STAGES}")
    overrides = [s.split("=", 1) for s in args.pop("set")]
    known = {f.name: type(f.default) for f in fields(TrainConfig)}
    for item, pair in zip(args_set, overrides):  # check every --set before the first stage starts training
        key = pair[0].split(".")
        if len(pair) != 2 or len(key) != 2 or key[0] not in STAGES or key[1] not in known:
            p.error(f"--set {item!r} must be <stage>.<field>=<value> with a stage of {STAGES} and a field of "
                    f"{sorted(known)}, e.g. --set teacher.minutes=7")
        try:
            float(pair[1]) if known[key[1]] in (int, float, bool) else None
        except ValueError:
            p.error(f"--set {item!r}: {key[1]} needs a number, got {pair[1]!r}")
    for stage in stages:
        kw = {k: v for k, v in args.items() if v is not None}
        for key, val in overrides:
            st, name = key.split(".")
            if st == stage:
                ftype = {f.name: type(f.default) for f in fields(TrainConfig)}[name]
                kw[name] = bool(int(val)) if ftype is bool else ftype(float(val)) if ftype in (int, float) else ftype(val)
        for flag in ("resume", "warm_start"):
            if flag in kw:
                kw[flag] = bool(int(kw[flag]))
        cfg = TrainConfig(stage=stage, **kw)
        print(json.dumps(asdict(cfg)), flush=True)
        RUN[stage](cfg)


if __name__ == "__main__":
    main()
