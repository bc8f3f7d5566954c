"""JAQScorer: named, pluggable objectives; gradients to images; judges loaded from local files only."""
import json
import math

import pytest
import torch

from qsched_core.jaq import JAQScorer, Judge, clip_iqa, clip_score, load_open_clip_judge, make_scorer


@pytest.fixture
def judge(tiny_clip, tokenizer):
    return Judge(tiny_clip, tokenizer, "tinyworld-clip")


@pytest.fixture
def batch():
    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return images, ["a red circle", "a blue star", "a green square", "a red star", "a small circle"]


def test_name_and_describe_record_the_objective(judge):
    scorer = make_scorer("jaq", judge)
    assert scorer.name == "jaq(k=2, tc=clipscore[tinyworld-clip], iq=clipiqa[tinyworld-clip])"
    assert make_scorer("clipscore", judge).name == "clipscore(tc=clipscore[tinyworld-clip])"
    assert make_scorer("iq", judge).name == "iq(iq=clipiqa[tinyworld-clip])"
    other = Judge(judge.model, judge.tokenizer, "ViT-L-14")
    assert make_scorer("jaq", other, k=0.5, iq_judge=judge).name == \
        "jaq(k=0.5, tc=clipscore[ViT-L-14], iq=clipiqa[tinyworld-clip])"
    info = scorer.describe()
    assert info["name"] == scorer.name and info["k"] == 2.0 and info["iq"] == "clipiqa"
    assert info["prompt_pairs"] == [["Good photo.", "Bad photo."]] and info["tc_floor"] == 1.0
    json.dumps(info)  # written into every result file


def test_scorer_matches_the_pure_functions(judge, batch):
    images, prompts = batch
    out = make_scorer("jaq", judge, k=2.0, batch_size=2)(images, prompts)
    tc = math.log(clip_score(judge.model, judge.tokenizer, images, prompts).mean().clamp(min=1.0).item())
    iq = clip_iqa(judge.model, judge.tokenizer, images).mean().item()
    assert set(out) == {"tc", "iq", "jaq"} and all(v.ndim == 0 for v in out.values())
    assert out["tc"].item() == pytest.approx(tc, abs=1e-4)
    assert out["iq"].item() == pytest.approx(iq, abs=1e-5)
    assert out["jaq"].item() == pytest.approx(tc + 2 * iq, abs=1e-4)


def test_kinds_and_k0(judge, batch):
    images, prompts = batch
    full = make_scorer("jaq", judge, k=0.0)(images, prompts)
    tc_only = make_scorer("clipscore", judge)(images, prompts)
    iq_only = make_scorer("iq", judge)(images, prompts)
    assert full["jaq"].item() == pytest.approx(tc_only["jaq"].item(), abs=1e-6)
    assert tc_only["jaq"].item() == pytest.approx(tc_only["tc"].item(), abs=1e-6)
    assert iq_only["jaq"].item() == pytest.approx(iq_only["iq"].item(), abs=1e-6)


def test_gradient_flows_to_images(judge, batch):
    images, prompts = batch
    images = images.clone().requires_grad_(True)
    make_scorer("jaq", judge, batch_size=2)(images, prompts)["jaq"].backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_pyiqa_iq_path_is_named_and_runs(judge, batch):
    pytest.importorskip("pyiqa")
    images, prompts = batch
    scorer = make_scorer("jaq", judge, iq="pyiqa-clipiqa")
    assert scorer.name == "jaq(k=2, tc=clipscore[tinyworld-clip], iq=pyiqa-clipiqa[tinyworld-clip])"
    out = scorer(images, prompts)
    assert 0 <= out["iq"].item() <= 1


@pytest.mark.parametrize("options, match", [
    (dict(kind="lpips"), "kind='lpips'"),
    (dict(kind="jaq", iq="brisque"), "iq='brisque'"),
    (dict(kind="jaq", k=-2.0), "k=-2.0"),
    (dict(kind="jaq", batch_size=0), "batch_size=0"),
    (dict(kind="jaq", iq="pyiqa-clipiqa", prompt_pairs=(("Sharp image", "blurry image"),)), "would be ignored"),
])
def test_invalid_options_raise(judge, options, match):
    with pytest.raises(ValueError, match=match):
        JAQScorer(judge=judge, **options)


def test_tuple_judge_is_accepted_and_junk_is_not(tiny_clip, tokenizer):
    assert make_scorer("jaq", (tiny_clip, tokenizer, "t")).judge.name == "t"
    with pytest.raises(ValueError, match="load_open_clip_judge"):
        make_scorer("jaq", tiny_clip)


def test_missing_weights_fail_with_instructions(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model hub is reachable"):
        load_open_clip_judge("ViT-B-32")
    with pytest.raises(FileNotFoundError, match="checkpoint_path"):
        load_open_clip_judge("ViT-L-14", tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="not an open_clip architecture"):
        load_open_clip_judge("ViT-Q-99", tmp_path / "missing.bin")
    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="weights file"):
        load_open_clip_judge(str(tmp_path))


def test_local_folder_judge_round_trips(tiny_clip, tmp_path):
    cfg = {"embed_dim": 32, "quick_gelu": True,
           "vision_cfg": {"layers": 1, "width": 64, "head_width": 64, "patch_size": 16, "image_size": 64},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}
    folder = tmp_path / "tinyworld-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {"size": 64}}))
    torch.save(tiny_clip.state_dict(), folder / "open_clip_pytorch_model.bin")
    loaded = load_open_clip_judge(str(folder))
    assert loaded.name == "tinyworld-clip" and not loaded.model.training
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    prompts = ["a red circle", "a blue star"]
    assert torch.allclose(clip_score(loaded.model, loaded.tokenizer, images, prompts),
                          clip_score(tiny_clip, loaded.tokenizer, images, prompts), atol=1e-5)
