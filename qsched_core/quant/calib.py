"""Calibration for the PTQ methods: what each linear layer reads, where that input comes from, its statistics.

Calibration data is either a list of batches, each one call of the model (a tensor -> model(x), a tuple ->
model(*args), a dict -> model(**kwargs), a `Call` -> model(*args, **kwargs)), or a callable `calib(model)` that
runs the model itself (e.g. a whole 4-step sampler). `record_calls(unet, fn)` turns any run into a list of
`Call`s: this is how the UNet's inputs at the sampler's timesteps become calibration batches.

Input groups. SmoothQuant, AWQ and DuQuant divide a linear's input by a per-channel scale s and multiply its
weight columns by s. The division is free when it can be folded into the op that produced the input:
  - a LayerNorm / RMSNorm / GroupNorm: divide its weight (and bias) by s;
  - a linear whose output channels *are* the input channels (attention V -> output projection, the value
    half of a GEGLU / SwiGLU -> down projection): divide its output rows (and bias) by s.
Linears that read the same tensor (q, k, v after a norm) must share s. `find_input_groups` finds both facts
on one traced forward pass: linears whose first input is the *same tensor object* form a group, and a norm
whose output is that object is the producer. Linear -> linear producers cannot be seen that way (attention
or a gate sits between them), so they come from the explicit `FOLD_PATTERNS` table, each with the reason it is
exact. A group with no producer is "online": its scale stays on the QuantLinear as an act_transform, an extra
elementwise multiply at run time. Each method's report says which case every layer got, and the methods check
that the transformed FP model still reproduces the original output before they quantize.

`collect_inputs` then records, per group, a strided sample of input rows (for errors and searches) and
running statistics over every token: max |x_j| (SmoothQuant), mean |x_j| (AWQ), sum x^T x (GPTQ's Hessian).

Notation: x (T, K) input rows (tokens flattened), s (K,) per-input-channel scale.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .qlinear import is_linear


@dataclass
class Call:
    """One recorded model call: model(*args, **kwargs)."""
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def check_calib(calib) -> None:
    """Calibration must be a non-empty list of batches or a callable calib(model); say what to pass if not."""
    if callable(calib) and not isinstance(calib, nn.Module):
        return
    if calib is None or isinstance(calib, (torch.Tensor, str)) or not isinstance(calib, Sequence) or not calib:
        raise ValueError(f"calibration data {type(calib).__name__ if calib is not None else None} is missing or not a "
                         f"list: pass a non-empty list of batches (tensor / tuple of args / dict of kwargs / Call), "
                         f"e.g. calib=[x1, x2], or a callable calib(model) that runs the model")


def call_model(model: nn.Module, batch):
    if isinstance(batch, Call):
        return model(*batch.args, **batch.kwargs)
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def run_calib(model: nn.Module, calib, first_only: bool = False) -> None:
    """Run the model on every calibration batch (or the first), without gradients."""
    check_calib(calib)
    with torch.no_grad():
        if callable(calib) and not isinstance(calib, Sequence):
            calib(model)
        else:
            for batch in (calib[:1] if first_only else calib):
                call_model(model, batch)


def _detach(v):
    return v.detach().clone() if isinstance(v, torch.Tensor) else v


def record_calls(module: nn.Module, fn: Callable[[], object]) -> list[Call]:
    """Run fn() and return every call of `module` made meanwhile (inputs detached and cloned)."""
    calls: list[Call] = []

    def hook(mod, args, kwargs):
        calls.append(Call(tuple(_detach(a) for a in args), {k: _detach(v) for k, v in kwargs.items()}))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            fn()
    finally:
        handle.remove()
    if not calls:
        raise ValueError(f"{type(module).__name__} was never called by fn; pass a function that runs it")
    return calls


# ----------------------------------------------------------------------------------- input groups
@dataclass(frozen=True)
class FoldPattern:
    """A linear -> linear pair (names relative to the consumer's parent) where a scale folds into the producer."""
    producer: str
    consumer: str
    rows: str  # "all" output rows of the producer, or "first_half" (the value half of a gated unit)
    why: str


FOLD_PATTERNS = (
    FoldPattern("to_v", "to_out.0", "all", "attention mixes tokens, not channels: P (V / s) = (P V) / s"),
    FoldPattern("v_proj", "o_proj", "all", "attention mixes tokens, not channels"),
    FoldPattern("v_proj", "attn_out", "all", "attention mixes tokens, not channels"),
    FoldPattern("up_proj", "down_proj", "all", "SwiGLU: act(gate) * up is linear in up"),
    FoldPattern("up_proj", "ff_out", "all", "SwiGLU: act(gate) * up is linear in up"),
    FoldPattern("net.0.proj", "net.2", "first_half", "GEGLU: h * gelu(g) with [h, g] = proj(x) is linear in h"),
    FoldPattern("norm", "proj_in", "all", "GroupNorm is per channel; the reshape to tokens keeps channels"),
)


@dataclass(frozen=True)
class InputGroup:
    """Linears reading one input tensor x (..., K), and where a per-channel scale of x can be folded.

    kind: "norm" (divide producer.weight / .bias), "linear" (divide producer output rows[0]:rows[1]) or
    "online" (no producer: the scale stays on the QuantLinear).
    """
    consumers: tuple[str, ...]
    producer: str | None = None
    kind: str = "online"
    rows: tuple[int, int] | None = None
    note: str = ""

    def describe(self) -> str:
        if self.kind == "online":
            return "online"
        rows = f"[{self.rows[0]}:{self.rows[1]}]" if self.kind == "linear" else ""
        return f"fold -> {self.producer}{rows}"


def is_foldable_norm(module: nn.Module) -> bool:
    """LayerNorm / GroupNorm / *RMSNorm with a per-channel weight: y = w * normalized(x) (+ b)."""
    w = getattr(module, "weight", None)
    named = isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or type(module).__name__.endswith("RMSNorm")
    return named and isinstance(w, torch.Tensor) and w.ndim == 1


def _trace(model: nn.Module, calib):
    """First input of every linear, first output of every norm, and who read each tensor (one forward)."""
    first_in, norm_out, readers, keep, order = {}, {}, defaultdict(set), [], []
    state = {"done": False}
    handles = [model.register_forward_hook(lambda m, a, o: state.update(done=True))]

    def pre(name, is_lin):
        def hook(mod, args, kwargs):
            if state["done"]:
                return
            for v in list(args) + list(kwargs.values()):
                if isinstance(v, torch.Tensor):
                    readers[id(v)].add(name)
                    keep.append(v)  # keeps ids unique while tracing
            if is_lin and name not in first_in and args:
                first_in[name] = args[0]
                order.append(name)
        return hook

    def post(name):
        def hook(mod, args, out):
            if not state["done"] and isinstance(out, torch.Tensor):
                norm_out.setdefault(name, out)
                keep.append(out)
        return hook

    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_pre_hook(pre(name, isinstance(mod, nn.Linear)), with_kwargs=True))
            if is_foldable_norm(mod):
                handles.append(mod.register_forward_hook(post(name)))
    try:
        run_calib(model, calib, first_only=True)
    finally:
        for h in handles:
            h.remove()
    return first_in, norm_out, readers, order


