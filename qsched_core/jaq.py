"""JAQ: the reference-free objective that Q-Sched maximises to pick its scheduler coefficients.

Q-Sched (Frumkin & Marculescu, arXiv 2509.01624) scores a set of generated images x_1..x_n for prompts
p_1..p_n without any full-precision reference:

    JAQ = TC + k * IQ,    TC = log( (1/n) sum_i CLIPScore(x_i, p_i) ),    IQ = (1/n) sum_i CLIP-IQA(x_i),    k = 2

    CLIPScore(x, p) = 100 * max(cos(E_I(x), E_T(p)), 0)                       (Hessel et al. 2021)
    CLIP-IQA(x)     = softmax(s * [cos(E_I(x), E_T(p+)), cos(E_I(x), E_T(p-))])_0     (Wang et al. 2023)

with (p+, p-) an antonym prompt pair such as ("Good photo.", "Bad photo.") and s the judge's learned logit scale
(100 for OpenAI's CLIPs). The log keeps TC in [0, log 100]
= [0, 4.6] so that it is on the scale of k * IQ in [0, k]; without it CLIPScore (~30, moving by +-1) drowns the
quality term. The paper's formula shows no log; the released code uses it, and so do we.

How this differs from the released code (spec qsched.md §6):
  * the argmax runs over JAQ values (`best_by_jaq`), not over the raw score lists, which in effect picked
    the highest CLIPScore;
  * images enter in [0, 1] (the code fed uint8 to a metric expecting data_range=1);
  * everything is torch and differentiable w.r.t. the images (resize + normalise in torch, no PIL), so a
    gradient-based coefficient search can use the same objective as the grid search.
  * log of 0: TC = log(max(mean CLIPScore, tc_floor)), tc_floor = 1 (mean cosine 0.01), so a judge that sees no
    text-image agreement gives TC = 0 instead of -inf; `JAQScorer.describe()` reports the floor.

Every scorer is written against a generic open_clip pair (model with `encode_image`/`encode_text`, callable
tokenizer). The default judge is the repo's tiny CLIP (`models/tinyworld-clip/`); real CLIPs load with
`load_open_clip_judge` from local weights, and pyiqa's own CLIP-IQA can wrap any OpenAI-layout open_clip model.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .checks import check_finite, check_images, check_int, check_number, check_prompts, check_same_device

CLIPIQA_QUALITY_PAIR = ("Good photo.", "Bad photo.")
# pyiqa 0.1.16 `clipiqa` averages these five pairs (its docstring: "we assemble multiple prompts").
PYIQA_CLIPIQA_PAIRS = (("Good image", "bad image"), ("Sharp image", "blurry image"),
                       ("sharp edges", "blurry edges"), ("High resolution image", "low resolution image"),
                       ("Noise-free image", "noisy image"))
OBJECTIVES = {"jaq": "TC + k*IQ", "clipscore": "TC only", "iq": "IQ only"}
IQ_SCORERS = ("clipiqa", "pyiqa-clipiqa")
_OPENAI_MEAN, _OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Judge:
    """A CLIP that scores images: open_clip-style `model` (in eval mode), its `tokenizer` (list[str] -> LongTensor)
    and the `name` written into results."""
    model: Any
    tokenizer: Callable
    name: str


def as_judge(judge) -> Judge:
    """Accept a `Judge` or a `(model, tokenizer, name)` tuple."""
    if isinstance(judge, Judge):
        return judge
    if isinstance(judge, tuple) and len(judge) == 3:
        return Judge(*judge)
    raise ValueError(f"judge={judge!r} must be a Judge or a (model, tokenizer, name) tuple; "
                     "build one with load_open_clip_judge(arch, checkpoint_path) or qsched_core.hub.load_judge(name)")


def _check_images(images: torch.Tensor) -> None:
    check_images(images)  # type, shape, empty batch, NaN/inf, [0, 1]
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images of shape {tuple(images.shape)} and dtype {images.dtype} must be float (B, 3, H, W)")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"images span [{lo:.3g}, {hi:.3g}] but must lie in [0, 1]; divide uint8 images by 255 "
                         "and map [-1, 1] VAE outputs with (x + 1) / 2")


def _input_size(model) -> tuple[int, int]:
    visual = model.visual
    size = getattr(visual, "image_size", None) or getattr(visual, "preprocess_cfg", {}).get("size", 224)
    return (size, size) if isinstance(size, int) else tuple(size)


def _norm_stats(model) -> tuple[Sequence[float], Sequence[float]]:
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", None)
    if cfg is not None:
        return cfg["mean"], cfg["std"]
    return getattr(visual, "image_mean", None) or _OPENAI_MEAN, getattr(visual, "image_std", None) or _OPENAI_STD


def clip_preprocess(model, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, S_h, S_w) normalised for `model`, in torch (differentiable).

    Same policy as open_clip's default transform: resize the shortest side to the model's input size
    (bicubic, antialiased), centre crop, normalise with the model's mean/std; no-op resize at native size.
    """
    _check_images(images)
    (h, w), (H, W) = _input_size(model), images.shape[-2:]
    x = images
    if (H, W) != (h, w):
        scale = max(h / H, w / W)
        size = (max(h, int(H * scale)), max(w, int(W * scale)))  # truncate the long side, as torchvision does
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        x = x.clamp(0, 1)  # bicubic overshoots; PIL clamps the same way
        top, left = round((size[0] - h) / 2), round((size[1] - w) / 2)
        x = x[..., top:top + h, left:left + w]
    mean, std = _norm_stats(model)
    mean = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _text_features(model, tokenizer, prompts: Sequence[str], device) -> torch.Tensor:
    # Prompts are constants of the objective: no gradient flows into the text tower.
    with torch.no_grad():
        return F.normalize(model.encode_text(tokenizer(list(prompts)).to(device)).float(), dim=-1)  # (P, D)


