"""One registry of named pipelines and judges, for both tiers of the repo (DESIGN.md §1).

    pipe  = hub.load_pipeline("tinyworld-lcm")                       # the shipped tiny student (default)
    pipe  = hub.load_pipeline("SimianLuo/LCM_Dreamshaper_v7", path="/data/lcm-dreamshaper-v7")
    judge = hub.load_judge("tinyworld-clip")                         # a qsched_core.jaq.Judge

Every function of the repo takes a pipeline or a judge object, so the tiny world and the real models run the
same code; this file only knows *where* each one comes from and with which settings the paper samples it
(spec qsched.md §4.1): pipeline class, scheduler family (which picks the Q-Sched scheduler in `sched.py`),
default steps, guidance and resolution.

Nothing can be downloaded here: hub entries load with `local_files_only=True`, from (in this order) the
`path=` argument, `$QSCHED_HUB_DIR/<hub id>`, or the Hugging Face cache. When none holds the weights, the
error says so and how to point the loader at a local copy. The hub tier is tested on tiny random-weight
pipelines of the same classes (tests/hub/).

Differences to the released Q-Sched code: one loader instead of per-script `load_pipe` branches; CPU and
float32 by default (the paper runs fp16 / bf16 on a GPU, recorded as `paper_dtype`; pass dtype= to match).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

HUB_DIR_ENV = "QSCHED_HUB_DIR"
FAMILIES = ("lcm", "tcd", "euler_a", "flow", "ddim")  # ddim: the tiny teacher, which has no Q-Sched variant
SCHEDULER_CLASS = {"lcm": "LCMScheduler", "tcd": "TCDScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
                   "flow": "FlowMatchEulerDiscreteScheduler", "ddim": "DDIMScheduler"}


@dataclass(frozen=True)
class PipelineSpec:
    """A named pipeline and the settings the paper samples it with (qsched.md §4.1)."""

    name: str
    tier: str                  # "tiny" (ships in models/) | "hub" (local copy of a Hugging Face repo)
    pipeline_class: str        # diffusers class name
    family: str                # scheduler family, one of FAMILIES
    steps: int                 # default number of sampling steps
    guidance_scale: float      # default guidance (LCM: w + 1 of the guidance embedding; 0 = no CFG)
    resolution: int            # default image side in pixels
    repo_id: str | None = None  # Hugging Face repo of the weights (hub tier)
    lora: tuple[str, str] | None = None  # (repo, weight file) of a LoRA fused on top (PCM)
    paper_dtype: str = "float32"
    note: str = ""

    def __post_init__(self):
        if self.tier not in ("tiny", "hub"):
            raise ValueError(f"tier={self.tier!r} must be 'tiny' or 'hub'")
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} must be one of {FAMILIES}")
        if self.tier == "hub" and not self.repo_id:
            raise ValueError(f"hub pipeline {self.name!r} needs repo_id (the Hugging Face repo of its weights)")

    @property
    def scheduler_class(self) -> str:
        return SCHEDULER_CLASS[self.family]


@dataclass(frozen=True)
class JudgeSpec:
    """A named CLIP judge: the tiny one, or an open_clip architecture loaded from a local checkpoint."""

    name: str
    arch: str           # open_clip architecture ("" for the tiny judge)
    weights: str        # where the paper's weights come from
    checkpoint_file: str = ""  # looked up as $QSCHED_HUB_DIR/open_clip/<name>/<checkpoint_file>


def _pcm(steps: int) -> PipelineSpec:
    return PipelineSpec(
        f"pcm-sd15-{steps}step", "hub", "StableDiffusionPipeline", "tcd", steps, 0.0, 512,
        repo_id="runwayml/stable-diffusion-v1-5",
        lora=("wangfuyun/PCM_Weights", f"sd15/pcm_sd15_smallcfg_{steps}step_converted.safetensors"),
        paper_dtype="float16", note="SD1.5 + PCM small-CFG LoRA, sampled by TCD with gamma = 0")


PIPELINES: dict[str, PipelineSpec] = {s.name: s for s in [
    PipelineSpec("tinyworld-lcm", "tiny", "LatentConsistencyModelPipeline", "lcm", 4, 4.0, 64,
                 note="4.3M-param LCM student of the tiny world (models/tinyworld/lcm)"),
    PipelineSpec("tinyworld-teacher", "tiny", "StableDiffusionPipeline", "ddim", 25, 4.0, 64,
                 note="the tiny teacher UNet with DDIM; a reference, not a Q-Sched target"),
    PipelineSpec("SimianLuo/LCM_Dreamshaper_v7", "hub", "LatentConsistencyModelPipeline", "lcm", 4, 8.0, 512,
                 repo_id="SimianLuo/LCM_Dreamshaper_v7", paper_dtype="float16",
                 note="the paper's LCM; guidance enters as the w-embedding, one UNet call per step"),
    PipelineSpec("stabilityai/sdxl-turbo", "hub", "StableDiffusionXLPipeline", "euler_a", 4, 0.0, 512,
                 repo_id="stabilityai/sdxl-turbo", paper_dtype="float16",
                 note="Euler-ancestral, trailing timesteps; also run at 1 step in the paper"),
    PipelineSpec("black-forest-labs/FLUX.1-schnell", "hub", "FluxPipeline", "flow", 4, 0.0, 1024,
                 repo_id="black-forest-labs/FLUX.1-schnell", paper_dtype="bfloat16",
                 note="flow-matching Euler, shift 1, no dynamic shifting"),
    *[_pcm(n) for n in (2, 4, 8, 16)],
]}
DEFAULT_PIPELINE = "tinyworld-lcm"
_HAS_SAFETY_CHECKER = ("StableDiffusionPipeline", "LatentConsistencyModelPipeline")  # loaded without it

JUDGES: dict[str, JudgeSpec] = {s.name: s for s in [
    JudgeSpec("tinyworld-clip", "", "models/tinyworld/clip (trained by this repo; graded quality, version 2)"),
    JudgeSpec("tinyworld-clip-v1", "", "models/tinyworld/legacy/clip_v1 (the first judge: its quality term "
              "saturates; kept as the instrument that cannot see the damage)"),
    # OpenAI-trained CLIPs use QuickGELU; the plain open_clip names would load them with the wrong activation
    JudgeSpec("ViT-L-14", "ViT-L-14-quickgelu", "openai (CLIPScore's openai/clip-vit-large-patch14)",
              "open_clip_pytorch_model.bin"),
    JudgeSpec("ViT-B-32", "ViT-B-32-quickgelu", "openai", "open_clip_pytorch_model.bin"),
]}
DEFAULT_JUDGE = "tinyworld-clip"
TINY_JUDGE_FOLDERS = {"tinyworld-clip": "clip", "tinyworld-clip-v1": "legacy/clip_v1"}  # under models/tinyworld


def list_pipelines() -> list[str]:
    return list(PIPELINES)


def list_judges() -> list[str]:
    return list(JUDGES)


def pipeline_spec(name: str) -> PipelineSpec:
    """The registry entry of `name` (a ValueError listing the known names otherwise)."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)} (see qsched_core.hub.PIPELINES)")
    return PIPELINES[name]


