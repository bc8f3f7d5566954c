"""PTQ baseline rows: settings validation, PTQD's fit and correction, a PTQ row through the runner."""
import dataclasses

import pytest
import torch
from torch import nn

import qsched_core.evaluate.ptq as ptq
from qsched_core.evaluate import Setting, default_pairs, diagnostics, paired_diffs, run_settings
from qsched_core.quant.calib import Call


def _quiet(*_):
    pass


@pytest.mark.parametrize("kwargs", [dict(preset="w4a8", ptq="awq-ish"), dict(preset="fp", ptq="gptq"),
                                    dict(preset="w4a8", ptq="smoothquant", quantize_convs=True)])
def test_bad_ptq_settings_name_the_value(kwargs):
    with pytest.raises(ValueError, match="ptq="):
        Setting(**kwargs)


def test_labels_and_pairs_of_ptq_rows():
    fp, rtn = Setting("fp", 4), Setting("w4a8", 4)
    sq, sq_q = Setting("w4a8", 4, ptq="smoothquant"), Setting("w4a8", 4, "qsched", ptq="smoothquant")
    assert (sq.label, sq_q.label) == ("SmoothQuant W4A8", "Q-Sched + SmoothQuant W4A8")
    pairs = default_pairs([fp, rtn, sq, sq_q])
    assert (sq, fp) in pairs and (sq, rtn) in pairs and (sq_q, sq) in pairs and (rtn, fp) in pairs


class _Eps(nn.Module):
    """A stand-in 'UNet' (sample, timestep) -> eps, with a known distortion when `k`, `b` are set."""
    def __init__(self, k=0.0, b=None):
        super().__init__()
        self.k, self.b = k, b

    def forward(self, sample, timestep):
        eps = torch.tanh(sample)
        if self.b is not None:
            eps = eps * (1 + self.k * timestep / 1000) + self.b.view(1, -1, 1, 1) * timestep / 1000
        return (eps,)


def test_ptqd_recovers_a_planted_linear_error_per_timestep():
    gen = torch.Generator().manual_seed(0)
    b = torch.tensor([0.1, -0.2, 0.05, 0.3])
    fp, q = _Eps(), _Eps(k=0.2, b=b)
    calls = [Call((torch.randn(3, 4, 5, 5, generator=gen), torch.tensor(t)), {}) for t in (999, 499) for _ in range(2)]
    fit = ptq.fit_ptqd(fp, q, calls)
    assert sorted(fit) == [499, 999]
    k, bias = fit[999]
    assert abs(k - 0.2 * 0.999) < 1e-4 and torch.allclose(bias, b * 0.999, atol=1e-4)
    ptq.add_ptqd_correction(q, fit)
    x = torch.randn(2, 4, 5, 5, generator=gen)
    assert torch.allclose(q(x, torch.tensor(499))[0], fp(x, torch.tensor(499))[0], atol=1e-4)
    with pytest.raises(ValueError, match="t=250"):
        q(x, torch.tensor(250))


def test_ptq_row_runs_and_records_its_calibration(models, cfg, monkeypatch):
    monkeypatch.setattr(ptq, "PTQ_CALIB_PROMPTS", 2)
    cfg = dataclasses.replace(cfg, n_prompts=2)
    cells = run_settings([Setting("w4a8", 1, ptq="ptqd"), Setting("w4a8", 1), Setting("fp", 1)], cfg, models, log=_quiet)
    row, rtn, _ = cells
    assert row.size["ptq"] == "ptqd" and row.size["ptq_calib_calls"] == 1 and len(row.size["ptqd_k"]) == 1
    assert abs(row.size["size_mb"] - rtn.size["size_mb"]) < 1e-9  # a correction, not extra weights
    assert (row.images != rtn.images).any()  # the correction changes the samples
    diag = {r["method"]: r for r in diagnostics(cells)}  # a PTQ row finds its FP twin for the pixel distance
    assert diag["PTQD W4A8"]["pixel_rmse_vs_fp"] > 0
    assert {r["comparison"] for r in paired_diffs(cells, models.ref, n_boot=20, fid_boot=2)} == {
        "PTQD W4A8 - FP", "PTQD W4A8 - naive W4A8", "naive W4A8 - FP"}


def test_a_plain_row_never_reuses_a_ptq_rows_search():
    from types import SimpleNamespace

    import qsched_core.evaluate.runner as ev
    from qsched_core.search import SearchConfig

    scfg = SearchConfig(num_prompts=1, grid_points=3, num_steps=1)
    saved = SimpleNamespace(config=dataclasses.asdict(scfg), scorer="jaq",
                            metadata={"prompts": ["p"], "preset": "w4a8", "ptq": "gptq"})
    assert ev._same_search(saved, scfg, "jaq", ["p"], {"preset": "w4a8", "ptq": "gptq"})
    assert not ev._same_search(saved, scfg, "jaq", ["p"], {"preset": "w4a8"})  # the plain (RTN) row
