"""Activation outliers of the tiny dLLM: where they sit, how large they are, what each W-A method does to them.

The seed ([P] §3.3) plots |x| over token x channel for chosen linears of LLaDA-8B on one clean WikiText-2
batch and finds normal outliers (a few channels large for every token) at the q / attn_out / gate inputs and
*massive* outliers (huge values on some tokens) at the input of the down projection (ff_out). Here, for every
block and each of its four distinct linear inputs (q/k/v share attn_norm's output, gate/up share ff_norm's):

  max|x|, channel max/median (normal outliers: >> 1), token max/median (massive outliers: >> 1), kurtosis
  (3 for a Gaussian), and where the largest entry sits (token, channel),

from `qsched_core.quant.stats` on clean calibration sequences (no [MASK]). `method_effect` then shows what the
activation quantizer of one linear sees after each W4A4 method's transform (smoothing, Hadamard, DuQuant's
R1 P R2; `quantizer_inputs`) and the per-token int4 error on it. Nothing is planted: the numbers are whatever
training produced.
"""
from __future__ import annotations

import copy

import torch

from ..quant import (
    apply_ptq,
    outlier_summary,
    quant_error,
    quantizer_inputs,
    record_act_stats,
)
from .corpus import calibration_corpus
from .model import block_linear_filter

INPUTS = {"q_proj": "attn_norm -> q/k/v", "attn_out": "attention -> attn_out", "ff_proj": "ff_norm -> gate/up",
          "ff_out": "SwiGLU -> ff_out (down)"}


def _one_per_input(module, name: str) -> bool:
    return block_linear_filter(module, name) and name.rsplit(".", 1)[-1] in INPUTS


def activation_stats(model, n_seqs: int = 32, seed: int = 0) -> list[dict]:
    """One row per (layer, linear input): the outlier statistics on n_seqs clean calibration sequences."""
    x = calibration_corpus("wiki", n_seqs, model.cfg.max_seq_len, seed)
    with torch.no_grad(), record_act_stats(model, _one_per_input) as stats:
        model(x)
    rows = []
    for r in outlier_summary(stats):
        name = r["layer"]
        layer, lin = int(name.split(".blocks.")[1].split(".")[0]), name.rsplit(".", 1)[-1]
        rows.append(dict(layer=layer, input=INPUTS[lin], linear=name, max_abs=r["top_absmax"][0],
                         channel_ratio=r["channel_max_over_median"], token_ratio=r["token_max_over_median"],
                         kurtosis=r["kurtosis"], top_channels=r["top_channels"]))
    return rows


def input_map(model, linear: str, n_seqs: int = 4, seed: int = 0) -> torch.Tensor:
    """|x| (tokens, channels) at a linear's input on n_seqs clean sequences, for a heatmap."""
    x = calibration_corpus("wiki", n_seqs, model.cfg.max_seq_len, seed)
    return quantizer_inputs(model, [linear], x)[linear].abs()


def method_effect(model, linear: str, methods=("smoothquant", "quarot", "duquant"), bits: int = 4,
                  n_calib: int = 16, seed: int = 0, duquant_steps: int = 256) -> dict:
    """{method: (|x| seen by `linear`'s activation quantizer (T, K), stats)} after each method's transforms.

    Weights are RTN-quantized (QuaRot's GPTQ would not change the activations), calibration is n_calib clean
    sequences; the study's own configs come from `study.quant_config`.
    """
    from .study import method_opts, quant_config
    calib = list(calibration_corpus("wiki", n_calib, model.cfg.max_seq_len, seed + 100).split(8))  # batches of 8
    probe = calibration_corpus("wiki", 4, model.cfg.max_seq_len, seed)
    out = {}
    for method in ("fp",) + tuple(methods):
        m = copy.deepcopy(model).float().eval()
        if method != "fp":
            extra = {"quarot": {"weights": "rtn"}, "duquant": {"steps": duquant_steps}}.get(method, {})
            opts = method_opts(method, seed) | extra
            m, _ = apply_ptq(m, method, quant_config(method, f"w{bits}a{bits}"), calib, filter_fn=block_linear_filter,
                             **opts)
        x = quantizer_inputs(m, [linear], probe)[linear]
        a = x.abs()
        out[method] = (a, dict(max_abs=round(float(a.max()), 3),
                               channel_ratio=round(float(a.amax(0).max() / a.amax(0).median()), 2),
                               token_ratio=round(float(a.amax(1).max() / a.amax(1).median()), 2),
                               int4_token_err=round(quant_error(x, bits, -1, False), 4)))
    return out


def plot_stats(rows_by_model: dict, path=None):
    """Per layer: max|x| and kurtosis of each linear input, one column per model."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(rows_by_model), figsize=(5.5 * len(rows_by_model), 6), squeeze=False)
    for col, (model, rows) in enumerate(rows_by_model.items()):
        for inp in INPUTS.values():
            sel = sorted((r for r in rows if r["input"] == inp), key=lambda r: r["layer"])
            axes[0, col].plot([r["layer"] for r in sel], [r["max_abs"] for r in sel], "o-", label=inp)
            axes[1, col].plot([r["layer"] for r in sel], [r["kurtosis"] for r in sel], "o-", label=inp)
        axes[0, col].set_title(f"{model}: max |x| per linear input")
        axes[1, col].set_title(f"{model}: kurtosis (Gaussian = 3)")
        axes[1, col].set_xlabel("block")
        axes[1, col].set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def plot_effect(effect: dict, title: str = "", path=None):
    """Heatmaps of |x| (tokens x channels) seen by the quantizer, FP and after each method."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(effect), figsize=(3.6 * len(effect), 3.2))
    for ax, (method, (a, st)) in zip(axes, effect.items()):
        im = ax.imshow(a[:128].numpy(), aspect="auto", cmap="viridis")
        ax.set_title(f"{method}\nmax {st['max_abs']}, int4 err {st['int4_token_err']}", fontsize=8)
        ax.set_xlabel("channel")
        fig.colorbar(im, ax=ax)
    axes[0].set_ylabel("token")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=80)
    return fig


def write_outlier_results(model_dir, out_stem, linear: str | None = None, n_seqs: int = 32) -> dict:
    """Statistics for Base and Instruct, the method effect at the largest input of Base, as <stem>.json / .png."""
    import json
    from pathlib import Path

    from .model import load_safetensors
    rows = {m: activation_stats(load_safetensors(Path(model_dir) / f"{m}.safetensors").eval(), n_seqs)
            for m in ("base", "instruct")}
    worst = max(rows["base"], key=lambda r: r["max_abs"])
    linear = linear or worst["linear"]
    effect = method_effect(load_safetensors(Path(model_dir) / "base.safetensors").eval(), linear)
    stem = Path(out_stem)
    plot_stats(rows, stem.with_suffix(".png"))
    plot_effect(effect, f"base, input of {linear} (4 clean sequences, W4A4 transforms)",
                stem.parent / (stem.name + "_methods.png"))
    summary = dict(stats=rows, largest=worst, effect_linear=linear, effect={k: v[1] for k, v in effect.items()})
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    return summary
