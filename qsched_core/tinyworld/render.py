"""Render tiny-world scenes to 64x64 RGB images, in batches, on any device.

Each shape is a signed distance function (SDF, negative inside) on the pixel grid, turned into an
anti-aliased mask by a sigmoid of width ~1 px. Objects are shaded by a soft light from the top left with a
small highlight; backgrounds are flat, striped or checkered with a faint grain. Positions, sizes, rotations
and colours are jittered from a `torch.Generator`, so one caption maps to many images (as in real data).

Also here: the image degradations (noise, blur, colour shift, blockiness) used to teach the CLIP judge what a
bad image looks like.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .world import BACKGROUNDS, COLORS, LAYOUTS, SHAPES, SIZES, Scene

RES = 64
RGB = {"red": (0.90, 0.12, 0.10), "orange": (1.00, 0.55, 0.05), "yellow": (0.95, 0.88, 0.10),
       "green": (0.10, 0.72, 0.20), "cyan": (0.10, 0.80, 0.85), "blue": (0.15, 0.25, 0.95),
       "purple": (0.58, 0.20, 0.80), "pink": (1.00, 0.52, 0.76)}
BG_RGB = {"white": (0.92, 0.92, 0.90), "gray": (0.50, 0.50, 0.52), "black": (0.08, 0.08, 0.09),
          "brown": (0.50, 0.34, 0.20)}
# centre (x, y) in pixels of each slot; layouts 5/6 put object 1 left/top and object 2 right/bottom
CENTERS = {"left": (16, 32), "right": (48, 32), "top": (32, 16), "bottom": (32, 48), "center": (32, 32)}
SLOTS = [("left",), ("right",), ("top",), ("bottom",), ("center",), ("left", "right"), ("top", "bottom")]
RADIUS = {"small": 7.0, "large": 12.0}


def _sdf(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (approximate for star) of every shape id in `shape` at rotated coords (u, v); r = radius."""
    rho = torch.sqrt(u**2 + v**2 + 1e-6)
    theta = torch.atan2(v, u)
    tri = torch.stack([u * math.cos(a) + v * math.sin(a) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]).amax(0)
    bar = lambda a, b: torch.maximum(u.abs() - a, v.abs() - b)  # noqa: E731  axis-aligned box
    sdfs = torch.stack([
        rho - r,                                                    # circle
        torch.maximum(u.abs(), v.abs()) - 0.82 * r,                 # square
        tri - 0.55 * r,                                             # triangle (inradius r/2, nudged)
        rho - r * (0.62 + 0.38 * torch.cos(5 * (theta + math.pi / 2))),  # star, point up
        (rho - 0.68 * r).abs() - 0.30 * r,                          # ring
        torch.minimum(bar(r, 0.32 * r), bar(0.32 * r, r)),          # cross
        (u.abs() + v.abs()) / math.sqrt(2) - 0.72 * r,              # diamond
    ])  # (S, B, H, W)
    return sdfs.gather(0, shape.view(1, -1, 1, 1).expand(1, *u.shape)).squeeze(0)


def scenes_to_tensors(scenes: list[Scene], device="cpu") -> dict[str, torch.Tensor]:
    """Integer attribute tensors (B,) and (B, 2) for the renderer; absent second objects get -1."""
    def idx(values, table):
        return torch.tensor([table.index(v) if v is not None else -1 for v in values], device=device)

    obj = lambda i, f: [getattr(s.objects[i], f) if s.n_objects > i else None for s in scenes]  # noqa: E731
    return {
        "layout": idx([s.layout for s in scenes], LAYOUTS),
        "shape": torch.stack([idx(obj(0, "shape"), SHAPES), idx(obj(1, "shape"), SHAPES)], 1),
        "color": torch.stack([idx(obj(0, "color"), COLORS), idx(obj(1, "color"), COLORS)], 1),
        "size": torch.stack([idx(obj(0, "size"), SIZES), idx(obj(1, "size"), SIZES)], 1),
        "background": idx([s.background for s in scenes], BACKGROUNDS),
        "texture": torch.tensor([("plain", "striped", "checkered").index(s.texture) for s in scenes], device=device),
    }


def _background(t: dict, gen: torch.Generator, yy, xx) -> torch.Tensor:
    B, dev = t["layout"].shape[0], yy.device
    base = torch.tensor([BG_RGB[b] for b in BACKGROUNDS], device=dev)[t["background"]]  # (B, 3)
    angle = torch.rand(B, 1, 1, generator=gen, device=dev) * math.pi
    period = 6 + 4 * torch.rand(B, 1, 1, generator=gen, device=dev)
    stripes = torch.sin((xx * torch.cos(angle) + yy * torch.sin(angle)) * 2 * math.pi / period)
    cell = 8
    checker = ((torch.div(xx, cell, rounding_mode="floor") + torch.div(yy, cell, rounding_mode="floor")) % 2) * 2 - 1
    pattern = torch.where(t["texture"].view(B, 1, 1) == 1, stripes, torch.zeros_like(stripes))
    pattern = torch.where(t["texture"].view(B, 1, 1) == 2, checker.expand_as(stripes).float(), pattern)
    contrast = torch.where(t["background"] == BACKGROUNDS.index("black"), 0.07, -0.09).view(B, 1, 1)
    img = base.view(B, 3, 1, 1) + (contrast * pattern).unsqueeze(1)
    return img + 0.012 * torch.randn(B, 3, RES, RES, generator=gen, device=dev)


