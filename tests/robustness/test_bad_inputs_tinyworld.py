"""Bad inputs to the tiny world's loaders, renderer and quality helpers: wrong devices and dtypes, bare strings,
out-of-range images (each named with its fix)."""
import pytest
import torch

from qsched_core import calibrate, hub, viz
from qsched_core.tinyworld import loaders, quality, render
from qsched_core.tinyworld.world import eval_prompts
from robust_helpers import clear

CASES = [
    pytest.param(lambda: loaders.load_pipeline(device="gpu"), ("device='gpu'", "'cpu'"), id="pipeline-device"),
    pytest.param(lambda: loaders.load_pipeline(dtype="float16"), ("dtype='float16'", "torch.float32"),
                 id="pipeline-dtype-str"),
    pytest.param(lambda: loaders.load_pipeline(dtype=torch.int8), ("dtype=torch.int8", "floating"),
                 id="pipeline-dtype-int"),
    pytest.param(lambda: loaders.load_teacher_pipeline(device="tpu"), ("device='tpu'",), id="teacher-device"),
    pytest.param(lambda: loaders.load_evaluator(device="tpu"), ("device='tpu'",), id="evaluator-device"),
    pytest.param(lambda: loaders.load_judge(device=3.5), ("device=3.5",), id="judge-device-float"),
    pytest.param(lambda: hub.load_pipeline("tinyworld-lcm", device="gpu"), ("device='gpu'",), id="hub-device"),
    pytest.param(lambda: render.render("a red circle"), ("scenes='a red circle'", "parse_caption"),
                 id="render-bare-string"),
    pytest.param(lambda: render.render([]), ("scenes=[]", "at least one scene"), id="render-empty"),
    pytest.param(lambda: render.degrade(torch.rand(1, 3, 64, 64), "melt", 0.5), ("kind='melt'",), id="degrade-kind"),
    pytest.param(lambda: render.degrade(torch.rand(1, 3, 64, 64), "blur", float("nan")), ("strength=nan",),
                 id="degrade-nan"),
    pytest.param(lambda: quality.predict_labels(loaders.load_evaluator(), torch.rand(2, 3, 64, 64) * 255),
                 ("must lie in [0, 1]", "divide uint8"), id="predict-0-255"),
    pytest.param(lambda: quality.predict_labels(loaders.load_evaluator(), torch.rand(2, 3, 32, 32)),
                 ("(2, 3, 32, 32)", "(B, 3, 64, 64)"), id="predict-32px"),
    pytest.param(lambda: viz.show_images(torch.full((1, 3, 8, 8), float("nan"))), ("images contains 192 NaN",),
                 id="viz-show-nan"),
    pytest.param(lambda: viz.show_images(torch.rand(2, 3, 8, 8) * 255), ("map them to [0, 1]",), id="viz-show-255"),
    pytest.param(lambda: viz.show_images(torch.rand(2, 3, 8, 8), titles=["a"]), ("1 titles for 2 images",),
                 id="viz-show-titles"),
    pytest.param(lambda: viz.plot_quant_error(bits=1), ("bits=1",), id="viz-quant-bits"),
    pytest.param(lambda: viz.plot_quant_error(group_size=48), ("group_size=48", "in_features=256"),
                 id="viz-quant-group"),
    pytest.param(lambda: viz.plot_heatmap([1, 2], [1, 2, 3], torch.zeros(2, 2).numpy()), ("(3, 2)",),
                 id="viz-heatmap-shape"),
    pytest.param(lambda: viz.demo_weight(n=0), ("n=0", ">= 1"), id="viz-demo-weight"),
    pytest.param(lambda: calibrate.trajectory_error(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5)),
                 ("(2, 3, 4, 5)", "must match"), id="trajectory-shapes"),
]


@pytest.mark.parametrize("fn, fragments", CASES)
def test_tinyworld_inputs(fn, fragments):
    clear(fn, *fragments)


def test_generate_refuses_a_bare_caption(pipe):
    clear(lambda: quality.generate(pipe, "a red circle", 1), "scenes='a red circle' is a single string",
          "['a red circle']")
    clear(lambda: quality.generate(pipe, eval_prompts(2), 0), "num_steps=0")
