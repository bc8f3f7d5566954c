"""The PTQ methods behind one call, and the report each of them returns.

    model, report = apply_ptq(model, "smoothquant", QuantConfig.from_name("w8a8"), calib_batches)
    print(report)                      # one line: method, setting, mean layer error vs RTN, time, memory
    pd.DataFrame(report.rows())        # one row per linear: what was folded / rotated, its error, RTN's error

Every method has the signature `method(model, cfg, calib, **opts) -> (model, PTQReport)`, swaps the selected
nn.Linear layers for QuantLinear in place, and measures on the calibration inputs:
  - rel_err:     ||Q(x) - y|| / ||y|| per layer, y the FP layer's output on the same calibration rows;
  - rel_err_rtn: the same for plain round-to-nearest with the same QuantConfig, the baseline to beat;
  - fp_max_abs_diff: how much the method's exact transforms alone (smoothing, rotation, before any rounding)
    change the model output on the first calibration batch; ~1e-5 in fp32, else a fold is wrong;
  - seconds and peak memory. Memory is the growth of the process' resident set (RSS) above its level at the
    start, sampled every 5 ms from /proc/self/statm: torch's CPU tensors live outside Python's allocator, so
    tracemalloc would not see them. Memory the allocator reuses, or that another thread frees in between,
    is not counted, so read it as an order of magnitude.

Measuring functions used by the methods and the notebooks: `output_error(reference, model, calib)` (a whole
model's output error over the calibration calls), `model_outputs`, and `quantizer_inputs(model, names, x)`
(what each named layer's activation quantizer sees, i.e. its input after smoothing / rotation).

| method      | file           | weights                         | activations                            |
|-------------|----------------|---------------------------------|----------------------------------------|
| rtn         | rtn.py         | round-to-nearest                | per cfg                                 |
| gptq        | gptq.py        | Hessian-aware error feedback    | per cfg                                 |
| awq         | awq.py         | activation-aware scales + clip  | per cfg (weight-only in the papers)     |
| smoothquant | smoothquant.py | RTN after migrating act ranges  | smoothed, per cfg                       |
| quarot      | quarot.py      | GPTQ (or RTN) on rotated W      | randomised Hadamard, per cfg            |
| duquant     | duquant.py     | RTN on smoothed + rotated W     | smoothing + block rotations + zigzag    |
"""
from __future__ import annotations

import copy
import csv
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..utils import atomic_write
from .calib import run_calib
from .qlinear import QuantLinear, is_linear, quantize_
from .stats import capture_inputs

METHODS = ("rtn", "gptq", "awq", "smoothquant", "quarot", "duquant")


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, int]        # (out_features N, in_features K)
    transform: str                # e.g. "smooth, fold -> norm1", "hadamard online (H_12 x H_8)"
    rel_err: float | None         # this method, on calibration rows
    rel_err_rtn: float | None     # plain RTN, same cfg, same rows
    info: dict = field(default_factory=dict)  # method-specific: alpha, clip ratios, damping, ...


