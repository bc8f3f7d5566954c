"""Triton kernels for quantized inference (int4 packing, W4A16 / W8A8 GEMMs, per-token activation quantization).

`qsched_core` never imports Triton at module load: the layers pick a backend, "torch" (default, the reference
path built on `qsched_core.quant` primitives) or "triton", and `BACKEND_OVERRIDE` lets tests force either.
On a machine without a CUDA GPU, Triton kernels run only under `TRITON_INTERPRET=1` (slowly, for tests).

Files (one per kernel, each = `*_kernel` + a checking launcher + a `*_ref` built on `qsched_core.quant`):
  int4_pack.py   two int4 codes per byte (layout by worked example), Triton unpacker
  w4a16_gemv.py  int4 weights x fp16/bf16 activations at M <= 16: a split-K stream over int32 words of codes
  w4a16_gemv_f16x2.py  fp16 activations at M <= 2: dequantization and products two at a time in fp16x2 (inline
                 PTX, explicit Gluon layouts); the fastest M = 1 kernel measured here
  w4a16_tc_f16x2.py  fp16 activations from M = 3: the same fp16x2 dequantization feeding the tensor cores (weights
                 as the left operand, split-K); the fastest M = 3..16 kernel measured here, and at M = 128
                 (128-row blocks of x)
  w4a16_gemm.py  tiled, fused dequantization before tl.dot (M > 16; with split-K also M <= 16); `w4a16_gemm`
                 dispatches by M and runs the kernel its tuner timed fastest
  w4a16_dequant.py  large M: the fp16 weight written once, then cuBLAS (the fastest W4A16 path at M = 4096)
  w8a8_gemm.py   int8 x int8 on the tensor cores, per-token x per-channel scale epilogue; a persistent TMA variant
                 for large M
  w4a8_gemm.py   int4 weights x int8 activations, integer dot per group; dequantize + cuBLAS at large M
  act_quant.py   fused per-token dynamic int8 activation quantization
  fwht.py        Hadamard transform (QuaRot's online rotation) as two small dots per row (or per R rows)
  linear.py      which QuantConfig runs on which kernel; QuantLinear's triton forward
  bench.py       benchmarks vs cuBLAS and the copy bandwidth (`make bench`); report.py writes results/kernels.md,
                 bench_e2e.py times a transformer block, the tiny-world UNet and the tiny diffusion LM
  gemv_study.py  where the time of a W4A16 layer at M = 1 goes (a no-arithmetic stream vs the kernels; SASS
                 instruction counts without a GPU); launcher_overhead.py the Python time of one call
  _common.py     argument checks, `tune` (every config timed once per shape, CUDA-graph replays), rounding helper
This module imports nothing heavy: `kernel_mode` decides per call whether QuantLinear uses the kernels.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

BACKEND_OVERRIDE: str | None = None  # "torch" | "triton" | None (auto)


@lru_cache(maxsize=1)
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def has_triton() -> bool:
    """True when triton is importable and can run: a CUDA GPU is present, or TRITON_INTERPRET=1 is set."""
    if not _triton_importable():
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


def kernel_mode(requested: str, x) -> str | None:
    """How QuantLinear should run input x: None (torch path), "try" (a kernel if one fits the config, else torch:
    backend "auto" with a CUDA input) or "strict" (a kernel or a ValueError: backend "triton" was asked for)."""
    choice = BACKEND_OVERRIDE or requested
    if choice == "auto":
        return "try" if x.is_cuda and pick_backend("auto") == "triton" else None
    return "strict" if pick_backend(choice) == "triton" else None
