"""qsched_core: post-training quantization of few-step diffusion models, small enough to read.

Subpackages and modules (see README.md for the file map):
  quant/      quantization primitives, QuantConfig presets, QuantLinear, PTQ methods
  sched.py    Q-Sched: quantization-aware scheduler coefficients for LCM, TCD, Euler-A, flow matching
  jaq.py      the JAQ objective (text-image compatibility + k * image quality)
  search.py   coefficient search (grid with common random numbers, coarse-to-fine, gradient)
  metrics.py  FID, CLIP score, CLIP-IQA, attribute accuracy, bootstrap CIs
  tinyworld/  the embedded procedural world and its trained models
"""
import logging

import torch

from .utils import fast_mode, results_dir, set_seed

# bitsandbytes (pulled in by pyiqa) warns on import that an optional CPU kernel is unavailable offline; it is
# never used here, so keep the notebooks' output clean.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# Full float32 on GPUs. cuDNN's default lets float32 convolutions run in TF32 (inputs rounded to a 10-bit
# mantissa), so GPU numbers would differ from the CPU's by ~1e-3 relative per layer; a fake-quantized model turns
# such differences into flipped rounding decisions. scripts/batch_invariance.py measures what rounding alone does to
# JAQ (results/engine_batch_invariance.md). Matmuls are already full float32 by PyTorch's default; both are pinned.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

__all__ = ["fast_mode", "results_dir", "set_seed"]
