"""Bad inputs to the coefficient search, the Q-Sched scheduler, the sampler, seeding, statistics, the hub registry
and the tiny world (grid_points 1 or 2 was rejected with a message about coarse_points)."""
import pytest

from qsched_core import hub, sampling, sched, stats, utils
from qsched_core.search import SearchConfig
from qsched_core.tinyworld import world
from robust_helpers import clear


def test_small_grids_are_judged_on_their_own_terms():
    assert list(SearchConfig(grid_points=2).axis()) == [0.8, 1.2]  # a 2x2 grid of the range ends is a grid
    clear(lambda: SearchConfig(grid_points=1), "grid_points=1", ">= 2")
    clear(lambda: SearchConfig(grid_points=2, method="coarse_to_fine"), "coarse_points=3", "grid_points=2")
    assert SearchConfig(grid_points=2, method="gradient").method == "gradient"


SEARCH_CASES = [
    pytest.param(dict(grid_min="0.8"), ("grid_min='0.8' (str)", "float(grid_min)"), id="search-grid-min-str"),
    pytest.param(dict(grid_max=float("nan")), ("grid_max=nan", "finite"), id="search-grid-max-nan"),
    pytest.param(dict(grid_max=float("inf")), ("grid_max=inf",), id="search-grid-max-inf"),
    pytest.param(dict(grid_min=1.2, grid_max=0.8), ("0 < grid_min < grid_max",), id="search-reversed"),
    pytest.param(dict(grid_min=0.0), ("grid_min=0.0",), id="search-grid-min-0"),
    pytest.param(dict(num_prompts=0), ("num_prompts=0", ">= 1"), id="search-prompts-0"),
    pytest.param(dict(num_steps=2.0), ("num_steps=2.0", "int"), id="search-steps-float"),
    pytest.param(dict(batch_size=True), ("batch_size=True",), id="search-batch-bool"),
    pytest.param(dict(method="random"), ("method='random'",), id="search-method"),
    pytest.param(dict(scheduler_family="ddim"), ("scheduler_family='ddim'",), id="search-family"),
    pytest.param(dict(eta=1.5), ("eta=1.5", "[0, 1]"), id="search-eta"),
    pytest.param(dict(eta=float("nan")), ("eta=nan",), id="search-eta-nan"),
    pytest.param(dict(grad_lr=0.0), ("grad_lr=0.0",), id="search-lr-0"),
    pytest.param(dict(seed=-1), ("seed=-1",), id="search-seed-negative"),
]


@pytest.mark.parametrize("fields, fragments", SEARCH_CASES)
def test_search_config(fields, fragments):
    clear(lambda: SearchConfig(**fields), *fragments)


SCHED_CASES = [
    pytest.param(lambda: sched.QSchedCoefficients(start_x=0), ("start_x=0.0", "> 0"), id="coef-zero"),
    pytest.param(lambda: sched.QSchedCoefficients(start_x=float("nan")), ("start_x=nan",), id="coef-nan"),
    pytest.param(lambda: sched.QSchedCoefficients(start_eps=float("inf")), ("start_eps=inf",), id="coef-inf"),
    pytest.param(lambda: sched.QSchedCoefficients(start_x="1"), ("start_x='1'",), id="coef-str"),
    pytest.param(lambda: sched.ramp(1.0, 1.0, 0), ("num_steps=0",), id="ramp-zero-steps"),
    pytest.param(lambda: sched.make_qsched_scheduler(object()), ("no Q-Sched variant", "LCMScheduler"),
                 id="sched-unsupported"),
    pytest.param(lambda: sched.QSchedCoefficients.from_config({"start_z": 1.0}), ("start_z",), id="coef-config-key"),
]


@pytest.mark.parametrize("fn, fragments", SCHED_CASES)
def test_scheduler_inputs(fn, fragments):
    clear(fn, *fragments)


