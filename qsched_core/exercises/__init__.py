"""Checks for the notebooks' exercises: write your answer, run `check_...(answer, ...)`, read the verdict.

Every exercise whose answer is a number or a function has a check here (basics.py: notebooks 00-02, qsched.py:
03-05, kernels.py: 07). A check recomputes the answer from the same objects the notebook holds (the layer, the
calibration data, the judge, the scheduler, the measured table), compares, and prints one line: a tick and what
the number means, or a cross and a hint that points at the mistake without giving the answer away. It returns
True or False, so a cell can also `assert` it. An answer left as `...` (the stub in the notebook) prints what to
fill in; nothing raises, so the notebooks still run top to bottom.

The worked solutions sit under each exercise in a collapsed "Solution" block; the checks are the way to know
you got there on your own.
"""
from ..quant.primitives import quant_error
from .basics import (BLUR_STRENGTHS, CLIP_RATIOS, SMOOTHQUANT_ALPHAS, check_best_clip_ratio, check_fake_quantize,
                     check_gptq_act_order, check_iqa_vs_blur, check_last_layer_share, check_quarot_seeds,
                     check_smoothquant_alpha, last_layer_share, smoothquant_alpha_errors)
from .kernels import check_packed_bytes, check_ridge_batch, check_scale_column, ridge_batch
from .qsched import (check_cx_gains, check_fid_floor_fit, check_grid_nfe, check_jaq_tie_k, check_paired_bootstrap,
                     check_ramp, check_significant_recipes, cx_gains, fid_floor_fit, jaq_tie_k, significant_recipes)

__all__ = ["BLUR_STRENGTHS", "CLIP_RATIOS", "SMOOTHQUANT_ALPHAS", "check_best_clip_ratio", "check_cx_gains",
           "check_fake_quantize", "check_fid_floor_fit", "check_gptq_act_order", "check_grid_nfe",
           "check_iqa_vs_blur", "check_jaq_tie_k", "check_last_layer_share", "check_packed_bytes",
           "check_paired_bootstrap", "check_quarot_seeds", "check_ramp", "check_ridge_batch", "check_scale_column",
           "check_significant_recipes", "check_smoothquant_alpha", "cx_gains", "fid_floor_fit", "jaq_tie_k",
           "last_layer_share", "quant_error", "ridge_batch", "significant_recipes", "smoothquant_alpha_errors"]
