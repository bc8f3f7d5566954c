"""QuantLinear on the Triton kernels: which config runs on which kernel, the packed weights, and the forward pass.

`QuantLinear.forward` (qsched_core/quant/qlinear.py) calls `quant_linear_forward` when `kernels.use_kernels` says
so (a CUDA input and backend "auto", or backend / BACKEND_OVERRIDE "triton"). The torch path stays the reference:

    | config (QuantConfig)                                   | kernels                          |
    |--------------------------------------------------------|----------------------------------|
    | w4 a16, G in {32, 64k, -1}, sym or asym (w4a16-g128)   | w4a16_gemm                       |
    | w4 a8 per-token, sym weights, G as above (w4a8)        | act_quant_int8 + w4a8_gemm       |
    | w8 a8 per-token, sym per-channel weights (w8a8)        | act_quant_int8 + w8a8_gemm       |

Anything else (w3, w4a4, w8a16, static per-tensor activations, fp32 inputs, inputs that need a gradient) has no
kernel: with backend "auto" the layer falls back to the torch path, with "triton" it raises and says why.

The packed tensors are built once per layer and device, from the layer's codes and scales, and cached on the layer
(`_kernel_pack`); the unpacked int8 codes stay, since the torch path and the PTQ methods read them. Scales are
stored as fp16 (the usual int4 format); with summation order and, for int8 activations, a code one level away at
exact rounding ties (act_quant.py), that is all that differs from the fake-quant path. Measured on a LLaDA-8B-sized
block on an H200: relative difference 1.5e-5..6.2e-4 (W4A16), 2e-3..5e-3 (W8A8, W4A8), 10x below the quantization error
itself; tests/kernels/test_kernels_linear.py holds every preset to 1% of max|y|.

Notation: x (..., K) -> y (..., N); weight (N, K); G = w_group_size.
"""
from __future__ import annotations

import torch

from ._common import FLOAT_ACTS, PACK_BLOCK
from .act_quant import act_quant_int8
from .int4_pack import pack_int4_weight
from .w4a8_gemm import w4a8_gemm
from .w4a16_gemm import w4a16_gemm
from .w8a8_gemm import w8a8_gemm


def kernel_for(layer, x: torch.Tensor | None = None) -> tuple[str | None, str]:
    """(kernel name or None, reason) for a QuantLinear and an input."""
    cfg, k = layer.cfg, layer.in_features
    if x is not None and x.numel() == 0:
        return None, "the input is empty"
    if x is not None and x.dtype not in FLOAT_ACTS:
        return None, f"input dtype {x.dtype}: the kernels take float16 / bfloat16 (cast the model with .half())"
    if x is not None and torch.is_grad_enabled() and x.requires_grad:
        return None, "the input needs a gradient and the kernels have no backward (use torch.no_grad())"
    if layer._observed is not None:
        return None, "the layer is calibrating (float inputs are observed, not quantized)"
    acts = cfg.a_bits == 16 or (cfg.a_bits == 8 and cfg.a_granularity == "per_token")
    if not acts:
        return None, f"{cfg.name}: activations must be fp16 or int8 per-token (a_bits={cfg.a_bits}, " \
                     f"{cfg.a_granularity})"
    g = cfg.w_group_size
    if cfg.w_bits == 4:
        if not (g == -1 or g == 32 or (g > 0 and g % PACK_BLOCK == 0)) or (g > 0 and k % g):
            return None, f"{cfg.name}: int4 kernels need w_group_size 32, a multiple of 64 or -1 dividing K={k}"
        if cfg.a_bits == 16:
            return "w4a16", ""
        return ("w4a8", "") if cfg.w_symmetric else (None, "w4a8 needs symmetric int4 weights")
    if cfg.w_bits == 8 and cfg.a_bits == 8 and g == -1 and cfg.w_symmetric:
        return "w8a8", ""
    return None, f"{cfg.name}: no kernel for w{cfg.w_bits}a{cfg.a_bits} with w_group_size={g}"


def packed_weights(layer) -> dict[str, torch.Tensor]:
    """The tensors the kernel reads (built on first use and cached; rebuilt if the codes change or move)."""
    key = (layer.qweight.device, layer.qweight.data_ptr(), layer.qweight._version)
    cached = layer.__dict__.get("_kernel_pack")
    if cached is not None and cached[0] == key:
        return cached[1]
    name, reason = kernel_for(layer)
    if name is None:
        raise ValueError(f"QuantLinear({layer.extra_repr()}) has no kernel: {reason}")
    if name == "w8a8":
        pack = {"qw": layer.qweight.contiguous(), "sw": layer.w_scale.float().contiguous()}
    else:
        qweight, scales, zeros = pack_int4_weight(layer.qweight, layer.w_scale, layer.w_zero, layer.cfg.w_symmetric)
        pack = {"qweight": qweight, "scales": scales}
        if zeros is not None:
            pack["zeros"] = zeros
    if layer.bias is not None:
        pack["bias"] = layer.bias.float().contiguous()
    layer.__dict__["_kernel_pack"] = (key, pack)
    return pack


def packed_nbytes(layer) -> int:
    """Bytes of the packed weight tensors (codes + scales + zeros, no bias): what a deployment keeps in memory."""
    return sum(t.numel() * t.element_size() for n, t in packed_weights(layer).items() if n != "bias")


def quant_linear_forward(layer, x: torch.Tensor, strict: bool = False) -> torch.Tensor | None:
    """y = layer(x) on the kernels; None (fall back to torch) when no kernel fits, or a ValueError if strict."""
    name, reason = kernel_for(layer, x)
    if name is None and x.numel() == 0:
        return None  # the torch path handles an empty batch
    if name is None:
        if strict:
            raise ValueError(f"backend='triton' cannot run QuantLinear({layer.extra_repr()}): {reason}; "
                             f"use backend='auto' to fall back to the torch path")
        return None
    p, cfg = packed_weights(layer), layer.cfg
    bias = p.get("bias")
    if name == "w4a16":
        return w4a16_gemm(x, p["qweight"], p["scales"], p.get("zeros"), cfg.w_group_size, bias)
    qx, sx, zx = act_quant_int8(x, cfg.a_symmetric, cfg.a_clip_ratio, cfg.a_scale_rule)  # (M, K) int8
    zx = None if cfg.a_symmetric else zx
    if name == "w4a8":
        y = w4a8_gemm(qx, sx, zx, p["qweight"], p["scales"], cfg.w_group_size, bias, out_dtype=x.dtype)
    else:
        y = w8a8_gemm(qx, sx, zx, p["qw"], p["sw"], bias, out_dtype=x.dtype)
    return y.reshape(*x.shape[:-1], layer.out_features)  # (M, N) -> (..., N)
