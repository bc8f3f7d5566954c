"""Tiny random-weight fixtures for the scheduler, sampler and search tests.

The pipeline is a real `LatentConsistencyModelPipeline` with the same component classes as LCM-Dreamshaper
(UNet with a guidance-scale embedding, AutoencoderKL, CLIP text encoder, LCMScheduler), shrunk to a few
thousand parameters per block so a 4-step sample of two prompts takes well under a second on the CPU.
Latents are 4x8x8 and images 3x16x16.
"""
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    LatentConsistencyModelPipeline,
    LCMScheduler,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from qsched_core.tinyworld.tokenizer import load_tokenizer

PROMPTS = ["a small red circle on the left", "a large blue star on a yellow background"]


def _unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, time_cond_proj_dim=32, norm_num_groups=32,
    )


def _vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )


def _text_encoder() -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    return CLIPTextModel(config)


@pytest.fixture(scope="session")
def tiny_components() -> dict:
    """Shared read-only modules (built once per pytest run)."""
    parts = dict(unet=_unet(), vae=_vae(), text_encoder=_text_encoder(), tokenizer=load_tokenizer())
    for name in ("unet", "vae", "text_encoder"):
        parts[name].eval()
    return parts


@pytest.fixture
def tiny_pipe(tiny_components) -> LatentConsistencyModelPipeline:
    """A fresh pipeline (own LCMScheduler) around the shared tiny modules."""
    pipe = LatentConsistencyModelPipeline(
        **tiny_components, scheduler=LCMScheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def prompts() -> list[str]:
    return list(PROMPTS)
