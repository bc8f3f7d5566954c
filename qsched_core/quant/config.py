"""QuantConfig: what to quantize in a linear layer and how, plus the named presets used across the repo.

A config is a plain frozen dataclass; override a preset with `dataclasses.replace(cfg, w_bits=3)` or
`QuantConfig.from_name("w4a8", w_group_size=64)`. 16 bits means "left in floating point".

Presets follow the two papers this repo reproduces (see /work/shared/specs and the README):
  - Q-Sched (qsched.md §3): W4A8 is the main setting (int4 symmetric weights in groups of 32 + int8
    asymmetric per-token dynamic activations, torchao's `int8_dynamic_activation_int4_weight` defaults);
    W8A8 uses per-channel int8 weights + symmetric per-token int8 activations; W4A4 per output row.
  - dLLM PTQ study (dllm_ptq.md §2.0, §5): weight-only W4A16 / W3A16 in groups of 128, asymmetric (the
    study's table; AWQ's final RTN is asymmetric), W8A16 per channel; W3A4 is an extra point for the
    bit-width sweep.
PTQ methods that differ (e.g. SmoothQuant's asymmetric weights) override fields of a preset; they do not
add presets of their own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from numbers import Integral

from .primitives import MAX_BITS, MIN_BITS

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
        return f"w{self.w_bits}a{self.a_bits}{group}"

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
        if key not in PRESETS:
            raise ValueError(f"unknown quantization preset {name!r}; known presets: {', '.join(PRESETS)}")
        return replace(cls(**PRESETS[key]), **overrides)


_FP = dict(w_bits=16, a_bits=16, a_granularity=None)
PRESETS: dict[str, dict] = {
    # Q-Sched backbone settings (qsched.md §3 table)
    "w4a8": dict(w_bits=4, w_group_size=32, w_symmetric=True, a_bits=8, a_symmetric=False,
                 a_granularity="per_token"),
    "w8a8": dict(w_bits=8, w_group_size=-1, w_symmetric=True, a_bits=8, a_symmetric=True,
                 a_granularity="per_token"),
    "w4a4": dict(w_bits=4, w_group_size=-1, w_symmetric=True, a_bits=4, a_symmetric=True,
                 a_granularity="per_token"),
    # weight-only settings of the dLLM study (dllm_ptq.md §5)
    "w4a16-g128": dict(w_bits=4, w_group_size=128, w_symmetric=False, a_bits=16, a_granularity=None),
    "w3a16-g128": dict(w_bits=3, w_group_size=128, w_symmetric=False, a_bits=16, a_granularity=None),
    "w8a16": dict(w_bits=8, w_group_size=-1, w_symmetric=True, a_bits=16, a_granularity=None),
    # bit-width sweep point below W4A4
    "w3a4": dict(w_bits=3, w_group_size=-1, w_symmetric=True, a_bits=4, a_symmetric=True,
                 a_granularity="per_token"),
    "fp": _FP,
    "w16a16": _FP,
}
