"""How much does GPTQ's result move when its Hessian moves by float rounding? python scripts/gptq_sensitivity.py

GPTQ quantizes one column at a time and spreads each column's rounding error over the columns after it, so a code
that flips early changes every later update. This script quantizes one synthetic 256 x 256 layer (weights
N(0, 0.02), 4,096 calibration rows with channel scales 0.2..3) at W4A8 with H and with H * (1 + eps * noise), and
counts how many codes land elsewhere and how the layer's output error changes. float32 resolves about 1.2e-7
relative, so eps around 1e-7 is what collecting H on another device, or in another order, can do; in the repo's
sequential GPTQ every later layer is calibrated on the outputs of the layers quantized before it, so flips
propagate. Writes results/gptq_sensitivity.md (2-core CPU: a few seconds).
"""
from __future__ import annotations

import argparse
import shlex
import sys

import torch

from qsched_core.metrics import machine_description
from qsched_core.quant import QuantConfig
from qsched_core.quant.gptq import gptq_weight
from qsched_core.utils import atomic_write_text, results_dir


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="w4a8")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = QuantConfig.from_name(args.preset)
    gen = torch.Generator().manual_seed(args.seed)
    n = k = 256
    w = torch.randn(n, k, generator=gen) * 0.02
    x = torch.randn(4096, k, generator=gen) * torch.linspace(0.2, 3.0, k)
    h = 2 * x.T.double() @ x.double() / len(x)

    def output_error(q: torch.Tensor) -> float:
        return float(((q - w) @ x.T).pow(2).mean())

    ref = gptq_weight(w, h, cfg)
    lines = ["# GPTQ's sensitivity to rounding in its Hessian", "",
             f"`python scripts/{shlex.join(['gptq_sensitivity.py', *sys.argv[1:]])}` on {machine_description()}; "
             f"one synthetic {n} x {k} layer, {cfg.name}, seed {args.seed} (see the script's docstring).", "",
             f"Output error of the unperturbed GPTQ result: {output_error(ref.weight):.4e} (mean squared, per output).",
             "", "| relative perturbation of H | codes that differ | output error |", "|---|---|---|"]
    for eps in (1e-12, 1e-9, 1e-7, 1e-6, 1e-5, 1e-4):
        noise = torch.randn(h.shape, generator=gen, dtype=torch.float64)
        hp = h * (1 + eps * (noise + noise.T) / 2)  # stays symmetric
        q = gptq_weight(w, hp, cfg).weight
        lines.append(f"| {eps:g} | {float((q != ref.weight).double().mean()):.2%} | {output_error(q):.4e} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(results_dir() / "gptq_sensitivity.md", text)
    print(text)
    return text


if __name__ == "__main__":
    main()
