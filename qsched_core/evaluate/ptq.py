"""PTQ baselines for the main table: SmoothQuant, GPTQ and QuaRot on the student's UNet, and a PTQD-style
noise correction on top of plain RTN.

The methods themselves live in `qsched_core.quant` (one file each); this module only feeds them the student's
own calibration data: every UNet call (latents, timestep, text embeddings, guidance embedding) of the FP sampler
on `PTQ_CALIB_PROMPTS` calibration prompts at the row's step count. The prompts come from `world.calib_prompts`,
disjoint from the evaluation prompts, like Q-Sched's five.

PTQD (He et al., 2023; spec qsched.md §3) models the quantized noise prediction as a correlated part plus a
bias: eps_q - eps = k_t * eps + b_t, fitted per timestep t by least squares on the calibration calls (k_t one
number, b_t one value per latent channel), and undoes it at inference: eps <- (eps_q - b_t) / (1 + k_t). The
variance part of PTQD (shrinking the sampler's injected noise by the uncorrelated error) is not applied: the LCM
sampler re-noises with a fixed schedule, and PTQD's rule is stated for DDIM-type samplers with eta > 0.
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn

from ..calibrate import rebuild_pipeline
from ..quant import QuantConfig, apply_ptq, model_size_report, quantize_, record_calls
from ..quant.methods import first_tensor
from .settings import PTQ_METHODS

PTQ_CALIB_PROMPTS = 32
PTQ_CALIB_SEED = 1          # world.calib_prompts(n, seed): another draw than Q-Sched's (seed 0)


def check_ptq(method: str) -> str:
    if method not in PTQ_METHODS:
        raise ValueError(f"ptq={method!r} is not a baseline of the main table; choose one of {', '.join(PTQ_METHODS)}")
    return method


def calibration_calls(pipe, steps: int, guidance: float, n_prompts: int = PTQ_CALIB_PROMPTS,
                      seed: int = PTQ_CALIB_SEED) -> list:
    """Every UNet call of the FP student sampling `n_prompts` calibration captions in `steps` steps."""
    from ..sampling import sample_lcm
    from ..tinyworld.world import calib_prompts

    texts = [s.caption for s in calib_prompts(n_prompts, seed=seed)]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return record_calls(pipe.unet, lambda: sample_lcm(pipe, texts, num_steps=steps, guidance_scale=guidance,
                                                          generator=gen))


def heldout_calls(pipe, steps: int, guidance: float, n_prompts: int = 8, seed: int = PTQ_CALIB_SEED) -> list:
    """UNet calls on `n_prompts` calibration-split captions that `calibration_calls` does not use, with other
    noise: the inputs the PTQ report measures its errors on (never the rows a method was calibrated on)."""
    from ..sampling import sample_lcm
    from ..tinyworld.world import calib_prompts

    used = {s.caption for s in calib_prompts(PTQ_CALIB_PROMPTS, seed=seed)}
    texts = [s.caption for s in calib_prompts(PTQ_CALIB_PROMPTS + 4 * n_prompts, seed=seed + 1000)
             if s.caption not in used][:n_prompts]
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        return record_calls(pipe.unet, lambda: sample_lcm(pipe, texts, num_steps=steps, guidance_scale=guidance,
                                                          generator=gen))


def _timestep(args: tuple, kwargs: dict) -> int:
    t = args[1] if len(args) > 1 else kwargs["timestep"]
    return int(round(float(t.flatten()[0] if isinstance(t, torch.Tensor) else t)))


def fit_ptqd(fp_unet: nn.Module, q_unet: nn.Module, calls) -> dict[int, tuple[float, torch.Tensor]]:
    """Per timestep: (k_t, b_t of shape (C,)) from eps_q - eps = k_t * eps + b_t[c], least squares over the
    calibration calls (the same inputs fed to both networks)."""
    by_t: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    with torch.no_grad():
        for call in calls:
            eps = first_tensor(fp_unet(*call.args, **call.kwargs)).float()
            eps_q = first_tensor(q_unet(*call.args, **call.kwargs)).float()
            by_t.setdefault(_timestep(call.args, call.kwargs), []).append((eps, eps_q - eps))
    fit = {}
    for t, pairs in by_t.items():
        eps = torch.cat([p[0] for p in pairs]).transpose(0, 1).flatten(1)  # (C, N * h * w)
        err = torch.cat([p[1] for p in pairs]).transpose(0, 1).flatten(1)
        e_c, r_c = eps - eps.mean(1, keepdim=True), err - err.mean(1, keepdim=True)
        k = float((e_c * r_c).sum() / (e_c * e_c).sum().clamp(min=1e-12))
        fit[t] = (k, err.mean(1) - k * eps.mean(1))
    return fit


def add_ptqd_correction(unet: nn.Module, fit: dict[int, tuple[float, torch.Tensor]]):
    """Register the correction eps <- (eps_q - b_t) / (1 + k_t) as a forward hook of `unet`; returns the handle."""
    def hook(module, args, kwargs, output):
        t = _timestep(args, kwargs)
        if t not in fit:
            raise ValueError(f"PTQD was fitted at timesteps {sorted(fit)} but the sampler asked for t={t}: fit it "
                             "with the same number of steps as the sampler (calibration_calls(pipe, steps, ...))")
        k, b = fit[t]
        eps = first_tensor(output)
        fixed = (eps - b.to(eps).view(1, -1, 1, 1)) / (1 + k)
        if isinstance(output, tuple):
            return (fixed, *output[1:])
        output.sample = fixed
        return output
    return unet.register_forward_hook(hook, with_kwargs=True)


def ptq_pipeline(pipe, preset: str, method: str, steps: int, guidance: float) -> tuple[object, dict]:
    """`pipe` with a copy of its UNet quantized by `method` at `preset`, calibrated at `steps` steps; plus a record
    (packed size, calibration prompts and seconds, the method's errors on held-out calls next to RTN's and on the
    calibration calls, the number of calibration tokens, PTQD's fitted k_t)."""
    check_ptq(method)
    cfg = QuantConfig.from_name(preset)
    t0 = time.perf_counter()
    calls = calibration_calls(pipe, steps, guidance)
    unet = copy.deepcopy(pipe.unet).eval()
    info: dict = {"ptq": method, "ptq_calib_prompts": PTQ_CALIB_PROMPTS, "ptq_calib_calls": len(calls)}
    if method in ("rtn", "ptqd"):
        quantize_(unet, cfg)
        if method == "ptqd":
            fit = fit_ptqd(pipe.unet, unet, calls)
            add_ptqd_correction(unet, fit)
            info["ptqd_k"] = {t: round(k, 5) for t, (k, _) in sorted(fit.items())}
    else:
        unet, report = apply_ptq(unet, method, cfg, calls, eval_batches=heldout_calls(pipe, steps, guidance))
        h = report.heldout  # errors on held-out calls; the calibration-row errors flatter methods that fit them
        info.update(ptq_calib_tokens=h["calib_tokens"], ptq_heldout_tokens=h["eval_tokens"],
                    ptq_model_error=h["model_err"], ptq_model_error_rtn=h["model_err_rtn"],
                    ptq_layer_error=sum(v["rel_err"] for v in h["layers"].values()) / len(h["layers"]),
                    ptq_layer_error_rtn=sum(v["rel_err_rtn"] for v in h["layers"].values()) / len(h["layers"]),
                    ptq_layer_error_calib=report.mean_error(), ptq_layer_error_calib_rtn=report.mean_error(rtn=True))
    info["ptq_s"] = time.perf_counter() - t0
    size = model_size_report(unet)
    return rebuild_pipeline(pipe, unet=unet.eval()), {"size_mb": size.quantized_bytes / 2**20,
                                                      "fp16_mb": size.fp16_bytes / 2**20, **info}
