"""The PTQ report measures on held-out inputs: `apply_ptq(..., eval_batches=)` adds per-layer
and per-model errors on inputs the method never saw, next to RTN's, and the number of calibration tokens.
The case that motivated it: GPTQ calibrated on 8 tokens looks 4x better than RTN on its calibration rows and
is worse than RTN on new rows."""
import copy

import pytest
import torch
from torch import nn

from qsched_core.quant import QuantConfig, apply_ptq
from robust_helpers import clear


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(64, 64, generator=g)  # correlated input channels, as real activations have
    calib = [torch.randn(8, 64, generator=g) @ mix]  # 8 tokens for K = 64 inputs: GPTQ's Hessian is rank 8
    held_out = [torch.randn(256, 64, generator=g) @ mix]
    return model, calib, held_out, QuantConfig.from_name("w4a16-g128", w_group_size=32)


def test_gptq_with_few_tokens_wins_on_calibration_rows_and_loses_on_held_out_rows():
    model, calib, held_out, cfg = setup()
    _, report = apply_ptq(copy.deepcopy(model), "gptq", cfg, calib, eval_batches=held_out)
    h = report.heldout
    assert h["calib_tokens"] == 8 and h["eval_tokens"] == 256
    assert report.mean_error() < 0.5 * report.mean_error(rtn=True)  # calibration rows: GPTQ looks far better
    assert h["model_err"] > h["model_err_rtn"]  # held-out rows: it is worse than RTN
    assert "held-out (256 rows; calibrated on 8 rows)" in str(report)


def test_rtn_held_out_errors_equal_its_own_baseline():
    model, calib, held_out, cfg = setup()
    _, report = apply_ptq(copy.deepcopy(model), "rtn", cfg, calib, eval_batches=held_out)
    h = report.heldout
    assert h["model_err"] == h["model_err_rtn"] > 0
    assert all(v["rel_err"] == v["rel_err_rtn"] for v in h["layers"].values()) and len(h["layers"]) == 2


def test_calibration_rows_cannot_be_passed_as_held_out():
    model, calib, _, cfg = setup()
    clear(lambda: apply_ptq(model, "gptq", cfg, calib, eval_batches=calib), "eval_batches is calib_batches")


@pytest.mark.parametrize("method", ["smoothquant", "awq"])
def test_held_out_errors_work_with_folding_methods(method):
    model, calib, held_out, _ = setup()
    model = nn.Sequential(nn.LayerNorm(64), *model)  # a norm to fold the scales into
    cfg = QuantConfig.from_name("w8a8") if method == "smoothquant" else QuantConfig.from_name("w4a16-g128",
                                                                                           w_group_size=32)
    _, report = apply_ptq(copy.deepcopy(model), method, cfg, calib * 4, eval_batches=held_out)
    assert 0 < report.heldout["model_err"] < 1 and len(report.heldout["layers"]) == 2
