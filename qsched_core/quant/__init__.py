"""Quantization for qsched: primitives, configs and presets, QuantLinear, activation statistics.

    from qsched_core.quant import QuantConfig, quantize_, fake_quantize
    model = quantize_(model, QuantConfig.from_name("w4a8"))

PTQ methods (rtn, gptq, awq, smoothquant, quarot, duquant) live one per file next to these modules and
build QuantLinear layers through `QuantLinear.from_linear(..., weight=, scale=, zero=)`.
"""
from .config import A_GRANULARITIES, FLOAT_BITS, PRESETS, QuantConfig
from .primitives import (MAX_BITS, MIN_BITS, check_bits, check_group_size, check_tensor, choose_qparams,
                         code_dtype, dequantize, fake_quantize, qrange, quant_error, quantize, round_ste,
                         snr_db)
from .qlinear import (QuantLinear, SizeReport, calibrate_activations, fp16_size_bytes, is_linear,
                      model_size_report, packed_size_bytes, quantize_)
from .stats import (ActStats, capture_inputs, collect_act_stats, is_linear_or_quant, outlier_summary,
                    record_act_stats)

__all__ = [
    "A_GRANULARITIES", "FLOAT_BITS", "PRESETS", "QuantConfig",
    "MAX_BITS", "MIN_BITS", "check_bits", "check_group_size", "check_tensor", "choose_qparams", "code_dtype",
    "dequantize", "fake_quantize", "qrange", "quant_error", "quantize", "round_ste", "snr_db",
    "QuantLinear", "SizeReport", "calibrate_activations", "fp16_size_bytes", "is_linear", "model_size_report",
    "packed_size_bytes", "quantize_",
    "ActStats", "capture_inputs", "collect_act_stats", "is_linear_or_quant", "outlier_summary", "record_act_stats",
]