def _pattern_group(name: str, modules: dict[str, nn.Module]) -> InputGroup | None:
    consumer = modules[name]
    for p in FOLD_PATTERNS:
        if not (name == p.consumer or name.endswith("." + p.consumer)):
            continue
        prefix = name[: len(name) - len(p.consumer)]
        prod = modules.get(prefix + p.producer)
        k = consumer.in_features
        if isinstance(prod, nn.GroupNorm) and p.producer == "norm" and prod.affine and prod.num_channels == k:
            return InputGroup((name,), prefix + p.producer, "norm", None, p.why)
        if not isinstance(prod, nn.Linear):
            continue
        if p.rows == "all" and prod.out_features == k:
            return InputGroup((name,), prefix + p.producer, "linear", (0, k), p.why)
        gate = modules.get(prefix + p.producer.rpartition(".")[0])
        if p.rows == "first_half" and prod.out_features == 2 * k and type(gate).__name__ in ("GEGLU", "SwiGLU"):
            return InputGroup((name,), prefix + p.producer, "linear", (0, k), p.why)
    return None


def find_input_groups(model: nn.Module, calib, filter_fn: Callable[[nn.Module, str], bool] = is_linear,
                      fold: bool = True) -> list[InputGroup]:
    """Group the selected linears by shared input and find each group's foldable producer (execution order).

    Runs the model once on the first calibration batch. fold=False makes every group online.
    """
    modules = dict(model.named_modules())
    selected = [n for n, m in modules.items() if n and isinstance(m, nn.Linear) and filter_fn(m, n)]
    if not selected:
        raise ValueError("no nn.Linear matched filter_fn; nothing to quantize (check filter_fn)")
    first_in, norm_out, readers, order = _trace(model, calib)
    silent = [n for n in selected if n not in first_in]
    if silent:
        raise ValueError(f"linears {silent[:4]} never ran on the calibration data; exclude them with filter_fn "
                         f"or pass calibration batches that reach them")
    buckets: dict[int, list[str]] = {}
    for name in order:
        if name in selected:
            buckets.setdefault(id(first_in[name]), []).append(name)
    groups = []
    for tid, names in buckets.items():
        group = InputGroup(tuple(names))
        norm = next((n for n, out in norm_out.items() if id(out) == tid), None)
        others = {r for r in readers[tid] if r not in names and not any(c.startswith(r + ".") for c in names)}
        if fold and norm is not None and not others:
            group = InputGroup(tuple(names), norm, "norm", None, "the norm's output is read only by these linears")
        elif fold and norm is None and len(names) == 1:
            group = _pattern_group(names[0], modules) or group
        groups.append(group)
    return groups


