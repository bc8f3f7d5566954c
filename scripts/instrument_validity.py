"""Can the instruments see quantization damage? python scripts/instrument_validity.py [--device cuda] [--fast]

Generates the FP / W8A8 / W4A8 / W4A4 / W3A4 (and all-layers W4A8) students at 1-8 steps on the same held-out
prompts and noise, scores them with three instruments (the shipped judge + evaluator; the first judge + evaluator
as every earlier table used them, CLIP-IQA at logit scale 100; the first judge at its own learned scale) and
writes results/instrument_validity.{md,json,png} (results/fast/ with --fast). See qsched_core/evaluate/validity.py.
"""
from __future__ import annotations

import argparse
import shlex
import sys

import torch

from qsched_core.evaluate.validity import VARIANTS, Instrument, ValidityConfig, Variant, run_validity
from qsched_core.evaluate.validity_report import write_validity
from qsched_core.hub import load_judge
from qsched_core.metrics import machine_description
from qsched_core.tinyworld.loaders import load_evaluator, load_pipeline
from qsched_core.utils import RESULTS_DIR

FAST_VARIANTS = (Variant("fp", 4), Variant("fp", 2), Variant("w4a8", 4), Variant("w4a4", 4), Variant("w3a4", 4),
                 Variant("w4a8-qmax", 4))


def instruments(device: str) -> list[Instrument]:
    new_judge, old_judge = load_judge("tinyworld-clip", device=device), load_judge("tinyworld-clip-v1", device=device)
    new_ev, old_ev = load_evaluator(device), load_evaluator(device, folder="legacy/evaluator_v1")
    return [
        Instrument("v2: graded judge + normalised evaluator", new_judge, None, new_ev,
                   "The shipped instruments: judge trained on graded degradations (CLIP-IQA at its learned logit "
                   "scale), evaluator with a BatchNorm feature layer and a damage head."),
        Instrument("v1: first judge (CLIP-IQA scale 100) + first evaluator", old_judge, 100.0, old_ev,
                   "The instruments behind every table before this one: binary-quality judge read at a fixed logit "
                   "scale of 100, evaluator features from a post-ReLU classifier layer."),
        Instrument("v1 judge at its learned scale + first evaluator", old_judge, None, old_ev,
                   "The first judge with only the logit-scale fix: does reading it at its own scale suffice?"),
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-prompts", type=int, default=500)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--fast", action="store_true", help="40 prompts, 5 variants, into results/fast/")
    args = p.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    cfg = ValidityConfig(n_prompts=40 if args.fast else args.n_prompts, seeds=seeds, device=args.device,
                         batch_size=args.batch_size, variants=FAST_VARIANTS if args.fast else VARIANTS,
                         n_boot=200 if args.fast else 1000, n_draws=400 if args.fast else 2000,
                         n_ref=500 if args.fast else 5000, judge_curve_n=32 if args.fast else 512,
                         table_n=200 if args.fast else 5000)
    torch.manual_seed(0)
    pipe = load_pipeline(device=args.device)
    result = run_validity(pipe, instruments(args.device), cfg, vae=pipe.vae)
    out = RESULTS_DIR / "fast" if args.fast else RESULTS_DIR
    command = "python scripts/instrument_validity.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(write_validity(result, out, command.strip(), machine_description()))


if __name__ == "__main__":
    main()
