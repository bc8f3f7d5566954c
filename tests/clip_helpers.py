"""A tiny random open_clip CLIP for tests that need a real open_clip model but not its weights."""
import math

import pytest
import torch
from torch import nn


def tiny_open_clip(seed: int = 0, image_size: int = 64, width: int = 64, embed_dim: int = 32) -> nn.Module:
    """An open_clip CLIP in OpenAI layout (QuickGELU, 77-token context), one layer per tower: about 3.3M parameters
    at the defaults, most of them in the 49,408-token embedding."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=embed_dim, quick_gelu=True, init_logit_scale=math.log(100.0),
        vision_cfg=CLIPVisionCfg(layers=1, width=width, head_width=width, patch_size=16, image_size=image_size),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=width, heads=1, layers=1))
    return model.eval()
