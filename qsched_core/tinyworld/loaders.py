"""Loaders for the shipped tiny-world models (`models/tinyworld/`), each in its ecosystem's native format.

    lcm/            diffusers LatentConsistencyModelPipeline directory (vae, text_encoder, tokenizer, unet, scheduler)
    teacher_unet/   diffusers UNet2DConditionModel (the teacher; shares the pipeline's VAE and text encoder)
    clip/           open_clip model config + safetensors (the JAQ judge)
    evaluator/      safetensors of `models.Evaluator` (FID features and attribute accuracy)

Weights are stored in fp16 and loaded in float32 on the CPU by default.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..utils import MODELS_DIR
from .models import SCHEDULE, Evaluator

TINYWORLD = MODELS_DIR / "tinyworld"
GUIDANCE_SCALE = 4.0  # default w + 1 for the tiny student (trained on w + 1 in [2, 8])


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the tiny-world weights ship in the repo under models/tinyworld; "
                                "restore them with `git checkout -- models/` or retrain with scripts/train_tinyworld.py")
    return path


def lcm_scheduler():
    from diffusers import LCMScheduler
    return LCMScheduler(**SCHEDULE, original_inference_steps=50, timestep_scaling=10.0, set_alpha_to_one=True,
                        clip_sample=False)


def export_pipeline(root: Path = TINYWORLD) -> Path:
    """Assemble lcm/{vae,text_encoder,unet} with the tokenizer and an LCMScheduler into a pipeline directory."""
    from diffusers import AutoencoderKL, LatentConsistencyModelPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from .tokenizer import load_tokenizer

    d, half = Path(root) / "lcm", torch.float16
    pipe = LatentConsistencyModelPipeline(
        vae=AutoencoderKL.from_pretrained(d / "vae", dtype=half),
        text_encoder=CLIPTextModel.from_pretrained(d / "text_encoder", dtype=half), tokenizer=load_tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(d / "unet", dtype=half), scheduler=lcm_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(d)
    return d


def load_pipeline(device="cpu", dtype=torch.float32, root: Path = TINYWORLD):
    """The tiny LCM student as a diffusers `LatentConsistencyModelPipeline` (loaded with from_pretrained)."""
    from diffusers import LatentConsistencyModelPipeline

    pipe = LatentConsistencyModelPipeline.from_pretrained(_require(Path(root) / "lcm"), dtype=dtype,
                                                          safety_checker=None, feature_extractor=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_teacher_pipeline(device="cpu", dtype=torch.float32, root: Path = TINYWORLD):
    """The teacher UNet in a `StableDiffusionPipeline` with DDIM, sharing the student's VAE and text encoder."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    lcm = load_pipeline(device, dtype, root)
    unet = UNet2DConditionModel.from_pretrained(_require(Path(root) / "teacher_unet"), dtype=dtype)
    pipe = StableDiffusionPipeline(vae=lcm.vae, text_encoder=lcm.text_encoder, tokenizer=lcm.tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False,
                                                           steps_offset=1),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_judge(device="cpu", root: Path = TINYWORLD):
    """The tiny CLIP judge through open_clip's own API: (model, tokenizer, preprocess_cfg)."""
    import open_clip
    from safetensors.torch import load_file

    d = _require(Path(root) / "clip")
    cfg = json.loads((d / "open_clip_config.json").read_text())
    model = open_clip.CLIP(**cfg["model_cfg"])
    model.load_state_dict({k: v.float() for k, v in load_file(d / "open_clip_model.safetensors").items()})
    model.visual.image_mean, model.visual.image_std = tuple(cfg["preprocess_cfg"]["mean"]), tuple(cfg["preprocess_cfg"]["std"])
    return model.to(device).eval(), open_clip.get_tokenizer("ViT-B-32"), cfg["preprocess_cfg"]


def load_evaluator(device="cpu", root: Path = TINYWORLD) -> Evaluator:
    from safetensors.torch import load_file

    ev = Evaluator()
    state = load_file(_require(Path(root) / "evaluator" / "evaluator.safetensors"))
    ev.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return ev.to(device).eval()
