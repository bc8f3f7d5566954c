"""Q-Sched: quantization-aware scheduler coefficients for LCM, TCD, Euler-ancestral and flow-matching samplers.

Q-Sched (Frumkin & Marculescu, arXiv 2509.01624) leaves the quantized denoiser frozen and changes only the
sampler. At step i of N the update sees two rescaled inputs instead of the raw ones:

    x_t     <- c^x_i   * x_t         (the current latent, "sample coefficient")
    eps_hat <- c^eps_i * eps_hat     (the model output after guidance, "model coefficient")

and then runs the family's usual update. The network input is never scaled: the UNet still sees the plain x_t
(after `scale_model_input`), so c^x_i changes the trajectory from the next model call onward. Each coefficient
is a per-step linear ramp that the search picks by its first value and that ends at 1.0:

    c_i = start + (end - start) * i / (N - 1),   end = 1 by default,   c_0 = start when N = 1

so (start_x, start_eps) = (1, 1) is the stock scheduler. Per family (alpha_t = sqrt(alpha_bar_t),
sigma_t = sqrt(1 - alpha_bar_t) in DDPM space; sigma_i in k-diffusion or flow space):
  LCM       x0_hat = (c^x x_t - sigma_t c^eps eps) / alpha_t,  denoised = c_out x0_hat + c_skip c^x x_t, re-noise
  TCD       the same x0_hat, and c^eps eps is reused in the sigma_{s'} re-noising term (spec section 1.3a)
  Euler-A   x_next = c^x x + c^eps eps (sigma_down - sigma_i) + sigma_up z
  flow      x_next = c^x x + (sigma_{i+1} - sigma_i) c^eps v
In every family the coefficients enter only through the pair (x_t, eps_hat) that the stock update consumes, so
each subclass below rescales that pair and hands it to the stock diffusers `step`: nothing is forked, the schedule
math (alphas, sigmas, c_skip/c_out, step index, noise draws) stays the library's, and at c = 1 the result is
bit-identical (multiplying by 1.0 is exact).
Coefficients may be tensors with `requires_grad` (the gradient search differentiates through the sampler).

Saving: the coefficients are written into the scheduler config under the key `coefficients` (plain floats), so
`save_config` / `from_pretrained` / `from_config` round-trip them. Stock schedulers loading such a config log
that they ignore the key, which is correct: they have no coefficients.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from diffusers import (
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
)

Scalar = float | torch.Tensor
SEARCH_RANGE_HINT = "1.0 leaves the stock scheduler unchanged; the paper searches [0.8, 1.2]"


def _scalar_value(name: str, value: Any) -> float:
    """Validate one ramp endpoint (float or 1-element tensor) and return it as a float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} has shape {tuple(value.shape)}; a ramp endpoint must be a scalar "
                             "(pass a per-step vector as c_x= / c_eps= instead)")
        value_f = float(value.detach())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value_f = float(value)
    else:
        raise ValueError(f"{name}={value!r} must be a positive number ({SEARCH_RANGE_HINT})")
    if not math.isfinite(value_f) or value_f <= 0:
        raise ValueError(f"{name}={value_f} must be finite and > 0 ({SEARCH_RANGE_HINT})")
    return value_f


def _vector_value(name: str, value: Any) -> torch.Tensor:
    """Validate an explicit per-step coefficient vector; return it as a 1-D float tensor (grad kept)."""
    vec = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float32)
    if vec.ndim != 1 or vec.numel() == 0 or not vec.is_floating_point():
        raise ValueError(f"{name} has shape {tuple(vec.shape)} and dtype {vec.dtype}; it must be a non-empty 1-D "
                         "float vector with one coefficient per sampling step")
    bad = ~torch.isfinite(vec.detach()) | (vec.detach() <= 0)
    if bad.any():
        raise ValueError(f"{name}={vec.detach().tolist()} has non-finite or non-positive entries at steps "
                         f"{bad.nonzero().flatten().tolist()}; every entry must be > 0 ({SEARCH_RANGE_HINT})")
    return vec


def ramp(first: Scalar, last: Scalar, num_steps: int) -> torch.Tensor:
    """c_i = first + (last - first) * i / (N - 1) for i = 0..N-1 (c_0 = first when N = 1); differentiable."""
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r} must be an int >= 1 (the number of sampling steps)")
    tensors = [v for v in (first, last) if isinstance(v, torch.Tensor) and v.is_floating_point()]
    dtype = tensors[0].dtype if tensors else torch.float32
    first_t = torch.as_tensor(first, dtype=dtype).reshape(())
    last_t = torch.as_tensor(last, dtype=dtype).reshape(())
    if num_steps == 1:
        return first_t.reshape(1)
    frac = torch.arange(num_steps, dtype=dtype) / (num_steps - 1)  # i / (N - 1), (N,)
    return first_t * (1 - frac) + last_t * frac  # this form hits both endpoints exactly (the last c is 1.0)


