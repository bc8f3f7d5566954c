"""Calibration plumbing: input groups and their producers, statistics, recorded calls, the report."""
import gc
import mmap
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from qsched_core.quant import QuantConfig
from qsched_core.quant.calib import Call, collect_inputs, find_input_groups, record_calls
from qsched_core.quant.methods import apply_ptq, measure, model_outputs, output_error, quantizer_inputs

from ptq_models import block_batches, make_block


def test_block_groups_and_producers():
    groups = find_input_groups(make_block(), block_batches(1, 0))
    got = [(g.consumers, g.producer, g.kind, g.rows) for g in groups]
    assert got == [(("q_proj", "k_proj", "v_proj"), "attn_norm", "norm", None),
                   (("o_proj",), "v_proj", "linear", (0, 64)),
                   (("gate_proj", "up_proj"), "ff_norm", "norm", None),
                   (("down_proj",), "up_proj", "linear", (0, 128))]
    assert all(g.kind == "online" for g in find_input_groups(make_block(), block_batches(1, 0), fold=False))


def test_unet_groups(tiny_unet, unet_calls):
    groups = {g.consumers[0].split("transformer_blocks.0.")[-1]: g for g in find_input_groups(tiny_unet, unet_calls)}
    assert [n.rsplit(".", 1)[-1] for n in groups["attn1.to_q"].consumers] == ["to_q", "to_k", "to_v"]
    assert groups["attn1.to_q"].producer.endswith("norm1") and groups["attn2.to_q"].producer.endswith("norm2")
    assert groups["ff.net.2"].kind == "linear" and groups["ff.net.2"].rows == (0, 256)  # GEGLU value half
    assert groups["attn1.to_out.0"].producer.endswith("attn1.to_v")
    text = groups["attn2.to_k"]  # cross-attention K and V read the text embeddings: no producer in the UNet
    assert text.kind == "online" and all(n.endswith(("attn2.to_k", "attn2.to_v")) for n in text.consumers)
    proj_in = next(g for name, g in groups.items() if name.endswith("proj_in"))
    assert isinstance(tiny_unet.get_submodule(proj_in.producer), nn.GroupNorm)
    assert groups["time_embedding.linear_1"].kind == "online"


def test_collect_inputs_statistics():
    model = nn.Sequential(nn.Linear(8, 4))
    batches = [torch.randn(3, 5, 8) for _ in range(2)]
    groups = find_input_groups(model, batches)
    st = collect_inputs(model, groups, batches, tokens_per_call=5, hessian=True)[0]
    x = torch.cat([b.reshape(-1, 8) for b in batches])  # (30, 8)
    assert st.n_tokens == 30 and st.x.shape == (10, 8)  # every 3rd row of each 15-row call
    assert torch.allclose(st.absmax, x.abs().amax(0)) and torch.allclose(st.absmean, x.abs().mean(0))
    assert torch.allclose(st.hessian(), 2 * x.double().T @ x.double() / 30)


def test_quantizer_inputs_sees_the_online_rotation():
    model, x = nn.Sequential(nn.Linear(16, 8)), torch.randn(5, 16)
    q, _ = apply_ptq(model, "quarot", QuantConfig.from_name("fp"), [x])
    seen = quantizer_inputs(q, ["0"], x)["0"]
    assert torch.allclose(seen, x @ q[0].act_transform.matrix(), atol=1e-5)
    assert torch.allclose(quantizer_inputs(nn.Sequential(nn.Linear(16, 8)), ["0"], x)["0"], x)


def test_record_calls_and_output_error(tiny_unet, unet_calls):
    calls = record_calls(tiny_unet, lambda: [tiny_unet(*c.args, **c.kwargs) for c in unet_calls])
    assert len(calls) == 2 and isinstance(calls[0], Call) and torch.equal(calls[1].args[0], unet_calls[1].args[0])
    assert output_error(tiny_unet, tiny_unet, calls) == 0.0
    outs = model_outputs(tiny_unet, calls)
    assert len(outs) == 2 and outs[0].shape == (2, 4, 8, 8)
    runs = []
    model_outputs(tiny_unet, lambda m: runs.append(m(*unet_calls[0].args, **unet_calls[0].kwargs)))
    assert len(runs) == 1  # a callable calibration runs the model itself


@pytest.mark.parametrize("calib", [None, [], torch.randn(4, 8), "x"], ids=["none", "empty", "tensor", "str"])
def test_missing_calibration_is_a_clear_error(calib):
    with pytest.raises(ValueError, match="calibration data .* missing or not a list"):
        apply_ptq(nn.Sequential(nn.Linear(8, 4)), "smoothquant", QuantConfig.from_name("w8a8"), calib)


def test_layers_that_never_run_are_named():
    model = nn.ModuleDict(dict(a=nn.Linear(8, 8), unused=nn.Linear(8, 8)))
    model.forward = lambda x: model["a"](x)
    with pytest.raises(ValueError, match=r"linears \['unused'\] never ran"):
        apply_ptq(model, "awq", QuantConfig.from_name("w4a16-g128", w_group_size=8), [torch.randn(4, 8)])


def test_report_rows_csv_and_measure(tmp_path):
    _, report = apply_ptq(make_block(), "smoothquant", QuantConfig.from_name("w8a8"), block_batches(2, 0))
    rows = report.rows()
    assert [r["name"] for r in rows][:3] == ["q_proj", "k_proj", "v_proj"]
    assert rows[0]["transform"] == "smooth fold -> attn_norm" and rows[0]["alpha"] == 0.5
    assert rows[3]["transform"] == "smooth fold -> v_proj[0:64]"
    assert report.to_csv(tmp_path / "r.csv").read_text().startswith("name,shape,transform,rel_err,rel_err_rtn")
    assert "smoothquant w8a8: 7 layers" in str(report) and report.summary()["layers"] == 7
    gc.collect()
    with measure() as m:
        # 64 MB of fresh pages: an anonymous mapping, one byte written per page, so the resident set must grow (a
        # tensor could reuse memory an earlier test freed but the allocator kept resident: no growth to see)
        block = mmap.mmap(-1, 64 * 2**20)
        pages = np.frombuffer(block, dtype=np.uint8)
        pages[::4096] = 1
        seen, deadline = m.samples, time.monotonic() + 10
        while m.samples < seen + 2 and time.monotonic() < deadline:  # wait for the sampler, however busy the machine
            time.sleep(0.005)
        assert m.samples >= seen + 2, "the RSS sampler thread took no sample in 10 s"
        del pages
        block.close()
    assert m.seconds >= 0.005 and m.peak_mem_mb > 40
