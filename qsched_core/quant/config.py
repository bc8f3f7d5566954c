"""QuantConfig: what to quantize in a linear layer and how, plus the named presets used across the repo.

A config is a plain frozen dataclass; override a preset with `dataclasses.replace(cfg, w_bits=3)` or
`QuantConfig.from_name("w4a8", w_group_size=64)`. 16 bits means "left in floating point".

Presets follow the two papers this repo reproduces (see the specs and the README):
  - Q-Sched (qsched.md §3) ran torchao, and these presets compute what torchao computes (scale formula, code
    range, reciprocal-scale rounding, zero points; tests/quant/test_quant_torchao.py checks them against the
    published formulas written out in the test):
      w4a8  = `int8_dynamic_activation_int4_weight()`: int4 symmetric weights in groups of 32,
              s = max|w| / 7.5, codes -8..7; int8 asymmetric per-token dynamic activations;
      w8a8  = `int8_dynamic_activation_int8_weight()`: int8 symmetric per-channel weights, s = max|w| / 127.5,
              codes -128..127; int8 symmetric per-token activations in torchao's reduced range -127..127
              (s = max|x| / 127, our "qmax" rule);
      w4a4  = the paper's own per-row config on torchao's affine primitives: both sides s = max / 7.5.
    The repo's earlier convention (s = max / 7, level -8 unused) stays available as `w_scale_rule="qmax"`;
    on random layers it changes W4A8 outputs by about 10% relative (the step is 7% coarser, +max is exact).
    One floor differs: torchao floors W8A8's activation scales at 1e-5, we floor every scale at float32
    eps; only tokens whose max|x| is below 1.3e-3 are affected.
  - dLLM PTQ study (dllm_ptq.md §2.0, §5): weight-only W4A16 / W3A16 in groups of 128, asymmetric (the
    study's table; AWQ's final RTN is asymmetric), W8A16 per channel; W3A4 is an extra point for the
    bit-width sweep.
PTQ methods that differ (e.g. SmoothQuant's asymmetric weights) override fields of a preset; they do not
add presets of their own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from numbers import Integral

from .primitives import MAX_BITS, MIN_BITS, SCALE_RULES

FLOAT_BITS = 16  # "no quantization" marker for w_bits / a_bits
A_GRANULARITIES = ("per_token", "per_tensor")


def _check_bits_field(name: str, value) -> None:
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if not ok or not (MIN_BITS <= value <= MAX_BITS or value == FLOAT_BITS):
        raise ValueError(f"{name}={value!r} must be an int in {MIN_BITS}..{MAX_BITS}, or {FLOAT_BITS} for "
                         f"'not quantized'; e.g. {name}=4")


@dataclass(frozen=True)
class QuantConfig:
    """How the nn.Linear layers of a model are quantized (defaults: W4A16 in groups of 32, runs anywhere)."""

    w_bits: int = 4                      # weight bits, 2..8, or 16 = keep FP weights
    a_bits: int = 16                     # activation bits, 2..8, or 16 = no activation quantization
    w_group_size: int = 32               # -1 = one scale per output channel, G = per G input channels
    w_symmetric: bool = True             # symmetric weights: zero point 0, codes in [-2^(b-1), 2^(b-1)-1]
    a_symmetric: bool = True             # symmetric activations (False: codes in [0, 2^b - 1] + zero point)
    a_granularity: str | None = "per_token"  # "per_token" (dynamic) | "per_tensor" (static, calibrated)
    w_clip_ratio: float = 1.0            # shrink the weight range before choosing scales (RTN default 1.0)
    a_clip_ratio: float = 1.0            # same for activations (QuaRot W4A4 uses 0.9, DuQuant 0.9)
    w_scale_rule: str = "torchao"        # symmetric weight scale: "torchao" max/((qmax-qmin)/2) | "qmax" max/qmax
    a_scale_rule: str = "torchao"        # same for symmetric activations (W8A8's are torchao's reduced-range "qmax")

    def __post_init__(self):
        _check_bits_field("w_bits", self.w_bits)
        _check_bits_field("a_bits", self.a_bits)
        g = self.w_group_size
        if isinstance(g, bool) or not isinstance(g, Integral) or not (g == -1 or g > 0):
            raise ValueError(f"w_group_size={g!r} must be -1 (per output channel) or a positive group size "
                             f"such as 32, 64 or 128")
        if self.a_granularity not in A_GRANULARITIES + (None,):
            raise ValueError(f"a_granularity={self.a_granularity!r} is unknown; use 'per_token' (dynamic), "
                             f"'per_tensor' (static, needs calibration) or None with a_bits=16")
        if self.a_granularity is None and self.a_bits != FLOAT_BITS:
            raise ValueError(f"a_bits={self.a_bits} needs a_granularity 'per_token' or 'per_tensor'; "
                             f"set a_bits=16 to leave activations in floating point")
        for name in ("w_scale_rule", "a_scale_rule"):
            if getattr(self, name) not in SCALE_RULES:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; use 'torchao' (s = max / ((qmax - qmin)"
                                 f" / 2), codes -8..7 for int4) or 'qmax' (s = max / qmax, QuaRot's convention)")
        for name in ("w_clip_ratio", "a_clip_ratio"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in (0, 1]; 1.0 means no clipping")

    @property
    def quantize_weights(self) -> bool:
        return self.w_bits != FLOAT_BITS

    @property
    def quantize_activations(self) -> bool:
        return self.a_bits != FLOAT_BITS

    @property
    def name(self) -> str:
        """Short tag such as 'w4a8-g32' or 'w8a8' (per-channel weights carry no '-g')."""
        group = f"-g{self.w_group_size}" if self.quantize_weights and self.w_group_size > 0 else ""
        rule = "-qmax" if self.quantize_weights and self.w_symmetric and self.w_scale_rule == "qmax" else ""
        return f"w{self.w_bits}a{self.a_bits}{group}{rule}"  # rule: so that from_name(cfg.name) == cfg

    def describe(self) -> str:
        """One line for tables and plot titles, e.g. 'W4A8: int4 sym weights g32 | int8 asym per-token acts'."""
        if self.quantize_weights:
            gran = f"g{self.w_group_size}" if self.w_group_size > 0 else "per-channel"
            w = f"int{self.w_bits} {'sym' if self.w_symmetric else 'asym'} weights {gran}"
        else:
            w = "FP weights"
        a = "FP acts"
        if self.quantize_activations:
            kind = "per-token" if self.a_granularity == "per_token" else "per-tensor static"
            a = f"int{self.a_bits} {'sym' if self.a_symmetric else 'asym'} {kind} acts"
        return f"W{self.w_bits}A{self.a_bits}: {w} | {a}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_name(cls, name: str, **overrides) -> QuantConfig:
        """A preset by name (case-insensitive), optionally with some fields replaced."""
        key = name.lower() if isinstance(name, str) else name
        tags: dict[str, list[str]] = {}  # a config's own tag names its preset: w4a8-g32 -> w4a8
        for k, p in PRESETS.items():
            tags.setdefault(cls(**p).name, []).append(k)
        if key not in PRESETS and len(tags.get(key, [])) > 1:
            raise ValueError(f"{name!r} is the tag of several presets {tags[key]}; pass one of those names")
        key = key if key in PRESETS else tags.get(key, [key])[0]
        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown QuantConfig fields {sorted(unknown)}; known: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        if key not in PRESETS:
            raise ValueError(f"unknown quantization preset {name!r}; known presets: {', '.join(PRESETS)}")
        return replace(cls(**PRESETS[key]), **overrides)


_FP = dict(w_bits=16, a_bits=16, a_granularity=None)
PRESETS: dict[str, dict] = {
    # Q-Sched backbone settings (qsched.md §3 table)
    "w4a8": dict(w_bits=4, w_group_size=32, w_symmetric=True, a_bits=8, a_symmetric=False,
                 a_granularity="per_token"),
    "w8a8": dict(w_bits=8, w_group_size=-1, w_symmetric=True, a_bits=8, a_symmetric=True,
                 a_granularity="per_token", a_scale_rule="qmax"),
    "w4a4": dict(w_bits=4, w_group_size=-1, w_symmetric=True, a_bits=4, a_symmetric=True,
                 a_granularity="per_token"),
    # weight-only settings of the dLLM study (dllm_ptq.md §5)
    "w4a16-g128": dict(w_bits=4, w_group_size=128, w_symmetric=False, a_bits=16, a_granularity=None),
    "w3a16-g128": dict(w_bits=3, w_group_size=128, w_symmetric=False, a_bits=16, a_granularity=None),
    "w8a16": dict(w_bits=8, w_group_size=-1, w_symmetric=True, a_bits=16, a_granularity=None),
    # the repo's earlier symmetric convention (s = max / qmax), kept to show what the torchao rule changed
    "w4a8-qmax": dict(w_bits=4, w_group_size=32, w_symmetric=True, a_bits=8, a_symmetric=False,
                      a_granularity="per_token", w_scale_rule="qmax"),
    # bit-width sweep point below W4A4
    "w3a4": dict(w_bits=3, w_group_size=-1, w_symmetric=True, a_bits=4, a_symmetric=True,
                 a_granularity="per_token"),
    "fp": _FP,
    "w16a16": _FP,
}
