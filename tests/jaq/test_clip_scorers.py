"""CLIPScore and CLIP-IQA: closed forms on hand-set embeddings, a quality judge, and a tiny random open_clip CLIP."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qsched_core.jaq import PYIQA_CLIPIQA_PAIRS, clip_iqa, clip_preprocess, clip_score, make_pyiqa_clipiqa


def solid(*rgbs, size=8):
    """(B, 3, size, size) images of constant colour."""
    return torch.tensor(rgbs, dtype=torch.float32).view(-1, 3, 1, 1).expand(-1, 3, size, size).contiguous()


def test_clip_score_closed_form(colour_judge):
    images = solid((1, 0, 0), (0.6, 0.8, 0), (1, 0, 0), (0, 0.5, 0))
    scores = clip_score(colour_judge, colour_judge.tokenizer, images, ["red", "red", "not red", "green"])
    # cos = 1, 0.6, -1 (clamped to 0), 1
    assert torch.allclose(scores, torch.tensor([100.0, 60.0, 0.0, 100.0]), atol=1e-4)


def test_clip_iqa_closed_form(colour_judge):
    red = solid((1, 0, 0))
    # cos+ = 0.30, cos- = 0.29: softmax(100 * [0.30, 0.29])_0 = sigmoid(1)
    p = clip_iqa(colour_judge, colour_judge.tokenizer, red)
    assert p.item() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-4)
    swapped = clip_iqa(colour_judge, colour_judge.tokenizer, red, [("Good photo.", "Bad photo."),
                                                                    ("Bad photo.", "Good photo.")])
    assert swapped.item() == pytest.approx(0.5, abs=1e-5)  # the mean over pairs of sigmoid(1) and sigmoid(-1)
    assert clip_iqa(colour_judge, colour_judge.tokenizer, red, logit_scale=10.0).item() == pytest.approx(
        1 / (1 + math.exp(-0.1)), abs=1e-4)


def test_blur_lowers_quality_under_a_sharpness_judge(sharpness_judge):
    g = torch.Generator().manual_seed(0)
    sharp = (torch.rand(4, 3, 32, 32, generator=g) > 0.5).float() * 0.8 + 0.1  # high-frequency texture
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 5, 5)
    blurred = F.conv2d(F.pad(sharp, (2, 2, 2, 2), mode="reflect"), kernel, groups=3)
    q_sharp = clip_iqa(sharpness_judge, sharpness_judge.tokenizer, sharp)
    q_blur = clip_iqa(sharpness_judge, sharpness_judge.tokenizer, blurred)
    assert (q_blur < q_sharp).all(), (q_sharp, q_blur)
    assert (q_sharp > 0.5).all() and (q_blur < 0.5).all()


def test_images_outside_unit_range_raise(colour_judge):
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
        clip_score(colour_judge, colour_judge.tokenizer, solid((255, 0, 0)), ["red"])
    with pytest.raises(ValueError, match="one prompt per image"):
        clip_score(colour_judge, colour_judge.tokenizer, solid((1, 0, 0), (1, 0, 0)), ["red"])
    with pytest.raises(ValueError, match="prompt_pairs"):
        clip_iqa(colour_judge, colour_judge.tokenizer, solid((1, 0, 0)), [("Good photo.",)])


def test_tiny_clip_scores_shapes_ranges_and_batching(tiny_clip, tokenizer):
    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    prompts = ["a red circle", "a blue star", "a green square", "a red star", "a small circle"]
    tc = clip_score(tiny_clip, tokenizer, images, prompts, batch_size=2)
    iq = clip_iqa(tiny_clip, tokenizer, images, batch_size=2)
    assert tc.shape == iq.shape == (5,)
    assert ((tc >= 0) & (tc <= 100)).all() and ((iq >= 0) & (iq <= 1)).all()
    assert torch.allclose(tc, clip_score(tiny_clip, tokenizer, images, prompts, batch_size=16), atol=1e-4)
    assert torch.allclose(iq, clip_iqa(tiny_clip, tokenizer, images, batch_size=16), atol=1e-6)


def test_gradients_reach_the_images(tiny_clip, tokenizer):
    images = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(2), requires_grad=True)
    (clip_score(tiny_clip, tokenizer, images, ["a", "b", "c"]).sum()
     + clip_iqa(tiny_clip, tokenizer, images).sum()).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


@pytest.mark.parametrize("hw", [(64, 64), (96, 96), (80, 96), (40, 56)])
def test_preprocess_matches_open_clip_transform(tiny_clip, hw):
    import open_clip
    from PIL import Image

    g = torch.Generator().manual_seed(3)
    smooth = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=hw, mode="bilinear")
    pil = Image.fromarray((smooth[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    reference = open_clip.image_transform(64, is_train=False)(pil)  # PIL resize + crop + normalise
    ours = clip_preprocess(tiny_clip, torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].float() / 255)[0]
    assert ours.shape == reference.shape == (3, 64, 64)
    err = (ours - reference).abs()
    assert err.max() < 0.05 and err.mean() < 0.01, f"max {err.max():.4f}, mean {err.mean():.4f}"


def test_pyiqa_clipiqa_agrees_with_ours_on_the_same_clip(make_tiny_clip, tokenizer):
    pytest.importorskip("pyiqa")
    model = make_tiny_clip(seed=4)
    with torch.no_grad():
        model.visual.positional_embedding.zero_()  # pyiqa's clipiqa drops it (pos_embedding=False)
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    ours = clip_iqa(model, tokenizer, images, prompt_pairs=PYIQA_CLIPIQA_PAIRS)
    theirs = make_pyiqa_clipiqa(model)(images).view(-1)
    assert torch.allclose(ours, theirs, atol=5e-4), (ours, theirs)  # pyiqa rounds weights through fp16
    assert not torch.allclose(ours, torch.full_like(ours, 0.5), atol=1e-3)  # a non-trivial comparison