@dataclass
class PTQReport:
    method: str
    cfg_name: str
    layers: list[LayerReport]
    seconds: float = 0.0
    peak_mem_mb: float = 0.0
    fp_max_abs_diff: float | None = None
    notes: list[str] = field(default_factory=list)
    heldout: dict | None = None   # apply_ptq(..., eval_batches=): errors on inputs not used for calibration

    def rows(self) -> list[dict]:
        """One dict per layer (info flattened), for a DataFrame or CSV."""
        return [{k: v for k, v in asdict(r).items() if k != "info"} | r.info for r in self.layers]

    def mean_error(self, rtn: bool = False) -> float:
        errs = [r.rel_err_rtn if rtn else r.rel_err for r in self.layers]
        errs = [e for e in errs if e is not None]
        return sum(errs) / len(errs) if errs else float("nan")

    def summary(self) -> dict:
        return dict(method=self.method, setting=self.cfg_name, layers=len(self.layers),
                    mean_rel_err=self.mean_error(), mean_rel_err_rtn=self.mean_error(rtn=True),
                    fp_max_abs_diff=self.fp_max_abs_diff, seconds=round(self.seconds, 2),
                    peak_mem_mb=round(self.peak_mem_mb, 1))

    def to_csv(self, path) -> Path:
        rows = self.rows()
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_write(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        return Path(path)

    def __str__(self) -> str:
        s = self.summary()
        diff = "" if s["fp_max_abs_diff"] is None else f", transforms alone change FP by {s['fp_max_abs_diff']:.1e}"
        text = (f"{s['method']} {s['setting']}: {s['layers']} layers, mean layer error {s['mean_rel_err']:.4f} "
                f"(RTN {s['mean_rel_err_rtn']:.4f}){diff}; {s['seconds']} s, +{s['peak_mem_mb']} MB peak RSS")
        if self.heldout is not None:
            h = self.heldout
            mean = lambda key: sum(v[key] for v in h["layers"].values()) / max(len(h["layers"]), 1)  # noqa: E731
            text += (f"\n  held-out ({h['eval_tokens']} rows; calibrated on {h['calib_tokens']} rows): model error "
                     f"{h['model_err']:.4f} (RTN {h['model_err_rtn']:.4f}), mean layer output error "
                     f"{mean('rel_err'):.4f} (RTN {mean('rel_err_rtn'):.4f})")
        return "\n".join([text] + [f"  note: {n}" for n in self.notes])


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the lifetime peak, which only ever grows
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_mem_mb: float = 0.0
    samples: int = 0  # RSS samples taken so far by the sampler thread


@contextmanager
def measure(interval: float = 0.005):
    """Wall time and peak RSS growth (MB, sampled every `interval` s) of the block: `with measure() as m:`."""
    m, start, peak, stop = Measurement(), _rss_bytes(), [0], threading.Event()

    def sample():
        while not stop.wait(interval):
            peak[0] = max(peak[0], _rss_bytes())
            m.samples += 1
    thread = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        yield m
    finally:
        stop.set()
        thread.join()
        m.seconds = time.perf_counter() - t0
        m.peak_mem_mb = max(0, max(peak[0], _rss_bytes()) - start) / 2**20


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm().clamp(min=1e-12))


def first_tensor(out) -> torch.Tensor:
    """The main tensor of a model output: a tensor, the first of a tuple, or `.sample` / `.logits`."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return first_tensor(out[0])
    for attr in ("sample", "logits", "last_hidden_state"):
        if isinstance(getattr(out, attr, None), torch.Tensor):
            return getattr(out, attr)
    raise ValueError(f"cannot find the output tensor in a {type(out).__name__}; return a tensor or a tuple")


def model_outputs(model: nn.Module, calib, first_only: bool = False) -> list[torch.Tensor]:
    """The model's output tensor for every calibration call (root calls only, for a callable)."""
    outs: list[torch.Tensor] = []
    handle = model.register_forward_hook(lambda m, a, o: outs.append(first_tensor(o).detach().float()))
    try:
        run_calib(model, calib, first_only)
    finally:
        handle.remove()
    return outs


def quantizer_inputs(model: nn.Module, names: list[str], *args, **kwargs) -> dict[str, torch.Tensor]:
    """What the activation quantizer of each named layer sees on model(*args): its input after the layer's
    act_transform (smoothing / rotation), as (T, K) rows; the plain input for an nn.Linear."""
    seen = {}
    with torch.no_grad():
        for name, x in capture_inputs(model, names, *args, **kwargs).items():
            transform = getattr(model.get_submodule(name), "act_transform", None)
            x = x if transform is None else transform(x)
            seen[name] = x.reshape(-1, x.shape[-1])
    return seen