@dataclass
class QSchedCoefficients:
    """The two per-step coefficient ramps c^x (latent) and c^eps (model output).

    start_x, start_eps: first-step values, the two scalars the paper searches (floats or 0-d tensors).
    end_x, end_eps:     last-step values; 1.0 in the paper, other values give a general two-endpoint ramp.
    c_x, c_eps:         optional explicit per-step vectors (N,), used instead of the ramp on that axis.
    """

    start_x: Scalar = 1.0
    start_eps: Scalar = 1.0
    end_x: Scalar = 1.0
    end_eps: Scalar = 1.0
    c_x: Sequence[float] | torch.Tensor | None = None
    c_eps: Sequence[float] | torch.Tensor | None = None

    def __post_init__(self):
        values = {n: _scalar_value(n, getattr(self, n)) for n in ("start_x", "start_eps", "end_x", "end_eps")}
        for axis in ("x", "eps"):
            vec = getattr(self, f"c_{axis}")
            if vec is None:
                continue
            setattr(self, f"c_{axis}", _vector_value(f"c_{axis}", vec))
            if values[f"start_{axis}"] != 1.0 or values[f"end_{axis}"] != 1.0:
                raise ValueError(f"start_{axis}={values[f'start_{axis}']}, end_{axis}={values[f'end_{axis}']} "
                                 f"and c_{axis} are all set; give either the ramp endpoints or the explicit vector")

    def ramps(self, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_x, c_eps), each (N,): the per-step coefficients for an N-step sampler."""
        out = []
        for axis in ("x", "eps"):
            vec = getattr(self, f"c_{axis}")
            if vec is None:
                out.append(ramp(getattr(self, f"start_{axis}"), getattr(self, f"end_{axis}"), num_steps))
            elif vec.numel() != num_steps:
                raise ValueError(f"c_{axis} has {vec.numel()} entries but the sampler runs num_steps={num_steps}; "
                                 f"give one coefficient per step or use the start_{axis}/end_{axis} ramp")
            else:
                out.append(vec)
        return out[0], out[1]

    def __eq__(self, other) -> bool:  # by value, so explicit vectors (tensors) compare without ambiguity
        return isinstance(other, QSchedCoefficients) and self.to_config() == other.to_config()

    @property
    def is_identity(self) -> bool:
        """True when every coefficient is exactly 1 (the stock scheduler)."""
        parts = (self.start_x, self.start_eps, self.end_x, self.end_eps, self.c_x, self.c_eps)
        return all(p is None or bool((torch.as_tensor(p).detach() == 1).all()) for p in parts)

    def to_config(self) -> dict[str, Any]:
        """JSON-safe dict of plain floats (gradients dropped), the inverse of `from_config`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.detach().tolist()
            out[f.name] = v
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> QSchedCoefficients:
        """Rebuild from `to_config()` output (None gives the identity)."""
        if config is None:
            return cls()
        if not isinstance(config, dict):
            raise ValueError(f"coefficients config {config!r} must be a dict from QSchedCoefficients.to_config()")
        unknown = set(config) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown coefficient keys {sorted(unknown)}; expected a subset of "
                             f"{[f.name for f in fields(cls)]}")
        return cls(**config)


