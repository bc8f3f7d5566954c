"""calibrate.py on the shipped tiny student: the quantized copy, the FP-vs-quantized trajectory, one search run
end to end, and the summary arithmetic on hand-made search results."""
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from qsched_core.calibrate import (
    CalibrationConfig,
    compare_methods,
    denoised_trajectory,
    fresh_check,
    grid_report,
    identity_point,
    load_or_calibrate,
    quantized_pipeline,
    trajectory_error,
)
from qsched_core.jaq import make_scorer
from qsched_core.quant import QuantLinear
from qsched_core.sampling import sample_lcm
from qsched_core.search import SearchConfig, SearchResult

PROMPTS = ["a small red circle on the left, on a plain white background",
           "a large blue star at the top, on a striped gray background"]


def _sample(pipe, steps=2, output="images"):
    with torch.no_grad():
        return sample_lcm(pipe, PROMPTS, num_steps=steps, guidance_scale=4.0,
                          generator=torch.Generator().manual_seed(0), output=output)


def test_quantized_pipeline_swaps_only_the_denoiser_linears(student):
    q = quantized_pipeline(student, "w4a8")
    assert not any(isinstance(m, nn.Linear) for m in q.unet.modules())  # every nn.Linear became a QuantLinear
    assert any(isinstance(m, QuantLinear) for m in q.unet.modules())
    assert not any(isinstance(m, QuantLinear) for m in student.unet.modules())  # the original is untouched
    assert q.vae is student.vae and q.text_encoder is student.text_encoder  # FP and shared, not copied
    assert torch.equal(q.unet.conv_in.weight, student.unet.conv_in.weight)  # convolutions stay FP
    assert q.scheduler is not student.scheduler


def test_fp_preset_reproduces_the_pipeline_and_w4a8_does_not(student):
    fp = _sample(student)
    assert torch.equal(_sample(quantized_pipeline(student, "fp")), fp)
    assert (_sample(quantized_pipeline(student, "w4a8")) - fp).abs().max() > 1e-3


def test_trajectory_matches_the_sampler_and_error_grows_with_fewer_bits(student):
    fp = denoised_trajectory(student, PROMPTS, num_steps=2, seed=0)
    assert fp.shape == (2, 2, 4, 16, 16)  # (N, B, C, h, w)
    with torch.no_grad():
        last = sample_lcm(student, PROMPTS, num_steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(0),
                          output="latents")
    assert torch.equal(fp[-1], last)  # the pipeline call and the search's sampler agree exactly
    assert trajectory_error(fp, fp) == [0.0, 0.0]
    err8 = trajectory_error(fp, denoised_trajectory(quantized_pipeline(student, "w8a8"), PROMPTS, 2, seed=0))
    err4 = trajectory_error(fp, denoised_trajectory(quantized_pipeline(student, "w4a8"), PROMPTS, 2, seed=0))
    assert all(0 < e8 < e4 for e8, e4 in zip(err8, err4)), (err8, err4)
    with pytest.raises(ValueError, match="same prompts"):
        trajectory_error(fp, fp[:1])


def test_calibration_result_records_setting_and_cost(tiny_grid):
    assert tiny_grid.method == "grid" and len(tiny_grid.points) == 9
    assert tiny_grid.network_evals == 9 * 2 * 2  # points x prompts x steps
    assert tiny_grid.best == max(tiny_grid.points, key=lambda p: p["jaq"])
    meta = tiny_grid.metadata
    assert meta["preset"] == "w4a8" and meta["pipeline"] == "tinyworld-lcm" and meta["quantize_convs"] is False
    assert meta["quant"].startswith("W4A8") and meta["cpu_time_s"] > 0 and meta["threads"] == 1
    assert tiny_grid.config["guidance_scale"] == 4.0  # the tiny student's default, from the hub registry
    assert "k=2" in tiny_grid.scorer and identity_point(tiny_grid) is not None


