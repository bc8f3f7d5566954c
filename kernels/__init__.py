"""Triton kernels for quantized inference (int4 packing, W4A16 / W8A8 GEMMs, per-token activation quantization).

`qsched_core` never imports Triton at module load: the layers pick a backend, "torch" (default, the reference
path built on `qsched_core.quant` primitives) or "triton", and `BACKEND_OVERRIDE` lets tests force either.
On a machine without a CUDA GPU, Triton kernels run only under `TRITON_INTERPRET=1` (slowly, for tests).
"""
from __future__ import annotations

import importlib.util
import os

BACKEND_OVERRIDE: str | None = None  # "torch" | "triton" | None (auto)


def has_triton() -> bool:
    """True when triton is importable and can run: a CUDA GPU is present, or TRITON_INTERPRET=1 is set."""
    if importlib.util.find_spec("triton") is None:
        return False
    import torch

    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


def pick_backend(requested: str = "auto") -> str:
    """Resolve "auto" | "torch" | "triton" to the backend that will run; raise if "triton" cannot run here."""
    choice = BACKEND_OVERRIDE or requested
    if choice not in ("auto", "torch", "triton"):
        raise ValueError(f"backend={choice!r} must be 'auto', 'torch' or 'triton'")
    if choice == "triton" and not has_triton():
        raise RuntimeError("backend='triton' needs triton and a CUDA GPU (or TRITON_INTERPRET=1 for slow CPU tests)")
    if choice == "auto":
        return "triton" if has_triton() and os.environ.get("TRITON_INTERPRET") != "1" else "torch"
    return choice
