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

from ..checks import check_device, check_float_dtype
from ..utils import MODELS_DIR
from .models import SCHEDULE, Evaluator

TINYWORLD = MODELS_DIR / "tinyworld"
GUIDANCE_SCALE = 4.0  # default w + 1 for the tiny student (trained on w + 1 in [2, 8])


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the tiny-world weights ship in the repo under models/tinyworld; "
                                "restore them with `git checkout -- models/` or retrain with scripts/train_tinyworld.py")
    return path


def _load_weights(module: torch.nn.Module, path: Path, stage: str) -> None:
    """Load a safetensors file into `module` (as float32); a corrupt or mismatched file names its path and the fix."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    shown = path.relative_to(MODELS_DIR.parent) if path.is_relative_to(MODELS_DIR.parent) else path
    fix = (f"restore it with `git checkout -- {shown}` or retrain it with "
           f"`python scripts/train_tinyworld.py --stages {stage}`")
    try:
        state = load_file(_require(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}); {fix}") from err
    try:
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit {type(module).__name__} ({str(err).splitlines()[0]}); "
                         f"it is stale or from another architecture: {fix}") from err


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
    # fp16 on disk, float32 when loaded: transformers' default dtype="auto" reads this field, and a float16 text
    # encoder next to diffusers' float32 UNet fails in stock `DiffusionPipeline.from_pretrained(d)` on the CPU
    te_config = d / "text_encoder" / "config.json"
    te_config.write_text(json.dumps({**json.loads(te_config.read_text()), "dtype": "float32"}, indent=2) + "\n")
    return d


def load_pipeline(device="cpu", dtype=torch.float32, root: Path = TINYWORLD):
    """The tiny LCM student as a diffusers `LatentConsistencyModelPipeline` (loaded with from_pretrained)."""
    from diffusers import LatentConsistencyModelPipeline

    check_device(device), check_float_dtype(dtype)
    d = _require(Path(root) / "lcm")
    try:
        pipe = LatentConsistencyModelPipeline.from_pretrained(d, dtype=dtype, safety_checker=None,
                                                              feature_extractor=None)
    except (OSError, ValueError, RuntimeError, KeyError) as err:  # diffusers' own message names the part
        raise ValueError(f"the pipeline in {d} does not load ({type(err).__name__}: {err}); restore it with "
                         "`git checkout -- models/` or rebuild it with loaders.export_pipeline()") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_teacher_pipeline(device="cpu", dtype=torch.float32, root: Path = TINYWORLD):
    """The teacher UNet in a `StableDiffusionPipeline` with DDIM, sharing the student's VAE and text encoder."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    check_device(device), check_float_dtype(dtype)

    lcm = load_pipeline(device, dtype, root)
    unet = UNet2DConditionModel.from_pretrained(_require(Path(root) / "teacher_unet"), dtype=dtype)
    pipe = StableDiffusionPipeline(vae=lcm.vae, text_encoder=lcm.text_encoder, tokenizer=lcm.tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False,
                                                           steps_offset=1),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_judge(device="cpu", root: Path = TINYWORLD, folder: str = "clip"):
    """The tiny CLIP judge through open_clip's own API: (model, tokenizer, preprocess_cfg).

    folder "clip" is the shipped judge (version 2, graded quality); "legacy/clip_v1" the first one."""
    check_device(device)
    import open_clip

    d = _require(Path(root) / folder)
    try:
        cfg = json.loads(_require(d / "open_clip_config.json").read_text())
        model = open_clip.CLIP(**cfg["model_cfg"])
        _ = cfg["preprocess_cfg"]["mean"], cfg["preprocess_cfg"]["std"]  # fail here, not at the first image
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{d / 'open_clip_config.json'} is not a valid open_clip config ({type(err).__name__}: "
                         f"{err}); restore it with `git checkout -- models/` or retrain with "
                         "`python scripts/train_tinyworld.py --stages clip`") from err
    _load_weights(model, d / "open_clip_model.safetensors", "clip")
    model.visual.image_mean, model.visual.image_std = tuple(cfg["preprocess_cfg"]["mean"]), tuple(cfg["preprocess_cfg"]["std"])
    return model.to(device).eval(), open_clip.get_tokenizer("ViT-B-32"), cfg["preprocess_cfg"]


def load_evaluator(device="cpu", root: Path = TINYWORLD, folder: str = "evaluator") -> Evaluator:
    """The evaluator in `root/folder` (config.json gives its architecture; none = version 1), fp32, eval mode."""
    check_device(device)
    d = _require(Path(root) / folder)
    try:
        config = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
        ev = Evaluator(**config)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{d / 'config.json'} is not a valid evaluator config ({type(err).__name__}: {err}); restore "
                         "it with `git checkout -- models/` or retrain with `python scripts/train_tinyworld.py "
                         "--stages evaluator`") from err
    _load_weights(ev, d / "evaluator.safetensors", "evaluator")
    return ev.to(device).eval()