def _image_features(model, images: torch.Tensor) -> torch.Tensor:
    return F.normalize(model.encode_image(clip_preprocess(model, images)).float(), dim=-1)  # (B, D)


def clip_score(model, tokenizer, images: torch.Tensor, prompts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """CLIPScore per image: 100 * max(cos(E_I(x_i), E_T(p_i)), 0), shape (B,); differentiable w.r.t. images."""
    prompts = check_prompts(prompts, len(check_images(images)))  # a bare str would be scored letter by letter
    check_int(batch_size, "batch_size", 1), check_same_device(images, model)
    if len(prompts) != len(images):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
    scores = []
    for i in range(0, len(images), batch_size):
        e_i = _image_features(model, images[i:i + batch_size])  # (b, D)
        e_t = _text_features(model, tokenizer, prompts[i:i + batch_size], images.device)  # (b, D)
        scores.append(100.0 * (e_i * e_t).sum(-1).clamp(0, 1))  # cos -> CLIPScore (clamp 1: rounding)
    return torch.cat(scores)


def judge_logit_scale(model) -> float:
    """The CLIP's own learned logit scale exp(t) (100 for OpenAI's CLIPs), which CLIP-IQA's softmax uses."""
    t = getattr(model, "logit_scale", None)
    if t is None:
        raise ValueError(f"{type(model).__name__} has no logit_scale; pass clip_iqa(..., logit_scale=<number>)")
    return float(torch.as_tensor(t).detach().float().exp().clamp(max=100))


def clip_iqa(model, tokenizer, images: torch.Tensor, prompt_pairs=(CLIPIQA_QUALITY_PAIR,),
             batch_size: int = 32, logit_scale: float | None = None) -> torch.Tensor:
    """CLIP-IQA per image: P(p+ | x) from softmax(logit_scale * [cos+, cos-]), averaged over pairs; (B,) in [0, 1].

    logit_scale None = the judge's own learned scale (as real CLIP-IQA uses CLIP's, which is 100). A fixed
    100 on a judge that learned a smaller scale saturates the score (the first tiny judge: 81% of FP images
    above 0.95); the legacy row of results/instrument_validity.md keeps that setting on purpose.
    """
    check_images(images), check_int(batch_size, "batch_size", 1), check_same_device(images, model)
    logit_scale = judge_logit_scale(model) if logit_scale is None else logit_scale
    pairs = [tuple(p) for p in prompt_pairs]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(f"prompt_pairs={prompt_pairs!r} must be a non-empty list of (positive, negative) prompts, "
                         f"e.g. ({CLIPIQA_QUALITY_PAIR!r},)")
    e_t = _text_features(model, tokenizer, [p for pair in pairs for p in pair], images.device)  # (2P, D)
    scores = []
    for i in range(0, len(images), batch_size):
        cos = _image_features(model, images[i:i + batch_size]) @ e_t.T  # (b, 2P)
        probs = (logit_scale * cos.view(-1, len(pairs), 2)).softmax(-1)  # (b, P, 2): softmax per antonym pair
        scores.append(probs[..., 0].mean(-1))  # P(positive), mean over pairs
    return torch.cat(scores)


def make_pyiqa_clipiqa(model) -> torch.nn.Module:
    """pyiqa's `clipiqa` network built around `model` (an OpenAI-layout open_clip CLIP) instead of the hub RN50.

    Differences to `clip_iqa`: pyiqa averages PYIQA_CLIPIQA_PAIRS, uses the model's own logit_scale, feeds
    images at their native size, drops the ViT's positional embedding (pos_embedding=False), assumes QuickGELU
    and heads = width // 64, and rounds the weights through fp16 (~1e-4). Call the result on (B, 3, H, W) in [0, 1].
    """
    try:
        import pyiqa
        from pyiqa.archs import clipiqa_arch
        from pyiqa.archs.clip_model import build_model
    except ImportError as err:
        raise ImportError(f"the pyiqa CLIP-IQA path needs pyiqa and setuptools<81 ({err}); "
                          "use iq='clipiqa' (this repo's implementation) instead") from err
    try:
        net = build_model({k: v.detach().clone() for k, v in model.state_dict().items()}).float().eval()
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"pyiqa cannot rebuild this CLIP ({type(err).__name__}: {err}); it needs an OpenAI-layout "
                         "open_clip model (ViT or ModifiedResNet, widths multiple of 64); use iq='clipiqa'") from err
    original_load = clipiqa_arch.load
    clipiqa_arch.load = lambda *args, **kwargs: net  # pyiqa would otherwise download RN50.pt
    try:
        return pyiqa.create_metric("clipiqa", device="cpu").net
    finally:
        clipiqa_arch.load = original_load


