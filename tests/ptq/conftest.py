"""Fixtures for the PTQ tests: one CPU thread, and a tiny random UNet with recorded sampler-like calls."""
import pytest
import torch
from diffusers import UNet2DConditionModel

from qsched_core.quant.calib import Call


@pytest.fixture
def tiny_unet() -> UNet2DConditionModel:
    """A random UNet of LCM-Dreamshaper's classes (cross-attention, GEGLU, guidance embedding), 8x8 latents."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, time_cond_proj_dim=32, norm_num_groups=32, use_linear_projection=True,
    ).eval()


@pytest.fixture
def unet_calls() -> list[Call]:
    """Two UNet calls as the LCM sampler makes them: latents, timestep, text embeddings, guidance embedding."""
    g = torch.Generator().manual_seed(1)
    return [Call((torch.randn(2, 4, 8, 8, generator=g), t),
                 dict(encoder_hidden_states=torch.randn(2, 7, 32, generator=g),
                      timestep_cond=torch.randn(2, 32, generator=g), return_dict=False))
            for t in (999, 499)]
