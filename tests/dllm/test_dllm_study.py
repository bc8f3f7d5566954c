"""The study's quantizer conventions, the grid, the Q/K/V quantizers and one tiny end-to-end PTQ job."""
import torch

from qsched_core.dllm.attn_quant import AttnActQuant
from qsched_core.dllm.model import save_safetensors
from qsched_core.dllm.study import (
    StudyConfig,
    grid,
    quant_config,
    quantize_model,
    run_study,
)


def test_quantizer_conventions():
    w4 = quant_config("gptq", "w4a16")
    assert (w4.w_bits, w4.w_group_size, w4.w_symmetric, w4.quantize_activations) == (4, 128, False, False)
    sq = quant_config("smoothquant", "w4a4")
    assert (sq.w_group_size, sq.w_symmetric, sq.a_symmetric, sq.a_granularity) == (-1, False, False, "per_token")
    qr = quant_config("quarot", "w8a8")
    assert qr.w_symmetric and qr.a_symmetric
    du = quant_config("duquant", "w4a4")
    assert (du.w_clip_ratio, du.a_clip_ratio) == (0.8, 0.9)


def test_grid_counts():
    jobs = grid(StudyConfig())
    assert len([j for j in jobs if j.method == "fp"]) == 2
    # per model: RTN x 4 settings once, 10 (method, setting) pairs x 3 seeds
    assert len(jobs) == 2 + 2 * (4 + 10 * 3)


def test_attention_quantizers_keep_scores_at_high_bits():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 64) for _ in range(3))
    scores = q @ k.transpose(-1, -2)
    for style, tol in (("per_head", 0.05), ("quarot", 0.05), ("duquant", 0.3)):  # DuQuant clips Q, K at 0.9
        q2, k2, v2 = AttnActQuant(8, style)(q, k, v)
        err = (q2 @ k2.transpose(-1, -2) - scores).norm() / scores.norm()
        assert err < tol, f"{style}: relative score error {err:.3f}"
        torch.testing.assert_close(v2, v, atol=0.05, rtol=0.05)


def test_tiny_end_to_end_job(tiny_model, tmp_path):
    save_safetensors(tiny_model, tmp_path / "base.safetensors", dtype=torch.float32)
    cfg = StudyConfig(model_dir=str(tmp_path), models=("base",), settings=("w4a4",), methods=("smoothquant",),
                      seeds=(0,), n_items=2, mc_num=2, n_calib=4, calib_batch=4, out=str(tmp_path / "r.jsonl"))
    model, report = quantize_model(tiny_model, "smoothquant", "w4a4", 0, cfg)
    assert report.fp_max_abs_diff < 1e-4 and len(report.layers) == 7  # transforms alone keep FP logits
    assert model.blocks[0].attn_act_quant is not None
    rows = run_study(cfg)
    assert [r["key"] for r in rows] == ["base/fp/fp/0", "base/smoothquant/w4a4/0"]
    assert all(len(r["items"]["qa"]) == 2 for r in rows)
    assert run_study(cfg) == rows  # resumes: nothing left to run


def test_workers_that_evaluate_match_the_serial_run(tiny_model, tmp_path):
    save_safetensors(tiny_model, tmp_path / "base.safetensors", dtype=torch.float32)
    kw = dict(model_dir=str(tmp_path), models=("base",), settings=("w4a4",), methods=("rtn", "smoothquant"),
              seeds=(0,), n_items=2, mc_num=2, n_calib=4, calib_batch=4)
    serial = run_study(StudyConfig(**kw, out=str(tmp_path / "serial.jsonl")))
    par = run_study(StudyConfig(**kw, workers=2, eval_in_workers=True, out=str(tmp_path / "par.jsonl")))
    assert "error" not in str(par)
    key = lambda r: (r["key"], r["items"], r["acc"])
    assert sorted(map(key, par)) == sorted(map(key, serial))
