"""Quantization for qsched: primitives, configs and presets, QuantLinear, activation statistics.

    from qsched_core.quant import QuantConfig, quantize_, fake_quantize
    model = quantize_(model, QuantConfig.from_name("w4a8"))

PTQ methods (rtn, gptq, awq, smoothquant, quarot, duquant) live one per file next to these modules and
build QuantLinear layers through `QuantLinear.from_linear(..., weight=, scale=, zero=, act_transform=)`:

    model, report = apply_ptq(model, "gptq", QuantConfig.from_name("w4a16-g128"), calib_batches)
"""
from .config import A_GRANULARITIES, FLOAT_BITS, PRESETS, QuantConfig
from .primitives import (MAX_BITS, MIN_BITS, check_bits, check_group_size, check_tensor, choose_qparams,
                         code_dtype, dequantize, fake_quantize, qrange, quant_error, quantize, round_ste,
                         snr_db)
from .qlinear import (QuantLinear, SizeReport, calibrate_activations, fp16_size_bytes, is_linear,
                      model_size_report, packed_size_bytes, quantize_)
from .stats import (ActStats, capture_inputs, collect_act_stats, is_linear_or_quant, outlier_summary,
                    record_act_stats)
from .calib import Call, InputGroup, InputStats, collect_inputs, find_input_groups, record_calls
from .methods import METHODS, LayerReport, PTQReport, apply_ptq, output_error, quantizer_inputs
from .rtn import rtn_quantize
from .gptq import gptq_quantize, gptq_weight
from .awq import awq_quantize
from .smoothquant import smoothquant_quantize
from .quarot import quarot_quantize
from .duquant import duquant_quantize
from .hadamard import hadamard_matrix, random_hadamard

__all__ = [
    "A_GRANULARITIES", "FLOAT_BITS", "PRESETS", "QuantConfig",
    "MAX_BITS", "MIN_BITS", "check_bits", "check_group_size", "check_tensor", "choose_qparams", "code_dtype",
    "dequantize", "fake_quantize", "qrange", "quant_error", "quantize", "round_ste", "snr_db",
    "QuantLinear", "SizeReport", "calibrate_activations", "fp16_size_bytes", "is_linear", "model_size_report",
    "packed_size_bytes", "quantize_",
    "ActStats", "capture_inputs", "collect_act_stats", "is_linear_or_quant", "outlier_summary", "record_act_stats",
    "Call", "InputGroup", "InputStats", "collect_inputs", "find_input_groups", "output_error", "quantizer_inputs",
    "record_calls",
    "METHODS", "LayerReport", "PTQReport", "apply_ptq", "rtn_quantize", "gptq_quantize", "gptq_weight",
    "awq_quantize", "smoothquant_quantize", "quarot_quantize", "duquant_quantize", "hadamard_matrix",
    "random_hadamard",
]
