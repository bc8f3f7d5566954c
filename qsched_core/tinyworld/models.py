"""Architectures of the tiny world, each a scaled-down copy of its real counterpart.

| tiny world            | real stack it stands in for           | class                                    |
|-----------------------|---------------------------------------|------------------------------------------|
| VAE 64x64x3 -> 16x16x4 | SD's AutoencoderKL (512 -> 64x64x4)   | diffusers `AutoencoderKL`                |
| text encoder          | SD's CLIP ViT-L/14 text tower          | transformers `CLIPTextModel`             |
| teacher UNet          | SD 1.5 UNet                            | diffusers `UNet2DConditionModel`         |
| student UNet          | LCM-Dreamshaper-v7 (w-embedding)       | same class, `time_cond_proj_dim` set     |
| judge                 | CLIP ViT-L/14 for CLIPScore / CLIP-IQA | open_clip `CLIP` (custom config)         |
| evaluator             | Inception-v3 (FID) + GenEval detector  | `Evaluator` below (small CNN, 9 heads)   |

The UNet uses linear projections in its transformer blocks (`use_linear_projection=True`), so, as in SD, a
large share of its weights sit in `nn.Linear` layers: those are what the Q-Sched backbone quantization touches.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .world import LABEL_CLASSES

LATENT_CHANNELS = 4
LATENT_SIZE = 16
TEXT_WIDTH = 64
TIME_COND_DIM = 64

VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=64,
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                  block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16)
TEXT_CONFIG = dict(vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=4,
                   num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                   pad_token_id=49407, projection_dim=TEXT_WIDTH)
UNET_CONFIG = dict(sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
                   block_out_channels=(64, 96, 96), layers_per_block=1, norm_num_groups=16,
                   down_block_types=("CrossAttnDownBlock2D",) * 3, up_block_types=("CrossAttnUpBlock2D",) * 3,
                   cross_attention_dim=TEXT_WIDTH, attention_head_dim=16, use_linear_projection=True)
# The noise schedule of Stable Diffusion 1.5 (and so of LCM-Dreamshaper-v7).
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="epsilon")
CLIP_CONFIG = {"embed_dim": 64,
               "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 4}}


def build_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(**VAE_CONFIG)


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def build_unet(student: bool = False):
    """Teacher UNet, or the LCM student (same weights layout plus the guidance-scale embedding input)."""
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(**UNET_CONFIG, time_cond_proj_dim=TIME_COND_DIM if student else None)


def build_clip():
    import open_clip
    return open_clip.CLIP(**CLIP_CONFIG)


class Evaluator(nn.Module):
    """Attribute classifier whose feature layer stands in for Inception's pool3 in FID.

    Input images (B, 3, 64, 64) in [0, 1]; `features(x)` -> (B, feat_dim); `forward(x)` -> dict of logits, one per
    attribute head of `world.LABEL_CLASSES` (layout, shape/colour/size of each object, background, texture), plus
    "quality" (B, n_quality): the predicted strength of each graded degradation (`degrade.SEEN[:4]`), when
    n_quality > 0.

    embedding="bn" (version 2, shipped): the feature layer is Linear -> BatchNorm without affine parameters and
    without ReLU, so every dimension has unit variance on the training renders and none is dead; the heads read
    it linearly, and the quality head makes it see damage as well as attributes (FID must see both).
    embedding="relu" (version 1, `legacy/evaluator_v1`): Linear -> ReLU, a classifier's penultimate layer; 68 of
    its 256 dimensions are exactly 0 on every image.
    """

    def __init__(self, width: int = 32, feat_dim: int = 256, embedding: str = "relu", n_quality: int = 0):
        super().__init__()
        if embedding not in ("relu", "bn"):
            raise ValueError(f"embedding={embedding!r} must be 'relu' (version 1) or 'bn' (version 2)")

        def block(cin, cout):  # conv-bn-relu twice, then halve the resolution
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        w = width
        self.config = {"width": width, "feat_dim": feat_dim, "embedding": embedding, "n_quality": n_quality}
        self.body = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 4 * w))  # 64 -> 4
        out = nn.ReLU() if embedding == "relu" else nn.BatchNorm1d(feat_dim, affine=False)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, feat_dim), out)
        self.heads = nn.ModuleDict({k: nn.Linear(feat_dim, n) for k, n in LABEL_CLASSES.items()})
        if n_quality:
            self.heads["quality"] = nn.Linear(feat_dim, n_quality)

    def describe(self) -> str:
        """The feature layer in words, for metric cards."""
        c = self.config
        if c["embedding"] == "bn":
            return f"tiny-world evaluator v2 feature layer ({c['feat_dim']}-d Linear + BatchNorm, no ReLU)"
        return f"tiny-world evaluator v1 penultimate layer ({c['feat_dim']}-d, post-ReLU)"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 64, 64):  # other sizes would fail deep inside `neck`
            raise ValueError(f"images of shape {tuple(x.shape)} must be (B, 3, 64, 64), the size the evaluator was "
                             "trained on; resize explicitly, e.g. F.interpolate(x, size=64, mode='bilinear', "
                             "antialias=True), and record the resize policy in the metric card")
        return self.neck(self.body(x * 2 - 1))  # (B, 3, 64, 64) -> (B, feat_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        return {k: head(f) for k, head in self.heads.items()}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