def jaq(tc_scores: torch.Tensor, iq_scores: torch.Tensor, k: float = 2.0, tc_floor: float = 1.0) -> dict:
    """JAQ = log(max(mean CLIPScore, tc_floor)) + k * mean CLIP-IQA, from per-image scores; 0-d tensors."""
    k = check_number(k, "k", 0, hint="the paper uses k=2; k=0 is TC only")
    tc_floor = check_number(tc_floor, "tc_floor", 0, low_open=True, hint="the default 1.0 is a mean cosine of 0.01")
    tc_scores, iq_scores = torch.as_tensor(tc_scores).float(), torch.as_tensor(iq_scores).float()
    check_finite(tc_scores, "tc_scores", "the images were NaN or the judge diverged; check them with check_images")
    check_finite(iq_scores, "iq_scores", "the images were NaN or the judge diverged; check them with check_images")
    if tc_scores.ndim != 1 or tc_scores.shape != iq_scores.shape or len(tc_scores) == 0:
        raise ValueError(f"tc_scores {tuple(tc_scores.shape)} and iq_scores {tuple(iq_scores.shape)} must be "
                         "non-empty 1-D tensors with one score per image (same images for both)")
    if not (0 <= tc_scores.min() and tc_scores.max() <= 100 and 0 <= iq_scores.min() and iq_scores.max() <= 1):
        raise ValueError("tc_scores must be CLIPScores in [0, 100] and iq_scores CLIP-IQA values in [0, 1]; "
                         "compute them with clip_score / clip_iqa")
    if k < 0 or tc_floor <= 0:
        raise ValueError(f"k={k} must be >= 0 and tc_floor={tc_floor} > 0 (the paper uses k=2, tc_floor=1)")
    tc = torch.log(tc_scores.mean().clamp(min=tc_floor))  # TC: log of the set-mean CLIPScore
    iq = iq_scores.mean()  # IQ: set-mean CLIP-IQA
    return {"tc": tc, "iq": iq, "jaq": tc + k * iq}


