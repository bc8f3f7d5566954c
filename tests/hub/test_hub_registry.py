"""The registry: names, per-family settings, clear errors when weights are missing, the tiny tier and judges."""
import diffusers
import pytest
import torch

from qsched_core import hub
from qsched_core.jaq import Judge, make_scorer
from qsched_core.sched import QSCHED_FOR_STOCK

HUB_NAMES = [n for n in hub.list_pipelines() if hub.pipeline_spec(n).tier == "hub"]


def test_registry_names_the_paper_models():
    names = set(hub.list_pipelines())
    assert {"tinyworld-lcm", "tinyworld-teacher", "SimianLuo/LCM_Dreamshaper_v7", "stabilityai/sdxl-turbo",
            "black-forest-labs/FLUX.1-schnell", "pcm-sd15-4step"} <= names
    assert hub.list_judges()[0] == hub.DEFAULT_JUDGE == "tinyworld-clip"
    assert {"ViT-L-14", "ViT-B-32"} <= set(hub.list_judges())


@pytest.mark.parametrize("name", [n for n in hub.list_pipelines() if hub.pipeline_spec(n).family != "ddim"])
def test_every_sampling_family_has_a_qsched_scheduler(name):
    spec = hub.pipeline_spec(name)
    assert getattr(diffusers, spec.scheduler_class) in QSCHED_FOR_STOCK
    assert hasattr(diffusers, spec.pipeline_class)


def test_spec_table_matches_the_paper_settings():
    expected = {"SimianLuo/LCM_Dreamshaper_v7": ("lcm", 4, 8.0), "stabilityai/sdxl-turbo": ("euler_a", 4, 0.0),
                "black-forest-labs/FLUX.1-schnell": ("flow", 4, 0.0), "pcm-sd15-2step": ("tcd", 2, 0.0)}
    for name, (family, steps, guidance) in expected.items():
        spec = hub.pipeline_spec(name)
        assert (spec.family, spec.steps, spec.guidance_scale) == (family, steps, guidance), name
    assert hub.pipeline_spec("pcm-sd15-8step").lora[1].endswith("smallcfg_8step_converted.safetensors")


@pytest.mark.parametrize("name", HUB_NAMES)
def test_missing_hub_weights_give_the_fix(name, hub_dir):
    with pytest.raises(FileNotFoundError) as err:
        hub.load_pipeline(name)
    msg = str(err.value)
    assert "No model hub is reachable" in msg and "path=<folder>" in msg and "QSCHED_HUB_DIR" in msg
    assert hub.pipeline_spec(name).repo_id in msg


def test_missing_local_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hub.load_pipeline("stabilityai/sdxl-turbo", path=tmp_path / "nowhere")


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="tinyworld-lcm"):
        hub.load_pipeline("SimianLuo/LCM_Dreamshaper_v8")
    with pytest.raises(ValueError, match="tinyworld-clip"):
        hub.load_judge("ViT-H-14")


def test_spec_validation():
    with pytest.raises(ValueError, match="repo_id"):
        hub.PipelineSpec("x", "hub", "FluxPipeline", "flow", 4, 0.0, 1024)
    with pytest.raises(ValueError, match="family"):
        hub.PipelineSpec("x", "tiny", "FluxPipeline", "dpm", 4, 0.0, 64)


def test_tiny_tier_loads_the_shipped_models():
    teacher = hub.load_pipeline("tinyworld-teacher")  # (the student is loaded by tests/qsched_tinyworld)
    assert type(teacher).__name__ == "StableDiffusionPipeline" and type(teacher.scheduler).__name__ == "DDIMScheduler"
    assert teacher.unet.dtype == torch.float32 and teacher.unet.device.type == "cpu"


def test_tiny_judge_scores_images():
    judge = hub.load_judge()
    assert isinstance(judge, Judge) and judge.name == "tinyworld-clip"
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    scores = make_scorer("jaq", judge)(images, ["a small red circle on the left", "a large blue star"])
    assert all(torch.isfinite(v) for v in scores.values())


def test_open_clip_judge_needs_a_local_checkpoint(hub_dir):
    with pytest.raises(FileNotFoundError) as err:
        hub.load_judge("ViT-B-32")
    assert "No model hub is reachable" in str(err.value) and "QSCHED_HUB_DIR/open_clip/ViT-B-32" in str(err.value)