def judge_spec(name: str) -> JudgeSpec:
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; known: {', '.join(JUDGES)} (see qsched_core.hub.JUDGES)")
    return JUDGES[name]


def _missing_weights(what: str, repo_id: str, tried: list[str], cause: Exception | None = None) -> FileNotFoundError:
    hint = (f"No model hub is reachable from this machine, so {what} cannot be downloaded, and no local copy "
            f"was found (tried: {'; '.join(tried)}). Download it where the hub is reachable "
            f"(`huggingface-cli download {repo_id} --local-dir <folder>`), copy the folder here, then pass "
            f"path=<folder> or set {HUB_DIR_ENV}=<root> with the copy at <root>/{repo_id}.")
    if cause is not None:
        hint += f" (loader said: {type(cause).__name__}: {str(cause).splitlines()[0][:200]})"
    return FileNotFoundError(hint)


def resolve_source(repo_id: str, path: str | Path | None = None) -> tuple[str, list[str]]:
    """Where to load `repo_id` from: `path`, else $QSCHED_HUB_DIR/<repo_id> if it exists, else the repo id itself
    (then only the Hugging Face cache can serve it). Returns (source, the places tried, for error messages)."""
    if path is not None:
        if not Path(path).exists():
            raise _missing_weights(repr(repo_id), repo_id, [f"path={str(path)!r} does not exist"])
        return str(path), [f"path={str(path)!r}"]
    tried = []
    root = os.environ.get(HUB_DIR_ENV)
    if root:
        candidate = Path(root) / repo_id
        if candidate.exists():
            return str(candidate), [str(candidate)]
        tried.append(f"{HUB_DIR_ENV}/{repo_id} = {candidate}")
    else:
        tried.append(f"{HUB_DIR_ENV} is not set")
    return repo_id, [*tried, "the Hugging Face cache (local_files_only=True)"]


