"""The procedural world: reproducible scenes and images, invertible captions, disjoint splits, the tokenizer."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsched_core.tinyworld.render import DEGRADATIONS, degrade, render
from qsched_core.tinyworld.tokenizer import load_tokenizer
from qsched_core.tinyworld.world import (
    BACKGROUNDS,
    COLORS,
    LAYOUTS,
    SHAPES,
    SINGLE_POSITIONS,
    SIZES,
    TEXTURES,
    Obj,
    Scene,
    calib_prompts,
    eval_prompts,
    parse_caption,
    sample_scenes,
    split_of,
)

objs = st.builds(Obj, st.sampled_from(SHAPES), st.sampled_from(COLORS), st.sampled_from(SIZES))


@st.composite
def scenes(draw) -> Scene:
    layout = draw(st.sampled_from(LAYOUTS))
    n = 1 if layout in SINGLE_POSITIONS else 2
    return Scene(layout, tuple(draw(objs) for _ in range(n)), draw(st.sampled_from(BACKGROUNDS)),
                 draw(st.sampled_from(TEXTURES)))


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_scenes_and_images():
    a, b = sample_scenes(32, "eval", seed=3), sample_scenes(32, "eval", seed=3)
    assert a == b and [s.caption for s in a] == [s.caption for s in b]
    x = render(a, torch.Generator().manual_seed(5))
    assert torch.equal(x, render(b, torch.Generator().manual_seed(5)))
    assert sample_scenes(32, "eval", seed=4) != a
    assert not torch.equal(x, render(a, torch.Generator().manual_seed(6)))  # jitter follows the generator


def test_prompt_sets_are_reproducible():
    assert eval_prompts(20, seed=1) == eval_prompts(20, seed=1) != eval_prompts(20, seed=2)
    assert calib_prompts(5) == calib_prompts(5)


# ------------------------------------------------------------------------------------------ captions
@settings(max_examples=200, deadline=None)
@given(scenes())
def test_parse_caption_inverts_caption_of(scene):
    assert parse_caption(scene.caption) == scene


@pytest.mark.parametrize("text", ["a photo of a cat", "a huge red circle on the left, on a plain white background",
                                  "a small red circle on the moon, on a plain white background",
                                  "a small red circle on the left, on a plain white wall", ""])
def test_parse_caption_rejects_other_text(text):
    with pytest.raises(ValueError, match="tiny-world"):
        parse_caption(text)


def test_scene_rejects_wrong_object_count():
    with pytest.raises(ValueError, match="layout"):
        Scene("left-right", (Obj("circle", "red", "small"),), "white", "plain")
    with pytest.raises(ValueError, match="layout"):
        Scene("diagonal", (Obj("circle", "red", "small"),), "white", "plain")


# -------------------------------------------------------------------------------------------- splits
def test_splits_are_disjoint_and_held_out_combinations_never_train():
    captions = {split: {s.caption for s in sample_scenes(n, split, seed=0)}
                for split, n in (("train", 3000), ("calib", 300), ("eval", 600))}
    assert not captions["train"] & captions["calib"]
    assert not captions["train"] & captions["eval"]
    assert not captions["calib"] & captions["eval"]
    assert not any(parse_caption(c).held_out() for c in captions["train"])
    assert {split_of(s) for s in calib_prompts(50)} == {"calib"}


@pytest.mark.parametrize("held_out", [False, True])
def test_eval_prompts_are_eval_split_and_held_out_as_asked(held_out):
    prompts = eval_prompts(200, seed=0, held_out=held_out)
    assert {split_of(s) for s in prompts} == {"eval"}
    assert {s.held_out() for s in prompts} == {held_out}
    n_two = sum(s.n_objects == 2 for s in prompts)
    assert 60 < n_two < 140  # about half one-object, half two-object


def test_sample_scenes_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        sample_scenes(3, "test")
    with pytest.raises(ValueError, match="n=-1"):
        sample_scenes(-1)


# ------------------------------------------------------------------------------------------ renderer
def test_render_shape_dtype_range():
    x = render(sample_scenes(8, "train", seed=1), torch.Generator().manual_seed(0))
    assert x.shape == (8, 3, 64, 64) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert x.flatten(1).std(1).min() > 0.02  # every image has content, none is flat


def test_render_draws_the_named_colour_where_the_object_is():
    scene = Scene("center", (Obj("square", "blue", "large"),), "white", "plain")
    x = render([scene], torch.Generator().manual_seed(0))[0]  # (3, 64, 64)
    centre, corner = x[:, 30:34, 30:34].mean((1, 2)), x[:, :4, :4].mean((1, 2))
    assert centre[2] > 0.6 > centre[0] and corner.min() > 0.8  # blue object on a white background


def test_render_and_degrade_reject_bad_input():
    with pytest.raises(ValueError, match="at least one scene"):
        render([])
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(ValueError, match="kind"):
        degrade(x, "jpeg", 0.5)
    with pytest.raises(ValueError, match="strength"):
        degrade(x, "blur", 0.0)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degradations_stay_in_range_and_change_the_image(kind):
    x = render(sample_scenes(4, "train"), torch.Generator().manual_seed(0))
    y = degrade(x, kind, 0.5, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert (y - x).abs().mean() > 1e-3


# ----------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_gives_the_openai_clip_ids():
    tok = load_tokenizer()
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.model_max_length == 77 and len(tok) == 49408