def best_by_jaq(score_sets: Mapping[Hashable, tuple], k: float = 2.0) -> tuple[Hashable, dict]:
    """argmax over candidates {key: (tc_scores, iq_scores)} of their JAQ; returns (best key, {key: jaq value}).

    The released code took max() over the raw score lists, which compares CLIPScores lexicographically.
    """
    if not score_sets:
        raise ValueError("score_sets is empty; pass {candidate: (tc_scores, iq_scores)} for at least one candidate")
    values = {key: jaq(tc, iq, k)["jaq"].item() for key, (tc, iq) in score_sets.items()}
    return max(values, key=values.get), values


@dataclass
class JAQScorer:
    """Callable objective: `scorer(images, prompts) -> {"tc", "iq", "jaq"}` (0-d tensors, differentiable).

    `kind` picks what "jaq" holds: "jaq" = TC + k*IQ, "clipscore" = TC, "iq" = IQ; both terms are always reported.
    `iq` picks the quality scorer: "clipiqa" (this file, on `iq_judge` or `judge`) or "pyiqa-clipiqa".
    """
    judge: Judge
    kind: str = "jaq"
    k: float = 2.0
    iq: str = "clipiqa"
    iq_judge: Judge | None = None
    prompt_pairs: tuple = (CLIPIQA_QUALITY_PAIR,)
    iq_logit_scale: float | None = None  # None: the IQ judge's learned scale; a number fixes it (legacy: 100)
    batch_size: int = 16
    tc_floor: float = 1.0
    _pyiqa_net: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.judge = as_judge(self.judge)
        self.iq_judge = self.judge if self.iq_judge is None else as_judge(self.iq_judge)
        self.prompt_pairs = tuple(tuple(p) for p in self.prompt_pairs)
        if self.kind not in OBJECTIVES:
            raise ValueError(f"kind={self.kind!r} is not one of {list(OBJECTIVES)}")
        if self.iq not in IQ_SCORERS:
            raise ValueError(f"iq={self.iq!r} is not one of {list(IQ_SCORERS)}")
        self.k = check_number(self.k, "k", 0, hint="paper: k=2; k=0 is TC only")
        if not (math.isfinite(self.k) and self.k >= 0):
            raise ValueError(f"k={self.k} must be a finite number >= 0 (paper: k=2; k=0 is TC only)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.iq == "pyiqa-clipiqa" and self.prompt_pairs != (CLIPIQA_QUALITY_PAIR,):
            raise ValueError(f"prompt_pairs={self.prompt_pairs!r} would be ignored: pyiqa-clipiqa always uses its "
                             "own PYIQA_CLIPIQA_PAIRS; drop prompt_pairs or use iq='clipiqa'")

    @property
    def name(self) -> str:
        iq = self.iq if self.prompt_pairs == (CLIPIQA_QUALITY_PAIR,) or self.iq != "clipiqa" \
            else f"clipiqa(n_pairs={len(self.prompt_pairs)})"
        if self.iq_logit_scale is not None:
            iq = f"{iq}(scale={self.iq_logit_scale:g})"
        tc_part, iq_part = f"tc=clipscore[{self.judge.name}]", f"iq={iq}[{self.iq_judge.name}]"
        parts = {"jaq": [f"k={self.k:g}", tc_part, iq_part], "clipscore": [tc_part], "iq": [iq_part]}[self.kind]
        return f"{self.kind}({', '.join(parts)})"

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "objective": OBJECTIVES[self.kind], "k": self.k,
                "tc": "clipscore", "tc_judge": self.judge.name, "tc_floor": self.tc_floor, "iq": self.iq,
                "iq_judge": self.iq_judge.name, "iq_logit_scale": self.iq_logit_scale, "prompt_pairs": [list(p) for p in (
                    PYIQA_CLIPIQA_PAIRS if self.iq == "pyiqa-clipiqa" else self.prompt_pairs)],
                "batch_size": self.batch_size}

    def iq_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image quality (B,) with the configured IQ scorer."""
        model = self.iq_judge.model
        if self.iq == "clipiqa":
            return clip_iqa(model, self.iq_judge.tokenizer, images, self.prompt_pairs, self.batch_size,
                            logit_scale=self.iq_logit_scale)
        _check_images(images)
        if self._pyiqa_net is None:
            self._pyiqa_net = make_pyiqa_clipiqa(model)
        return torch.cat([self._pyiqa_net(images[i:i + self.batch_size]).view(-1)
                          for i in range(0, len(images), self.batch_size)])

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> dict:
        tc_scores = clip_score(self.judge.model, self.judge.tokenizer, images, prompts, self.batch_size)
        out = jaq(tc_scores, self.iq_scores(images), k=self.k, tc_floor=self.tc_floor)
        w_tc, w_iq = {"jaq": (1.0, self.k), "clipscore": (1.0, 0.0), "iq": (0.0, 1.0)}[self.kind]
        out["jaq"] = w_tc * out["tc"] + w_iq * out["iq"]  # the maximised objective of this kind
        return out


def make_scorer(kind: str, judge, k: float = 2.0, **options) -> JAQScorer:
    """`make_scorer("jaq" | "clipscore" | "iq", judge, k)`; options go to JAQScorer (iq, iq_judge, batch_size...)."""
    return JAQScorer(judge=judge, kind=kind, k=k, **options)


def load_open_clip_judge(arch: str, checkpoint_path: str | Path | None = None, device: str = "cpu") -> Judge:
    """An open_clip judge from local weights: built-in `arch` + `checkpoint_path`, or a folder holding
    open_clip_config.json and its weights (as `models/tinyworld-clip/`). Never touches the network.

    OpenAI-trained weights need the QuickGELU variant of the architecture ("ViT-L-14-quickgelu"); open_clip
    does not check this for file checkpoints and the plain name would load them with the wrong activation.
    """
    import open_clip

    if Path(arch).is_dir():
        folder = Path(arch)
        if checkpoint_path is not None:
            raise ValueError(f"checkpoint_path={checkpoint_path!r} is ignored for a folder judge ({folder}); "
                             "put the weights in the folder and drop checkpoint_path")
        if not (folder / "open_clip_config.json").is_file() or not any(
                p.suffix in (".safetensors", ".bin", ".pth") for p in folder.iterdir()):
            raise FileNotFoundError(f"{folder} must hold open_clip_config.json and a weights file "
                                    "(open_clip_model.safetensors); train it with scripts/ or copy it there")
        model_id, pretrained, name = f"local-dir:{folder}", None, folder.name
    else:
        if arch not in open_clip.list_models():
            raise ValueError(f"arch={arch!r} is not an open_clip architecture; pick one of open_clip.list_models() "
                             "(e.g. 'ViT-L-14', 'ViT-B-32') or pass a folder with open_clip_config.json")
        if checkpoint_path is None or not Path(checkpoint_path).is_file():
            raise FileNotFoundError(
                f"no local weights for open_clip {arch!r} (checkpoint_path={checkpoint_path!r}). No model hub is "
                "reachable from this machine, so nothing is downloaded: fetch the checkpoint elsewhere (e.g. "
                f"open_clip.create_model('{arch}', pretrained='openai') caches open_clip_pytorch_model.bin), copy "
                "the file here and pass checkpoint_path=<file>, or use the tiny judge in models/tinyworld-clip/")
        model_id, pretrained, name = arch, str(checkpoint_path), arch
    model = open_clip.create_model(model_id, pretrained=pretrained, device=device, load_weights=True)
    return Judge(model.eval(), open_clip.get_tokenizer(model_id), name)

