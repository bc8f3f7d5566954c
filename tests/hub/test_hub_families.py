"""The hub tier on tiny random-weight pipelines: each family loads through the registry from a local copy, and its
Q-Sched scheduler drops into the stock pipeline, reproducing it exactly at identity coefficients."""
import pytest
import torch
from tiny_hub_pipelines import TINY, build_pcm

from qsched_core import hub
from qsched_core.sched import QSchedCoefficients, make_qsched_scheduler

PROMPTS = ["a small red circle on the left", "a large blue star, on a plain gray background"]


def _images(pipe, spec, extra, seed=0):
    out = pipe(prompt=PROMPTS, num_inference_steps=spec.steps, guidance_scale=spec.guidance_scale, output_type="pt",
               generator=torch.Generator().manual_seed(seed), **extra)
    return out.images


def _load(name, hub_dir):
    """Through the registry from $QSCHED_HUB_DIR/<repo_id>; PCM's LoRA needs peft, so its base is built directly."""
    build, _ = TINY[name]
    spec = hub.pipeline_spec(name)
    if spec.lora is not None:
        pipe = build()
        pipe.set_progress_bar_config(disable=True)
        return pipe
    build().save_pretrained(hub_dir / spec.repo_id)
    return hub.load_pipeline(name)


@pytest.mark.parametrize("name", list(TINY))
def test_qsched_scheduler_drops_into_the_pipeline(name, hub_dir):
    spec = hub.pipeline_spec(name)
    pipe = _load(name, hub_dir)
    assert type(pipe).__name__ == spec.pipeline_class
    assert type(pipe.scheduler).__name__ == spec.scheduler_class
    extra = TINY[name][1]
    with torch.no_grad():
        stock = _images(pipe, spec, extra)
        pipe.scheduler = make_qsched_scheduler(pipe.scheduler, QSchedCoefficients())
        identity = _images(pipe, spec, extra)
        pipe.scheduler = make_qsched_scheduler(pipe.scheduler, QSchedCoefficients(start_x=0.9, start_eps=0.9))
        scaled = _images(pipe, spec, extra)
    assert type(pipe.scheduler).__name__.startswith("QSched")
    assert torch.equal(identity, stock), f"{name}: max diff {(identity - stock).abs().max():.3g} at c = 1"
    assert (scaled - stock).abs().max() > 1e-3, f"{name}: coefficients 0.9 left the images unchanged"


def test_local_copy_through_path_argument(tmp_path):
    pipe = TINY["SimianLuo/LCM_Dreamshaper_v7"][0]()
    pipe.save_pretrained(tmp_path / "lcm")
    loaded = hub.load_pipeline("SimianLuo/LCM_Dreamshaper_v7", path=tmp_path / "lcm")
    assert type(loaded).__name__ == "LatentConsistencyModelPipeline"
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], value), name


def test_pcm_needs_peft_for_its_lora(hub_dir):
    pytest.importorskip("diffusers")
    try:
        import peft  # noqa: F401
        pytest.skip("peft is installed here; the LoRA would then be looked up (and missing)")
    except ImportError:
        pass
    build_pcm().save_pretrained(hub_dir / "runwayml/stable-diffusion-v1-5")
    with pytest.raises(ImportError, match="peft"):
        hub.load_pipeline("pcm-sd15-4step")
