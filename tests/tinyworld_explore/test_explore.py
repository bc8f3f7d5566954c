"""Tests of the tiny-world exploration functions, on the shipped models (a few 1- and 2-step samples, CPU)."""
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qsched_core.sampling import sample_lcm
from qsched_core.tinyworld import explore
from qsched_core.tinyworld.loaders import GUIDANCE_SCALE, load_evaluator, load_pipeline
from qsched_core.tinyworld.models import n_params
from qsched_core.tinyworld.quality import predict_labels, target_labels
from qsched_core.tinyworld.render import DEGRADATIONS, render
from qsched_core.tinyworld.world import LABEL_CLASSES, Obj, Scene, eval_prompts, random_scene

CAPTION = "a small green star at the top, on a striped gray background"


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is as fast and does not fight other processes
    yield load_pipeline()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def evaluator():
    return load_evaluator()


# ----------------------------------------------------------------------------------------- captions
@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_world_caption_is_accepted_and_parsed_back(seed):
    scene = random_scene(random.Random(seed))
    assert explore.unknown_words(scene.caption) == []
    assert explore.check_caption(scene.caption) == scene


def test_unknown_words_are_named_in_order():
    assert explore.unknown_words("a small red dog on the moon, on a plain white background") == ["dog", "moon"]


@pytest.mark.parametrize("caption, message", [
    ("a small red dog at the top, on a plain white background", "dog"),
    ("a small red circle on the left", "template"),            # known words, no background clause
    ("a red small circle on the left, on a plain white background", "template"),  # words out of order
    (42, "must be a string"),
])
def test_bad_captions_raise_with_the_reason(caption, message):
    with pytest.raises(ValueError, match=message):
        explore.check_caption(caption)


def test_example_caption_is_a_world_caption():
    assert explore.check_caption(explore.EXAMPLE_CAPTION).n_objects == 2


# ----------------------------------------------------------------------------------------- sampling
def test_caption_to_images_is_sample_lcm_with_a_seed(pipe):
    images = explore.caption_to_images(pipe, CAPTION, steps=2, n=2, seed=3)
    with torch.no_grad():
        ref = sample_lcm(pipe, [CAPTION] * 2, num_steps=2, guidance_scale=GUIDANCE_SCALE,
                         generator=torch.Generator().manual_seed(3))
    assert images.shape == (2, 3, 64, 64)
    assert torch.equal(images, ref)
    assert 0 <= images.min() and images.max() <= 1


def test_caption_to_images_seed_changes_the_noise(pipe):
    a = explore.caption_to_images(pipe, CAPTION, steps=1, n=1, seed=0)
    b = explore.caption_to_images(pipe, CAPTION, steps=1, n=1, seed=1)
    assert torch.equal(a, explore.caption_to_images(pipe, CAPTION, steps=1, n=1, seed=0))
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("kwargs, message", [
    ({"caption": "a blue cat"}, "cat"), ({"n": 0}, "n=0"), ({"steps": 0}, "num_steps=0")])
def test_caption_to_images_rejects_bad_arguments(pipe, kwargs, message):
    args = {"caption": CAPTION, "steps": 1, "n": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        explore.caption_to_images(pipe, **args)


def test_images_at_steps_share_the_initial_noise(pipe):
    captions = [CAPTION, explore.EXAMPLE_CAPTION]
    out = explore.images_at_steps(pipe, captions, steps=(1, 2), seed=5)
    assert sorted(out) == [1, 2] and out[1].shape == (2, 3, 64, 64)
    x_T = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(5))  # as initial_latents draws it
    with torch.no_grad():
        ref = sample_lcm(pipe, captions, num_steps=2, guidance_scale=GUIDANCE_SCALE, latents=x_T,
                         generator=torch.Generator().manual_seed(6))
    assert torch.equal(out[2], ref)


# ----------------------------------------------------------------------------------------- VAE
def test_vae_round_trip_shapes_and_error(pipe):
    images = render(eval_prompts(4), torch.Generator().manual_seed(0))
    z, recon = explore.vae_round_trip(pipe, images)
    assert z.shape == (4, 4, 16, 16) and recon.shape == images.shape
    mse = (recon - images).pow(2).mean().item()
    assert mse < 0.005, f"VAE round-trip mse {mse:.4f}: the shipped VAE reconstructs rendered scenes to ~3e-4"
    assert 0.5 < z.std().item() < 2.0, "scaled latents should have roughly unit variance"


# ----------------------------------------------------------------------------------------- tables
def test_component_table_counts_parameters_of_the_given_modules(pipe, evaluator):
    judge = torch.nn.Linear(3, 2)  # any module: the table counts what it is given
    rows = explore.component_table(pipe, pipe.unet, judge, evaluator)
    by_part = {r["part"]: r for r in rows}
    assert list(by_part) == list(explore.REAL_COUNTERPARTS)
    assert by_part["judge"]["params"] == 8 and by_part["judge"]["class"] == "torch.Linear"
    assert by_part["student_unet"]["params"] == n_params(pipe.unet)
    assert by_part["vae"]["class"] == "diffusers.AutoencoderKL"


@pytest.mark.parametrize("head", list(LABEL_CLASSES))
def test_label_words_have_one_word_per_class(head):
    assert len(explore.label_words(head)) == LABEL_CLASSES[head]


def test_label_words_rejects_unknown_heads():
    with pytest.raises(ValueError, match="shape3"):
        explore.label_words("shape3")


def test_attribute_rows_mark_misses_with_the_wanted_word():
    scenes = [Scene("left", (Obj("star", "red", "small"),), "white", "plain")]
    pred = target_labels(scenes)
    assert explore.attribute_rows(pred, scenes)[0]["all right"]
    pred["color1"] = torch.tensor([5])  # blue
    row = explore.attribute_rows(pred, scenes)[0]
    assert row["color1"] == "blue ≠ red" and row["shape2"] == "none" and not row["all right"]


def test_evaluator_reads_rendered_scenes(evaluator):
    scenes = eval_prompts(8, seed=1)
    rows = explore.attribute_rows(predict_labels(evaluator, render(scenes)), scenes)
    assert sum(r["all right"] for r in rows) >= 6, "the evaluator should read almost every rendered scene right"


def test_split_counts_add_up_and_calib_is_smallest():
    counts = explore.split_counts(n=500, seed=0)
    assert sum(counts.values()) == 500
    assert 0 < counts["calib"] < counts["eval"] < counts["train"]


def test_degraded_copies_keep_shape_and_change_pixels():
    images = render(eval_prompts(2))
    copies = explore.degraded_copies(images, strength=0.5)
    assert list(copies) == ["clean", *DEGRADATIONS] and copies["clean"] is images
    for kind in DEGRADATIONS:
        assert copies[kind].shape == images.shape
        assert (copies[kind] - images).abs().mean() > 1e-3, kind


def test_short_caption_drops_the_background():
    scene = Scene("top", (Obj("star", "green", "small"),), "gray", "striped")
    assert explore.short_caption(scene) == "a small green star at the top"


def test_short_caption_wraps_at_width():
    scene = Scene("left-right", (Obj("star", "red", "small"), Obj("ring", "blue", "large")), "gray", "plain")
    lines = explore.short_caption(scene, width=26).split("\n")
    assert len(lines) > 1 and all(len(line) <= 26 for line in lines)
    assert " ".join(lines) == explore.short_caption(scene)
