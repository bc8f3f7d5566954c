"""Input checks shared by the public functions: one place that turns a bad argument into a message with a fix.

Every check raises `ValueError` naming the argument, the value it got and what to pass instead; none of them
pads, clips, casts or iterates its way around a bad value (STYLE.md principle 17). They are called at the top
of public functions, e.g. `clip_score` starts with `check_images(images)` and `check_prompts(prompts, len(images))`.

Why each check exists (all found by feeding the entry points bad values):
  * NaN features make scipy's matrix square root spin for minutes, and NaN images slip past a min/max range test
    (comparisons with NaN are False), so `check_finite` runs before any range test;
  * a bare string is a sequence of characters: `clip_score(images, "a red circle")` would score one letter per image;
  * `k="2"` or `k=nan` would reach arithmetic and fail (or return NaN) far from the call;
  * FID from a handful of images is mostly sample noise, so below MIN_FID_IMAGES it is refused, not warned about.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch

MIN_FID_IMAGES = 10  # FID's bias grows like D / N; below 10 images the number says nothing (tables use 1,000)


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_finite(x, name: str, fix: str = "fix whatever produced it") -> None:
    """x (tensor or array) must hold no NaN or inf; the message counts both."""
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if t.is_floating_point() and t.device.type != "meta":
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(t).sum())
            raise ValueError(f"{name} contains {n_nan} NaN and {int((~finite).sum()) - n_nan} inf values "
                             f"(shape {tuple(t.shape)}); {fix}")


def check_number(value, name: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, hint: str = "") -> float:
    """A finite real number (not a str, bool or tensor of several values) in [low, high]; returns it as float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name}={_short(value)} ({type(value).__name__}) must be a real number"
                         f"{hint and ', ' + hint}; pass float({name}) if it came from a string or a config file")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}={v} must be finite{hint and ', ' + hint}")
    too_low = low is not None and (v <= low if low_open else v < low)
    if too_low or (high is not None and v > high):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        raise ValueError(f"{name}={v} must be {' and '.join(p for p in (lo, hi) if p)}{hint and ', ' + hint}")
    return v


def check_int(value, name: str, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """A plain int (not bool, float or str) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name}={_short(value)} ({type(value).__name__}) must be an int{hint and ', ' + hint}; "
                         f"pass int({name}) if it came from a string or a float")
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f">= {low}" if high is None else (f"<= {high}" if low is None else f"in {low}..{high}")
        raise ValueError(f"{name}={value} must be {rng}{hint and ', ' + hint}")
    return int(value)


def check_int_list(text: str, name: str, example: str) -> None:
    """A CLI flag of comma-separated ints >= 0 (empty items ignored); int("x") later would not name the flag."""
    if not all(v.strip().isdigit() for v in text.split(",") if v.strip()):
        raise ValueError(f"{name}={text!r} must be comma-separated ints >= 0, "
                         f"e.g. --{name.replace('_', '-')} {example}")


def check_images(images, name: str = "images") -> torch.Tensor:
    """A non-empty float (B, 3, H, W) tensor of finite values in [0, 1]; the message says how to convert."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}; "
                         "stack a list with torch.stack, convert numpy with torch.from_numpy")
    if images.ndim != 4 or images.shape[1] != 3:
        hint = ("add the batch dim: images[None]" if images.ndim == 3 and images.shape[0] == 3 else
                "channels-last? use images.permute(0, 3, 1, 2)" if images.ndim == 4 and images.shape[-1] == 3 else
                "pass RGB images as (batch, 3, height, width)")
        raise ValueError(f"{name} has shape {tuple(images.shape)} but must be (B, 3, H, W); {hint}")
    if not images.is_floating_point():
        raise ValueError(f"{name} have dtype {images.dtype} but must be float in [0, 1]; "
                         f"convert uint8 with {name}.float() / 255")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch {tuple(images.shape)}; pass at least one image")
    if images.device.type == "meta":
        raise ValueError(f"{name} are on the meta device (no data); create them on 'cpu' or 'cuda'")
    check_finite(images, name, "the sampler or decoder diverged: check the model and its dtype before scoring")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name} span [{lo:.3g}, {hi:.3g}] but must lie in [0, 1]; divide uint8 images by 255 "
                         "and map [-1, 1] VAE outputs with (x + 1) / 2")
    return images


def check_same_device(tensor: torch.Tensor, module, name: str = "images", module_name: str = "model") -> None:
    """tensor and module's first parameter must share a device (CPU by default everywhere in this repo)."""
    param = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
    if param is not None and param.device != tensor.device:
        raise ValueError(f"{name} are on {tensor.device} but {module_name} is on {param.device}; "
                         f"move one of them, e.g. {name}.to({str(param.device)!r})")


