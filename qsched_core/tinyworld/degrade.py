"""Graded image degradations: the scale on which the JAQ judge and the evaluator learn what "worse" means.

CLIP-IQA asks a CLIP whether an image is a "Good photo." or a "Bad photo.". For that answer to rank
quantization damage it must be *graded*: a slightly damaged image should score slightly lower, a badly damaged
one much lower. The first judge of this repo saw clean-vs-degraded only (strengths 0.25..1, a binary target),
and its quality score was a switch: 81% of full-precision generations scored above 0.95.

Here every degradation has a continuous `strength` s in [0, 1], one per image, with s = 0 the identity (or, for
"latent", a plain VAE round trip), so a model can be trained to fall smoothly with s
(`train_clip.train_clip`, `train.train_evaluator`):

| kind        | s = 1 means                                              | family                         |
|-------------|----------------------------------------------------------|--------------------------------|
| noise       | Gaussian pixel noise of std 0.3                          | seen in training               |
| blur        | Gaussian blur of sigma 3 px                              | seen                           |
| color_shift | per-image channel gain/offset of 0.3 / 0.2               | seen                           |
| blocky      | fully replaced by its 4x4-block average                  | seen                           |
| latent      | VAE latent + noise of 0.6 latent std, decoded            | seen (needs the VAE)           |
| jpeg        | 8x8 DCT coefficients quantized with step 0.02 + 0.6 s    | HELD OUT: validation only      |
| contrast    | contrast reduced by 80% towards the image mean           | held out                       |
| posterize   | colours quantized to 2 + 30 (1 - s) levels               | held out                       |
| warp        | smooth random displacement of up to 3 px                 | held out                       |

The held-out kinds are never used in training; `results/instrument_validity.md` checks on them that the learned
quality is graded and not a detector of the training corruptions. None of these are images of a quantized
model: the judge is not tuned on what it will be asked to rank.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SEEN = ("noise", "blur", "color_shift", "blocky", "latent")
HELD_OUT = ("jpeg", "contrast", "posterize", "warp")
KINDS = SEEN + HELD_OUT


def _strengths(strength, n: int, device) -> torch.Tensor:
    s = torch.as_tensor(strength, dtype=torch.float32, device=device).flatten()
    s = s.expand(n) if s.numel() == 1 else s
    if s.numel() != n or not bool(((s >= 0) & (s <= 1)).all()):
        raise ValueError(f"strength must be one number or one per image ({n}) in [0, 1]; got {strength!r}")
    return s


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (B,); sigma 0 is the identity."""
    B, C, H, W = x.shape
    t = torch.arange(-6, 7, device=x.device, dtype=x.dtype)
    k = torch.exp(-t[None] ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))  # (B, 13)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(C, 0)  # (B*C, 13): one kernel per image channel
    y = x.reshape(1, B * C, H, W)
    y = F.conv2d(F.pad(y, (6, 6, 0, 0), mode="reflect"), k.view(B * C, 1, 1, 13), groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, 6, 6), mode="reflect"), k.view(B * C, 1, 13, 1), groups=B * C)
    return y.view(B, C, H, W)


def _dct_matrix(n: int, device) -> torch.Tensor:
    i = torch.arange(n, device=device, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * i[None] + 1) * i[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m  # orthonormal DCT-II: (n, n)


def _jpeg(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    D = _dct_matrix(8, x.device)
    blocks = x.reshape(B, C, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (B, C, h, w, 8, 8)
    coef = D @ blocks @ D.T
    step = (0.02 + 0.6 * s).view(B, 1, 1, 1, 1, 1) * (1 + torch.arange(8, device=x.device).view(8, 1)
                                                      + torch.arange(8, device=x.device)) / 4
    coef = torch.where(s.view(B, 1, 1, 1, 1, 1) > 0, torch.round(coef / step) * step, coef)
    return (D.T @ coef @ D).permute(0, 1, 2, 4, 3, 5).reshape(B, C, H, W)


def _warp(x: torch.Tensor, s: torch.Tensor, gen) -> torch.Tensor:
    B, _, H, W = x.shape
    flow = torch.randn(B, 2, 4, 4, generator=gen, device=x.device)
    flow = F.interpolate(flow, size=(H, W), mode="bicubic", align_corners=False)
    flow = flow / flow.abs().amax((1, 2, 3), keepdim=True).clamp(min=1e-6) * (3 * s).view(B, 1, 1, 1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H, device=x.device), torch.linspace(-1, 1, W, device=x.device),
                            indexing="ij")
    grid = torch.stack([xx, yy], -1)[None] + flow.permute(0, 2, 3, 1) * torch.tensor([2 / W, 2 / H], device=x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def degrade_graded(images: torch.Tensor, kind: str, strength, generator: torch.Generator | None = None,
                   vae=None) -> torch.Tensor:
    """Apply `kind` to images (B, 3, H, W) in [0, 1] at `strength` (a number or (B,) in [0, 1]); output in [0, 1]."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be one of {KINDS}")
    x, B, dev = images, images.shape[0], images.device
    s = _strengths(strength, B, dev)
    sv = s.view(B, 1, 1, 1)
    if kind == "noise":
        out = x + 0.3 * sv * torch.randn(x.shape, generator=generator, device=dev)
    elif kind == "blur":
        out = _blur(x, 3 * s)
    elif kind == "color_shift":
        shift = torch.randn(B, 3, 1, 1, generator=generator, device=dev)
        out = x * (1 + 0.3 * sv * shift) + 0.2 * sv * shift.roll(1, 1)
    elif kind == "blocky":
        out = (1 - sv) * x + sv * F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")
    elif kind == "latent":
        if vae is None:
            raise ValueError("kind='latent' needs vae= (the tiny world's AutoencoderKL: loaders.load_pipeline().vae)")
        z = vae.encode(x * 2 - 1).latent_dist.mode()
        z = z + 0.6 * z.std() * sv * torch.randn(z.shape, generator=generator, device=dev)
        out = (vae.decode(z).sample + 1) / 2
    elif kind == "jpeg":
        out = _jpeg(x, s)
    elif kind == "contrast":
        out = x.mean((1, 2, 3), keepdim=True) + (1 - 0.8 * sv) * (x - x.mean((1, 2, 3), keepdim=True))
    elif kind == "posterize":
        levels = (2 + 30 * (1 - sv)).round()
        out = torch.where(sv > 0, torch.round(x * (levels - 1)) / (levels - 1), x)
    else:
        out = _warp(x, s, generator)
    return out.float().clamp(0, 1)


def random_graded(images: torch.Tensor, generator: torch.Generator, kinds=SEEN, p_clean: float = 0.2,
                  vae=None, strength: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each image gets a random kind and strength (0 with probability p_clean, else U(0, 1)).

    Returns (images, strengths (B,), kind indices (B,) into `kinds`). Pass `strength` to fix the strengths.
    """
    B, dev = images.shape[0], images.device
    if strength is None:
        strength = torch.rand(B, generator=generator, device=dev)
        strength = torch.where(torch.rand(B, generator=generator, device=dev) < p_clean, 0.0, strength)
    kind_idx = torch.randint(len(kinds), (B,), generator=generator, device=dev)
    out = images.clone()
    for k, kind in enumerate(kinds):
        sel = kind_idx == k
        if sel.any():
            out[sel] = degrade_graded(images[sel], kind, strength[sel], generator, vae=vae)
    return out, strength, kind_idx
