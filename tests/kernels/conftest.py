"""Kernel tests run on a CUDA GPU, or on the CPU through the Triton interpreter (set here before triton loads).

Shapes: the CPU grid is tiny (the interpreter runs numpy per program); tests marked `gpu` add the full grid.
Shared helpers live in kernel_helpers.py (a conftest cannot be imported by name: tests/ has one too).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before the first `import triton`

pytest.importorskip("triton")