@dataclass
class CoefficientBatch:
    """One `QSchedCoefficients` per sample of a batch: many coefficient settings rendered in one sampler call.

    The search engine stacks G grid points x n calibration prompts into one batch of G*n samples; sample j is
    updated with items[j]. `ramps` returns (N, B) tensors; the scheduler applies column j to sample j.
    """

    items: list[QSchedCoefficients]

    def __post_init__(self):
        if not isinstance(self.items, (list, tuple)) or not self.items or \
                not all(isinstance(c, QSchedCoefficients) for c in self.items):
            raise ValueError(f"CoefficientBatch needs a non-empty list of QSchedCoefficients (one per sample), got "
                             f"{type(self.items).__name__} of {len(self.items) if hasattr(self.items, '__len__') else '?'}")
        self.items = list(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def ramps(self, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_x, c_eps), each (N, B): column j holds sample j's per-step coefficients (built once per N)."""
        cache = self.__dict__.setdefault("_ramps", {})
        if num_steps not in cache:
            pairs = [c.ramps(num_steps) for c in self.items]
            cache[num_steps] = torch.stack([p[0] for p in pairs], 1), torch.stack([p[1] for p in pairs], 1)
        return cache[num_steps]

    @property
    def is_identity(self) -> bool:
        return all(c.is_identity for c in self.items)

    def to_config(self) -> dict[str, Any]:
        return {"batch": [c.to_config() for c in self.items]}


def _init_with_coefficients(base: type):
    """An `__init__` taking the base scheduler's arguments plus `coefficients=`.

    diffusers' `from_config` reads the accepted keys from `inspect.signature(cls.__init__)`, so the wrapper
    advertises the base signature with `coefficients` appended instead of an opaque `*args, **kwargs`.
    """

    def __init__(self, *args, coefficients: QSchedCoefficients | dict | None = None, **kwargs):
        base.__init__(self, *args, **kwargs)
        self.set_coefficients(coefficients)

    params = list(inspect.signature(base.__init__).parameters.values())
    extra = inspect.Parameter("coefficients", inspect.Parameter.KEYWORD_ONLY, default=None)
    __init__.__signature__ = inspect.Signature([*params, extra])
    return __init__


class QSchedMixin:
    """Coefficient storage and per-step lookup shared by the four Q-Sched schedulers."""

    coefficients: QSchedCoefficients

    def set_coefficients(self, coefficients: QSchedCoefficients | CoefficientBatch | dict | None = None) -> None:
        """Install the ramps (None = identity) and record them, as floats, in `self.config['coefficients']`."""
        if isinstance(coefficients, dict) and set(coefficients) == {"batch"}:
            coefficients = CoefficientBatch([QSchedCoefficients.from_config(c) for c in coefficients["batch"]])
        elif isinstance(coefficients, dict) or coefficients is None:
            coefficients = QSchedCoefficients.from_config(coefficients)
        if not isinstance(coefficients, (QSchedCoefficients, CoefficientBatch)):
            raise ValueError(f"coefficients={coefficients!r} must be a QSchedCoefficients, a CoefficientBatch, "
                             "their to_config() dict, or None for the identity")
        self.coefficients = coefficients
        self.register_to_config(coefficients=coefficients.to_config())

    @classmethod
    def from_scheduler(cls, stock, coefficients: QSchedCoefficients | None = None):
        """The Q-Sched twin of a configured stock scheduler: same config, the given coefficients."""
        return cls.from_config(stock.config, coefficients=coefficients)

    def current_coefficients(self, timestep) -> tuple[torch.Tensor, torch.Tensor]:
        """(c^x_i, c^eps_i) for the step about to run; initialises diffusers' step index on the first call."""
        if self.step_index is None:
            self._init_step_index(timestep)
        c_x, c_eps = self.coefficients.ramps(len(self.timesteps))
        return c_x[self.step_index], c_eps[self.step_index]

    def scaled_pair(self, timestep, sample: torch.Tensor, model_output: torch.Tensor):
        """(c^x_i x_t, c^eps_i eps_hat) for the step about to run; per-sample coefficients (a CoefficientBatch)
        scale sample j of the batch by their j-th entry."""
        c_x, c_eps = self.current_coefficients(timestep)
        return _scale(c_x, sample), _scale(c_eps, model_output)


def _scale(c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """c * t for a 0-d c (bit-identical to the plain product) or a per-sample (B,) c against t (B, ...)."""
    if c.ndim == 0:
        return c * t
    if c.numel() != t.shape[0]:
        raise ValueError(f"the CoefficientBatch has {c.numel()} entries but the batch has {t.shape[0]} samples; "
                         "give one QSchedCoefficients per sample")
    return c.to(device=t.device, dtype=t.dtype).view(-1, *[1] * (t.ndim - 1)) * t


class QSchedLCMScheduler(QSchedMixin, LCMScheduler):
    """`LCMScheduler` with Q-Sched coefficients (spec 1.3b); returns (prev_sample, denoised) like the parent."""

    __init__ = _init_with_coefficients(LCMScheduler)

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        # 1. step index i and this step's coefficients (c^x_i, c^eps_i), inside scaled_pair
        # 2. pre-condition the pair: x_t <- c^x_i x_t, eps_hat <- c^eps_i eps_hat (the UNet saw the plain x_t)
        sample, model_output = self.scaled_pair(timestep, sample, model_output)
        # 3. the stock LCM update on the scaled pair: x0_hat = (x_t - sigma_t eps_hat) / alpha_t,
        #    denoised = c_out x0_hat + c_skip x_t, x_prev = alpha_prev denoised + sigma_prev z (no z at the end)
        return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)


class QSchedTCDScheduler(QSchedMixin, TCDScheduler):
    """`TCDScheduler` with Q-Sched coefficients (spec 1.3a); eta is TCD's gamma, 0 = deterministic."""

    __init__ = _init_with_coefficients(TCDScheduler)

    def step(self, model_output, timestep, sample, eta=0.3, generator=None, return_dict=True):
        if eta is None:  # LatentConsistencyModelPipeline passes eta=None; the stock TCD step fails on it
            raise ValueError("eta=None: pass TCD's gamma explicitly (0.0 = deterministic), e.g. through "
                             "qsched_core.sampling.sample_lcm(..., scheduler_family='tcd', eta=0.0)")
        # 1. step index i and this step's coefficients (c^x_i, c^eps_i), inside scaled_pair
        # 2. pre-condition the pair: x_t <- c^x_i x_t, eps_hat <- c^eps_i eps_hat
        sample, model_output = self.scaled_pair(timestep, sample, model_output)
        # 3. the stock TCD update: x0_hat = (x_t - sigma_t eps_hat) / alpha_t, x_s' = alpha_s' x0_hat +
        #    sigma_s' eps_hat (the same c^eps_i eps_hat, as in the paper), then re-noise s' -> s when gamma > 0
        return super().step(model_output, timestep, sample, eta=eta, generator=generator, return_dict=return_dict)


class QSchedEulerAncestralScheduler(QSchedMixin, EulerAncestralDiscreteScheduler):
    """`EulerAncestralDiscreteScheduler` with Q-Sched coefficients (spec 1.3c, k-diffusion sigma space)."""

    __init__ = _init_with_coefficients(EulerAncestralDiscreteScheduler)

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        # 1. step index i and this step's coefficients (c^x_i, c^eps_i), inside scaled_pair
        # 2. pre-condition the pair in fp32 like the parent: x <- c^x_i x, eps_hat <- c^eps_i eps_hat
        sample, model_output = self.scaled_pair(timestep, sample.to(torch.float32), model_output)
        # 3. the stock Euler-ancestral update: x0_hat = x - sigma_i eps_hat, d = (x - x0_hat) / sigma_i,
        #    x_next = x + d (sigma_down - sigma_i) + sigma_up z
        return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)


