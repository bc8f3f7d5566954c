"""QuantLinear's backend switch: the Triton path equals the fake-quant torch path within a stated tolerance.

Tolerance: max |y_triton - y_torch| <= 1% of max |y_torch|. Sources of difference: fp16 weight scales (2^-11
relative), fp16/bf16 rounding of the torch path's fake-quantized activations and weights before its matmul, and
summation order. A wrong scale or a wrong code layout gives errors of 10-100%.
"""
import pytest
import torch
import torch.nn as nn
from kernel_helpers import DEVICE, assert_close_report

import kernels
from kernels.linear import kernel_for, packed_nbytes
from qsched_core.quant.config import QuantConfig
from qsched_core.quant.qlinear import QuantLinear

PRESETS = ["w4a16-g128", "w4a8", "w8a8", ("w4a16-g128", dict(w_group_size=-1, w_symmetric=True)),
           ("w4a8", dict(w_group_size=64))]


def _layer(preset, k=256, n=72):
    name, over = (preset, {}) if isinstance(preset, str) else preset
    lin = nn.Linear(k, n)
    return QuantLinear.from_linear(lin, QuantConfig.from_name(name, **over)).to(DEVICE)


@pytest.mark.parametrize("preset", PRESETS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_triton_equals_fake_quant(preset, dtype):
    torch.manual_seed(0)
    layer = _layer(preset)
    x = torch.randn(2, 5, 256).to(dtype).to(DEVICE)  # (B, T, K): leading dims are flattened and restored
    with torch.no_grad():
        layer.backend = "torch"
        ref = layer(x)
        layer.backend = "triton"
        out = layer(x)
    assert kernel_for(layer, x)[0] is not None
    assert_close_report(out, ref, 0.01, f"QuantLinear {preset} {dtype}")


def test_backend_switch_rules():
    layer = _layer("w4a16-g128")
    x = torch.randn(3, 256).half().to(DEVICE)
    assert kernels.kernel_mode("torch", x) is None
    if not x.is_cuda:
        assert kernels.kernel_mode("auto", x) is None  # the CPU default stays the torch reference
    layer.backend = "triton"
    with pytest.raises(ValueError, match="float16 / bfloat16"):
        layer(torch.randn(3, 256).to(DEVICE))  # fp32 input has no kernel: explicit triton says why
    w3 = QuantLinear.from_linear(nn.Linear(256, 8), QuantConfig.from_name("w3a16-g128")).to(DEVICE)
    w3.backend = "triton"
    with pytest.raises(ValueError, match="no kernel"):
        w3(x)
    w3.backend = "auto"
    assert w3(x).shape == (3, 8)


def test_packed_memory_target():
    """Packed W4 g128 weights (codes + fp16 scales + zeros) are <= 0.27x of the fp16 weight."""
    layer = _layer("w4a16-g128", k=1024, n=256)
    assert packed_nbytes(layer) / (1024 * 256 * 2) <= 0.27