def check_prompts(prompts, n: int | None = None, name: str = "prompts") -> list[str]:
    """A non-empty list/tuple of strings, one per image when `n` is given; a bare string is refused."""
    if isinstance(prompts, str):
        raise ValueError(f"{name}={_short(prompts)} is a single string, which would be read one character per "
                         f"image; wrap it in a list: [{_short(prompts)}] (or [prompt] * n for n images)")
    if not isinstance(prompts, (list, tuple)):
        raise ValueError(f"{name} must be a list of strings, got {type(prompts).__name__}; pass list({name})")
    bad = [(i, p) for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        i, p = bad[0]
        raise ValueError(f"{name}[{i}]={_short(p)} ({type(p).__name__}) is not a string; every prompt must be a str")
    if not prompts:
        raise ValueError(f"{name} is empty; pass one prompt per image")
    if n is not None and len(prompts) != n:
        raise ValueError(f"got {n} images but {len(prompts)} {name}; pass exactly one prompt per image")
    return list(prompts)


def check_features(feats, name: str = "features", min_n: int = 2) -> np.ndarray:
    """(N, D) features with N >= min_n and only finite values, as a float64 array."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    try:
        feats = np.asarray(feats, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an (N, D) array of numbers ({err})") from err
    if feats.ndim != 2 or len(feats) < min_n or feats.shape[1] < 1:
        raise ValueError(f"{name} of shape {feats.shape} must be (N, D) with N >= {min_n} images and D >= 1")
    check_finite(torch.from_numpy(feats), name, "the images or the feature network produced NaN/inf; FID of "
                 "such features is undefined (check the images with qsched_core.checks.check_images)")
    return feats


def check_fid_sample(n: int, name: str = "features") -> None:
    """FID needs at least MIN_FID_IMAGES images; fewer give a number dominated by sample noise."""
    if n < MIN_FID_IMAGES:
        raise ValueError(f"{name} hold N={n} images; FID needs at least {MIN_FID_IMAGES} (its bias grows like "
                         f"D / N, and the covariance has rank N - 1): generate more images (tables use 1,000)")



def check_fid_features(feats, name: str = "features") -> np.ndarray:
    """Generated features for FID: finite (N, D) with N >= MIN_FID_IMAGES."""
    feats = check_features(feats, name)
    check_fid_sample(len(feats), name)
    return feats


def check_gaussian(mu, sigma, name: str) -> None:
    """Fitted Gaussian statistics (mu (D,), sigma (D, D)) must be finite before a matrix square root sees them."""
    for part, value in (("mu", mu), ("sigma", sigma)):
        check_finite(torch.as_tensor(np.asarray(value, dtype=np.float64)), f"{name} {part}",
                     "recompute the statistics from finite features (a NaN would hang the matrix square root)")


def check_scale_floor(w: torch.Tensor, scale: torch.Tensor, floor: float, name: str = "weight") -> None:
    """Refuse groups of `w` (N, K) whose scale hit the floor although they are not all zero: their values would
    round to a few codes or to 0 without any sign of it (a row of magnitude 1e-13 with a 1e-7 floor)."""
    n_groups = scale.shape[-1] if scale.ndim else 1
    if scale.ndim != 2 or scale.shape[0] != w.shape[0] or w.shape[-1] % n_groups:
        return  # per-tensor scales: the floor only bites an all-tiny tensor, checked the same way below
    amax = w.detach().float().abs().reshape(w.shape[0], n_groups, -1).amax(-1)  # (N, K) -> (N, n_groups)
    lost = (scale <= floor) & (amax > 0)
    if bool(lost.any()):
        rows = lost.any(-1).nonzero().flatten().tolist()
        raise ValueError(f"{name} rows {rows[:5]}{'...' if len(rows) > 5 else ''} have max |w| = "
                         f"{amax[lost].max().item():.3g}, so their scale falls to the floor {floor:.3g} and most "
                         f"values would round to 0: rescale the layer (e.g. multiply the weight by 1e6 and divide "
                         f"the output by 1e6), or set those rows to exactly 0 if they are meant to be 0")


def check_device(device, name: str = "device") -> torch.device:
    """A device string torch knows ('cpu', 'cuda', 'cuda:1'); CUDA only when it is available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name}={_short(device)} is not a torch device; use 'cpu' (the default) or 'cuda'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={_short(device)} but torch sees no CUDA GPU here; use device='cpu'")
    return dev


def check_float_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """A floating torch.dtype (torch.float32 by default; torch.float16 / bfloat16 are opt-in)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name}={_short(dtype)} must be a floating torch.dtype such as torch.float32 (the default) "
                         f"or torch.bfloat16, not a string or an integer dtype")
    return dtype