class QSchedFlowMatchEulerScheduler(QSchedMixin, FlowMatchEulerDiscreteScheduler):
    """`FlowMatchEulerDiscreteScheduler` with Q-Sched coefficients (spec 1.3d, velocity prediction)."""

    __init__ = _init_with_coefficients(FlowMatchEulerDiscreteScheduler)

    def step(self, model_output, timestep, sample, s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0,
             generator=None, per_token_timesteps=None, return_dict=True):
        # 1. step index i and this step's coefficients (c^x_i, c^eps_i), inside scaled_pair
        # 2. pre-condition the pair in fp32 like the parent: x <- c^x_i x, v_hat <- c^eps_i v_hat
        sample, model_output = self.scaled_pair(timestep, sample.to(torch.float32), model_output)
        # 3. the stock Euler update in flow time: x_next = x + (sigma_{i+1} - sigma_i) v_hat
        return super().step(model_output, timestep, sample, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax,
                            s_noise=s_noise, generator=generator, per_token_timesteps=per_token_timesteps,
                            return_dict=return_dict)


QSCHED_FOR_STOCK: dict[type, type] = {
    LCMScheduler: QSchedLCMScheduler,
    TCDScheduler: QSchedTCDScheduler,
    EulerAncestralDiscreteScheduler: QSchedEulerAncestralScheduler,
    FlowMatchEulerDiscreteScheduler: QSchedFlowMatchEulerScheduler,
}


def make_qsched_scheduler(stock, coefficients: QSchedCoefficients | None = None):
    """The Q-Sched scheduler matching `stock`'s family, built from its config (a Q-Sched one is rebuilt too)."""
    for klass in type(stock).__mro__:
        if klass in QSCHED_FOR_STOCK:
            return QSCHED_FOR_STOCK[klass].from_scheduler(stock, coefficients)
    supported = ", ".join(k.__name__ for k in QSCHED_FOR_STOCK)
    raise ValueError(f"{type(stock).__name__} has no Q-Sched variant; supported: {supported}. Swap the pipeline's "
                     "scheduler first, e.g. pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)")