def test_calibration_config_rejects_what_the_search_cannot_run():
    with pytest.raises(ValueError, match="sample_lcm"):
        CalibrationConfig(pipeline="stabilityai/sdxl-turbo")
    with pytest.raises(ValueError, match="w4a8"):
        CalibrationConfig(preset="w5a8")
    with pytest.raises(ValueError, match="method"):
        CalibrationConfig(method="random")
    with pytest.raises(ValueError, match="grid_min"):
        CalibrationConfig(grid_min=1.3)


def test_fresh_check_compares_winner_and_identity(student, judge, tiny_grid):
    check = fresh_check(student, make_scorer("jaq", judge), tiny_grid, PROMPTS, seed=7)
    assert check["gain"] == pytest.approx(check["winner"]["jaq"] - check["identity"]["jaq"])
    assert check["n_prompts"] == 2 and set(check["identity"]) == {"tc", "iq", "jaq"}


def _result(method, points, nfe, wall, steps=4):
    cfg = SearchConfig(grid_points=3, num_steps=steps, method=method)
    best = max(points, key=lambda p: p["jaq"])
    edge = any(min(abs(best[k] - e) for e in (0.8, 1.2)) < 1e-6 for k in ("start_x", "start_eps"))
    return SearchResult(config=vars(cfg), scorer="jaq(k=2)", method=method, points=points, best=best,
                        wall_time_s=wall, network_evals=nfe, on_edge=edge)


def _pt(x, e, jaq):
    return {"start_x": x, "start_eps": e, "tc": jaq - 1.0, "iq": 0.5, "jaq": jaq}


def test_summary_arithmetic_on_hand_made_results():
    axis = (0.8, 1.0, 1.2)
    grid = _result("grid", [_pt(x, e, 6.0 + (0.1 if (x, e) == (1.0, 0.8) else 0.0) + 0.01 * x) for x in axis
                            for e in axis], nfe=900, wall=90.0)
    report = grid_report(grid)
    assert (report["best_start_x"], report["best_start_eps"]) == (1.0, 0.8) and report["on_edge"]
    assert report["gain_vs_identity"] == pytest.approx(0.1) and not report["winner_is_identity"]
    assert report["jaq_range"] == pytest.approx(6.11 - 6.008)
    close = _result("coarse_to_fine", [_pt(1.0, 1.0, 6.01), _pt(1.0, 0.8, 6.11)], nfe=80, wall=8.0)
    better = _result("gradient", [_pt(0.97, 0.85, 6.2)], nfe=40, wall=30.0)
    c2f, grad = compare_methods(grid, [close, better])
    assert c2f.gap_pct == pytest.approx(0.0, abs=1e-9) and c2f.nfe_fraction == pytest.approx(80 / 900)
    assert c2f.within and c2f.time_fraction == pytest.approx(8 / 90)
    assert grad.gap_pct < 0 and grad.within  # off-grid and higher than the grid's best
    assert c2f.gain_share == pytest.approx(1.0) and grad.gain_share > 1
    far = _result("gradient", [_pt(1.0, 1.0, 5.0)], nfe=40, wall=30.0)
    assert not compare_methods(grid, [far])[0].within
    # half of the gain is within 1 % of the grid's JAQ (the trivial criterion) but far from 90 % of its gain
    half = compare_methods(grid, [_result("coarse_to_fine", [_pt(1.0, 1.2, 6.06)], nfe=80, wall=8.0)])[0]
    assert half.gap_pct < 1.0 and half.gain_share == pytest.approx(0.5) and not half.within
    with pytest.raises(ValueError, match="same setting"):
        compare_methods(grid, [_result("gradient", [_pt(1.0, 1.0, 6.0)], 40, 3.0, steps=2)])
    assert math.isnan(grid_report(better)["identity_jaq"])  # (1, 1) never evaluated


def test_load_or_calibrate_reuses_only_a_matching_run(tmp_path, student, judge, tiny_grid, tiny_config):
    path = tiny_grid.save(tmp_path / "grid.json")
    same = load_or_calibrate(replace(tiny_config, threads=2), path, student, judge)
    assert same.points == tiny_grid.points and same.wall_time_s == tiny_grid.wall_time_s  # loaded, not rerun
    other = load_or_calibrate(replace(tiny_config, steps=1, n_prompts=1), path, student, judge)
    assert other.network_evals == 9 and other.config["num_steps"] == 1