def _load_hub(spec: PipelineSpec, device, dtype, path):
    import diffusers

    source, tried = resolve_source(spec.repo_id, path)
    klass = getattr(diffusers, spec.pipeline_class)
    extra = {"safety_checker": None, "feature_extractor": None} if spec.pipeline_class in _HAS_SAFETY_CHECKER else {}
    try:
        pipe = klass.from_pretrained(source, dtype=dtype, local_files_only=True, **extra)
    except (OSError, ValueError) as err:  # diffusers / huggingface_hub report missing files as OSError or ValueError
        raise _missing_weights(f"pipeline {spec.name!r}", spec.repo_id, tried, err) from err
    if spec.lora is not None:
        _load_lora(pipe, spec)
    wanted = getattr(diffusers, spec.scheduler_class)
    if not isinstance(pipe.scheduler, wanted):  # PCM ships SD1.5's PNDM; the paper samples it with TCD
        pipe.scheduler = wanted.from_config(pipe.scheduler.config)
    return pipe


def _load_lora(pipe, spec: PipelineSpec) -> None:
    repo, weight_name = spec.lora
    try:
        import peft  # noqa: F401  (diffusers' LoRA loader needs it)
    except ImportError as err:
        raise ImportError(f"{spec.name} fuses the LoRA {repo}/{weight_name}, which needs `peft` (not installed "
                          "here); install peft or load the base model alone") from err
    source, tried = resolve_source(repo, None)
    try:
        pipe.load_lora_weights(source, weight_name=weight_name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise _missing_weights(f"LoRA {weight_name!r}", repo, tried, err) from err
    pipe.fuse_lora()


def load_pipeline(name: str = DEFAULT_PIPELINE, device: str = "cpu", dtype: torch.dtype = torch.float32,
                  path: str | Path | None = None):
    """A diffusers pipeline by registry name, on `device` in `dtype`, progress bars off.

    `path` points a hub entry at a local copy of its repo (for the tiny world: another models/tinyworld root).
    """
    spec = pipeline_spec(name)
    with _quiet_loading():
        if spec.tier == "tiny":
            from .tinyworld import loaders

            kwargs = {} if path is None else {"root": Path(path)}
            load = loaders.load_pipeline if spec.family == "lcm" else loaders.load_teacher_pipeline
            pipe = load(device=device, dtype=dtype, **kwargs)
        else:
            pipe = _load_hub(spec, device, dtype, path).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@contextmanager
def _quiet_loading():
    """No 'Loading pipeline components' / 'Loading weights' bars while loading (they clutter notebooks)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_on = diffusers_logging.is_progress_bar_enabled()
    transformers_on = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if diffusers_on:
            diffusers_logging.enable_progress_bar()
        if transformers_on:
            transformers_logging.enable_progress_bar()


def load_judge(name: str = DEFAULT_JUDGE, path: str | Path | None = None, device: str = "cpu"):
    """A `qsched_core.jaq.Judge` by registry name; open_clip archs need their checkpoint file (`path` or
    $QSCHED_HUB_DIR/open_clip/<name>/<checkpoint_file>)."""
    from .jaq import Judge, load_open_clip_judge

    spec = judge_spec(name)
    if not spec.arch:
        from .tinyworld import loaders

        folder = TINY_JUDGE_FOLDERS[spec.name]
        model, tokenizer, _ = loaders.load_judge(device=device, folder=folder,
                                                 **({} if path is None else {"root": Path(path)}))
        return Judge(model, tokenizer, spec.name)
    root = os.environ.get(HUB_DIR_ENV)
    if path is None and root:
        candidate = Path(root) / "open_clip" / spec.name / spec.checkpoint_file
        path = candidate if candidate.is_file() else None
    try:
        judge = load_open_clip_judge(spec.arch, path, device=device)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}. Here: load_judge({name!r}, path=<file>), or put the file at "
                                f"${HUB_DIR_ENV}/open_clip/{spec.name}/{spec.checkpoint_file}.") from err
    return Judge(judge.model, judge.tokenizer, spec.name)