def output_error(reference: nn.Module, model: nn.Module, calib) -> float:
    """Mean over calibration calls of ||f_model(x) - f_ref(x)|| / ||f_ref(x)|| (e.g. a UNet's noise prediction)."""
    ref, out = model_outputs(reference, calib), model_outputs(model, calib)
    return float(torch.stack([(o - r).norm() / r.norm().clamp(min=1e-12) for o, r in zip(out, ref)]).mean())


def _registry() -> dict:
    from .awq import awq_quantize
    from .duquant import duquant_quantize
    from .gptq import gptq_quantize
    from .quarot import quarot_quantize
    from .rtn import rtn_quantize
    from .smoothquant import smoothquant_quantize
    return dict(rtn=rtn_quantize, gptq=gptq_quantize, awq=awq_quantize, smoothquant=smoothquant_quantize,
                quarot=quarot_quantize, duquant=duquant_quantize)


def apply_ptq(model: nn.Module, method: str, cfg, calib_batches, eval_batches=None,
              **opts) -> tuple[nn.Module, PTQReport]:
    """Quantize `model` in place with one of METHODS; opts go to that method (see its docstring).

    eval_batches (same format as calib_batches, disjoint from them): measure the report on held-out inputs
    too (`report.heldout`, see `heldout_errors`). Errors on the calibration rows flatter a method that fits
    them (GPTQ with few calibration tokens can beat RTN there and lose to it on new inputs).
    """
    if method not in METHODS:
        raise ValueError(f"unknown PTQ method {method!r}; choose one of {', '.join(METHODS)}")
    if eval_batches is None:
        return _registry()[method](model, cfg, calib_batches, **opts)
    if eval_batches is calib_batches:
        raise ValueError("eval_batches is calib_batches; held-out errors need inputs the method did not see "
                         "(e.g. other prompts, seeds or timesteps)")
    fp = copy.deepcopy(model)
    model, report = _registry()[method](model, cfg, calib_batches, **opts)
    report.heldout = heldout_errors(fp, model, cfg, calib_batches, eval_batches,
                                    opts.get("filter_fn", is_linear))
    return model, report


def _linear_outputs(model: nn.Module, names: list[str], batches) -> dict[str, torch.Tensor]:
    """Every output row (T, N) of each named layer over all batches."""
    outs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, a, o, n=n: outs[n].append(o.detach().float().reshape(-1, o.shape[-1]))) for n in names]
    try:
        run_calib(model, batches)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in outs.items()}


def heldout_errors(fp: nn.Module, model: nn.Module, cfg, calib_batches, eval_batches, filter_fn=None) -> dict:
    """Errors of a quantized `model` (and of plain RTN on a copy of `fp`) on held-out `eval_batches`.

    Per layer: ||Q_l(x_q) - L(x)|| / ||L(x)||, x and x_q the layer's inputs in the FP and the quantized model
    on the same held-out calls: the error at the layer's output, upstream error included (a per-layer input
    cannot be shared once a method folds scales into the layers before it). Per model: `output_error`.
    Also the calibration size: how many input rows (tokens) the first quantized layer saw in calibration.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, QuantLinear)]
    rtn = quantize_(copy.deepcopy(fp), cfg, filter_fn=lambda m, n: n in set(names) and (filter_fn or is_linear)(m, n))
    ref, out, out_rtn = (_linear_outputs(m, names, eval_batches) for m in (fp, model, rtn))
    calib_rows = _linear_outputs(fp, names[:1], calib_batches)[names[0]].shape[0] if names else 0
    layers = {n: {"rel_err": relative_error(out[n], ref[n]), "rel_err_rtn": relative_error(out_rtn[n], ref[n])}
              for n in names}
    return {"calib_tokens": calib_rows, "eval_tokens": ref[names[0]].shape[0] if names else 0,
            "model_err": output_error(fp, model, eval_batches), "model_err_rtn": output_error(fp, rtn, eval_batches),
            "layers": layers}