SAMPLING_CASES = [
    pytest.param(lambda p: sampling.sample_lcm(p, "a red circle", num_steps=1), ("prompts='a red circle'",
                                                                                "[prompt]"), id="sample-bare-string"),
    pytest.param(lambda p: sampling.sample_lcm(p, [], num_steps=1), ("prompts=[]",), id="sample-empty-prompts"),
    pytest.param(lambda p: sampling.sample_lcm(p, ["a"], num_steps=0), ("num_steps=0",), id="sample-zero-steps"),
    pytest.param(lambda p: sampling.sample_lcm(p, ["a"], num_steps=1, guidance_scale=float("nan")),
                 ("guidance_scale=nan", "finite"), id="sample-guidance-nan"),
    pytest.param(lambda p: sampling.sample_lcm(p, ["a"], num_steps=1, guidance_scale="4"),
                 ("guidance_scale='4'",), id="sample-guidance-str"),
    pytest.param(lambda p: sampling.sample_lcm(p, ["a"], num_steps=1, eta=2.0), ("eta=2.0",), id="sample-eta"),
    pytest.param(lambda p: sampling.sample_lcm(p, ["a"], num_steps=1, output="pil"), ("output='pil'",),
                 id="sample-output"),
    pytest.param(lambda p: sampling.sample_lcm(p), ("exactly one of prompts=",), id="sample-no-prompts"),
    pytest.param(lambda p: sampling.latent_shape(p, 1, 50, 50), ("height=50", "vae_scale_factor=4"),
                 id="latent-size"),
]


@pytest.mark.parametrize("fn, fragments", SAMPLING_CASES)
def test_sampling_inputs(fn, fragments, pipe):
    clear(lambda: fn(pipe), *fragments)


MISC_CASES = [
    pytest.param(lambda: utils.set_seed(-1), ("seed=-1",), id="seed-negative"),
    pytest.param(lambda: utils.set_seed(1.5), ("seed=1.5",), id="seed-float"),
    pytest.param(lambda: utils.set_seed(True), ("seed=True",), id="seed-bool"),
    pytest.param(lambda: stats.bootstrap_ci([1.0, float("nan"), 2.0]), ("finite",), id="bootstrap-nan"),
    pytest.param(lambda: stats.bootstrap_ci([]), ("(0,)", "non-empty"), id="bootstrap-empty"),
    pytest.param(lambda: stats.bootstrap_ci([1.0, 2.0], alpha=2), ("alpha=2",), id="bootstrap-alpha"),
    pytest.param(lambda: stats.paired_bootstrap_diff([1.0, 2.0], [1.0]), ("a has 2", "b 1"), id="paired-lengths"),
    pytest.param(lambda: stats.sign_test([1, 2], [1]), ("a has 2",), id="sign-test-lengths"),
    pytest.param(lambda: hub.load_pipeline("nope"), ("unknown pipeline 'nope'", "tinyworld-lcm"), id="hub-pipeline"),
    pytest.param(lambda: hub.load_judge("nope"), ("unknown judge 'nope'", "tinyworld-clip"), id="hub-judge"),
    pytest.param(lambda: world.eval_prompts(-1), ("n=-1",), id="eval-prompts-negative"),
    pytest.param(lambda: world.eval_prompts(2.5), ("n=2.5",), id="eval-prompts-float"),
    pytest.param(lambda: world.calib_prompts(-3), ("n=-3",), id="calib-prompts-negative"),
    pytest.param(lambda: world.sample_scenes(3, split="val"), ("split='val'",), id="scenes-split"),
    pytest.param(lambda: world.parse_caption("hello"), ("caption='hello'", "caption_of"), id="parse-caption"),
]


@pytest.mark.parametrize("fn, fragments", MISC_CASES)
def test_misc_inputs(fn, fragments):
    clear(fn, *fragments)


def test_env_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("QSCHED_FAST", "yes")
    clear(utils.fast_mode, "QSCHED_FAST='yes'", "'0' or '1'")
