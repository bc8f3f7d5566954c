"""Each shipped model loads offline from models/tinyworld/ and gives outputs of the right shape, dtype and range."""
import torch
from diffusers import LatentConsistencyModelPipeline, StableDiffusionPipeline

from qsched_core.tinyworld.loaders import GUIDANCE_SCALE, TINYWORLD
from qsched_core.tinyworld.render import render
from qsched_core.tinyworld.train_clip import normalize
from qsched_core.tinyworld.world import LABEL_CLASSES, eval_prompts

PROMPTS = [s.caption for s in eval_prompts(2, seed=0)]


def test_shipped_weights_fit_the_size_budget():
    weights = [p for p in TINYWORLD.rglob("*.safetensors") if "legacy" not in p.parts]
    assert len(weights) == 6  # vae, text encoder, student UNet, teacher UNet, judge, evaluator
    total_mb = sum(p.stat().st_size for p in weights) / 2**20
    assert total_mb <= 40, f"shipped weights take {total_mb:.1f} MiB; DESIGN.md allows 40"
    # the first judge and evaluator stay as the "instrument that cannot see the damage" of
    # results/instrument_validity.md: 9 MiB more, outside the tiny world's own budget
    legacy = [p for p in TINYWORLD.rglob("*.safetensors") if "legacy" in p.parts]
    assert len(legacy) == 2 and sum(p.stat().st_size for p in legacy) / 2**20 <= 10


def test_student_pipeline_one_step(pipe):
    assert isinstance(pipe, LatentConsistencyModelPipeline) and pipe.unet.config.time_cond_proj_dim is not None
    with torch.no_grad():
        images = pipe(prompt=PROMPTS, num_inference_steps=1, guidance_scale=GUIDANCE_SCALE, output_type="pt",
                      generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
    assert torch.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    assert images.std() > 0.05  # not a blank image


def test_teacher_pipeline_two_steps(teacher):
    assert isinstance(teacher, StableDiffusionPipeline) and teacher.unet.config.time_cond_proj_dim is None
    with torch.no_grad():
        images = teacher(prompt=PROMPTS, num_inference_steps=2, guidance_scale=GUIDANCE_SCALE, output_type="pt",
                         generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
    assert torch.isfinite(images).all() and 0 <= images.min() and images.max() <= 1


def test_judge_encodes_images_and_text(judge):
    x = render(eval_prompts(2, seed=0), torch.Generator().manual_seed(0))
    with torch.no_grad():
        e_i = judge.model.encode_image(normalize(x), normalize=True)
        e_t = judge.model.encode_text(judge.tokenizer(PROMPTS), normalize=True)
    assert e_i.shape == e_t.shape == (2, 64) and e_i.dtype == torch.float32
    assert torch.allclose(e_i.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.isfinite(e_i @ e_t.T).all()


def test_evaluator_logits_and_features(evaluator):
    x = render(eval_prompts(3, seed=0), torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, feats = evaluator(x), evaluator.features(x)
    assert set(logits) == set(LABEL_CLASSES) | {"quality"}  # + the damage head (strength of 4 degradations)
    for name, n_classes in LABEL_CLASSES.items():
        assert logits[name].shape == (3, n_classes) and logits[name].dtype == torch.float32
    assert logits["quality"].shape == (3, 4)
    assert feats.shape == (3, 128) and torch.isfinite(feats).all() and feats.min() < 0  # BatchNorm, no ReLU