# ----------------------------------------------------------------------------------- statistics
@dataclass
class InputStats:
    """What a group's linears read: a sample of rows and running per-channel statistics over every token."""
    x: torch.Tensor                  # (T', K) float32, strided sample (<= tokens_per_call rows per call)
    absmax: torch.Tensor             # (K,) max_t |x_tj|
    absmean: torch.Tensor            # (K,) mean_t |x_tj|
    xtx: torch.Tensor | None         # (K, K) float64 sum_t x_t^T x_t, when hessian=True
    n_tokens: int

    def hessian(self) -> torch.Tensor:
        """GPTQ's H = (2 / N) sum_t x_t^T x_t (float64)."""
        if self.xtx is None:
            raise ValueError("statistics were collected without hessian=True")
        return 2.0 * self.xtx / self.n_tokens


class _Accumulator:
    def __init__(self, tokens_per_call: int, max_tokens: int, hessian: bool):
        self.per_call, self.max_tokens, self.hessian = tokens_per_call, max_tokens, hessian
        self.rows, self.n, self.absmax, self.abssum, self.xtx = [], 0, None, None, None

    def update(self, x: torch.Tensor) -> None:
        a = x.detach().reshape(-1, x.shape[-1]).float()  # (..., K) -> (T, K)
        stride = max(1, -(-a.shape[0] // self.per_call))
        if sum(r.shape[0] for r in self.rows) < self.max_tokens:
            self.rows.append(a[::stride].clone())
        amax, asum = a.abs().amax(0), a.abs().sum(0)
        self.absmax = amax if self.absmax is None else torch.maximum(self.absmax, amax)
        self.abssum = asum if self.abssum is None else self.abssum + asum
        if self.hessian:
            xtx = a.double().T @ a.double()  # (K, K)
            self.xtx = xtx if self.xtx is None else self.xtx + xtx
        self.n += a.shape[0]

    def result(self) -> InputStats:
        x = torch.cat(self.rows)[: self.max_tokens]
        return InputStats(x, self.absmax, self.abssum / self.n, self.xtx, self.n)


def collect_inputs(model: nn.Module, groups: list[InputGroup], calib, *, tokens_per_call: int = 256,
                   max_tokens: int = 4096, hessian: bool = False) -> list[InputStats]:
    """One InputStats per group (same order), from every calibration call (hooks on the first consumer)."""
    accs = [_Accumulator(tokens_per_call, max_tokens, hessian) for _ in groups]
    handles = [model.get_submodule(g.consumers[0]).register_forward_pre_hook(
        lambda m, args, acc=acc: acc.update(args[0])) for g, acc in zip(groups, accs)]
    try:
        run_calib(model, calib)
    finally:
        for h in handles:
            h.remove()
    missing = [g.consumers[0] for g, a in zip(groups, accs) if a.n == 0]
    if missing:
        raise ValueError(f"linears {missing[:4]} saw no calibration input; check the calibration data")
    return [a.result() for a in accs]