def render(scenes: list[Scene], generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """Render scenes to images (B, 3, 64, 64) float32 in [0, 1]; jitter drawn from `generator`."""
    if isinstance(scenes, str) or len(scenes) == 0:
        raise ValueError(f"scenes={scenes!r}: render() needs at least one scene, as a list of Scene (parse a caption "
                         "with world.parse_caption, and wrap a single scene: [scene])")
    gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    return render_attributes(scenes_to_tensors(scenes, device), gen)


def render_attributes(t: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """`render` on the integer attribute tensors of `scenes_to_tensors` (the fast path for training)."""
    dev = t["layout"].device
    B = t["layout"].shape[0]
    yy, xx = torch.meshgrid(torch.arange(RES, device=dev) + 0.5, torch.arange(RES, device=dev) + 0.5, indexing="ij")
    img = _background(t, gen, yy, xx)
    colors = torch.tensor([RGB[c] for c in COLORS], device=dev)
    slot_xy = torch.tensor([[CENTERS[s[k]] if k < len(s) else (0, 0) for k in range(2)] for s in SLOTS],
                           device=dev, dtype=torch.float32)  # (L, 2 slots, 2)
    for k in range(2):
        present = t["shape"][:, k] >= 0
        if not present.any():
            continue
        cx, cy = (slot_xy[t["layout"], k] + 3 * (2 * torch.rand(B, 2, generator=gen, device=dev) - 1)).unbind(1)
        r = torch.tensor([RADIUS[s] for s in SIZES], device=dev)[t["size"][:, k].clamp(min=0)]
        r = r * (1 + 0.08 * (2 * torch.rand(B, generator=gen, device=dev) - 1))
        rot = (2 * torch.rand(B, generator=gen, device=dev) - 1) * math.radians(15)
        dx, dy = xx - cx.view(B, 1, 1), yy - cy.view(B, 1, 1)
        c, s = torch.cos(rot).view(B, 1, 1), torch.sin(rot).view(B, 1, 1)
        u, v = c * dx + s * dy, -s * dx + c * dy
        sdf = _sdf(t["shape"][:, k].clamp(min=0), u, v, r.view(B, 1, 1))
        mask = torch.sigmoid(-sdf / 0.6) * present.view(B, 1, 1)
        shade = 0.78 + 0.28 * torch.exp(-((dx + 0.35 * r.view(B, 1, 1)) ** 2 + (dy + 0.35 * r.view(B, 1, 1)) ** 2)
                                        / (0.9 * r.view(B, 1, 1) ** 2))
        rgb = colors[t["color"][:, k].clamp(min=0)] * (1 + 0.06 * (2 * torch.rand(B, 3, generator=gen, device=dev) - 1))
        obj = rgb.view(B, 3, 1, 1) * shade.unsqueeze(1)
        img = img * (1 - mask.unsqueeze(1)) + obj * mask.unsqueeze(1)
    return img.clamp(0, 1)


DEGRADATIONS = ("noise", "blur", "color_shift", "blocky")


def degrade(images: torch.Tensor, kind: str, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply one degradation at `strength` in (0, 1] to images (B, 3, H, W) in [0, 1]."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"kind={kind!r} must be one of {DEGRADATIONS}")
    if not 0 < strength <= 1:
        raise ValueError(f"strength={strength} must be in (0, 1]")
    if kind == "noise":
        noise = torch.randn(images.shape, generator=generator, device=images.device)
        out = images + (0.05 + 0.25 * strength) * noise
    elif kind == "blur":
        sigma = 0.8 + 2.2 * strength
        x = torch.arange(-6, 7, device=images.device, dtype=images.dtype)
        k = torch.exp(-(x**2) / (2 * sigma**2))
        k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
        out = F.conv2d(F.pad(images, (6, 6, 0, 0), mode="reflect"), k, groups=3)
        out = F.conv2d(F.pad(out, (0, 0, 6, 6), mode="reflect"), k.transpose(2, 3), groups=3)
    elif kind == "color_shift":
        shift = torch.randn(images.shape[0], 3, 1, 1, generator=generator, device=images.device)
        out = images * (1 + 0.25 * strength * shift) + 0.2 * strength * shift.roll(1, 1)
    else:  # blocky: average-pool to a coarse grid and upsample with nearest neighbours
        block = 2 if strength < 0.5 else 4
        out = F.interpolate(F.avg_pool2d(images, block), scale_factor=block, mode="nearest")
    return out.clamp(0, 1)
