"""The shipped model folders load the way their ecosystems' users load them this test runs the
code blocks of the model cards exactly as written (from the repo root, on the CPU, no extra arguments to
`from_pretrained`) and checks that they give the same images as the repo's loaders. The judge and the evaluator
are checked generically (they load, the shapes are right), since they may be retrained."""
import re

import numpy as np
import pytest
import torch

from qsched_core.tinyworld import loaders
from qsched_core.utils import REPO_ROOT

CARDS = {"lcm": ("lcm/README.md", "## Use with plain diffusers"),
         "teacher": ("teacher_unet/README.md", "## Use with plain diffusers"),
         "clip": ("clip/README.md", "## Use with open_clip")}


def card_code(name: str) -> str:
    path, heading = CARDS[name]
    text = (loaders.TINYWORLD / path).read_text()
    assert heading in text, f"{path} lost its '{heading}' section"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, f"{path}: expected one python block under '{heading}'"
    return blocks[0]


def run_card(name: str, monkeypatch) -> dict:
    monkeypatch.chdir(REPO_ROOT)  # the cards use paths relative to the repo root
    scope: dict = {}
    exec(compile(card_code(name), f"<{CARDS[name][0]}>", "exec"), scope)
    return scope


def call_args(code: str) -> dict:
    """The keyword arguments of the card's pipe(...) call, so the repo loader gets exactly the same ones."""
    steps = int(re.search(r"num_inference_steps=(\d+)", code).group(1))
    guidance = float(re.search(r"guidance_scale=([\d.]+)", code).group(1))
    seed = int(re.search(r"manual_seed\((\d+)\)", code).group(1))
    prompt = re.search(r'pipe\("([^"]+)"', code).group(1)
    return dict(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, seed=seed)


@pytest.mark.parametrize("name, repo_loader", [("lcm", loaders.load_pipeline),
                                               ("teacher", loaders.load_teacher_pipeline)])
def test_card_code_runs_with_stock_diffusers_and_matches_the_repo_loader(name, repo_loader, monkeypatch):
    scope = run_card(name, monkeypatch)
    pipe, image = scope["pipe"], scope["image"]
    assert {m.dtype for m in (pipe.unet, pipe.vae, pipe.text_encoder)} == {torch.float32}
    assert pipe.device.type == "cpu" and image.size == (64, 64)
    args = call_args(card_code(name))
    ours = repo_loader()(args["prompt"], num_inference_steps=args["num_inference_steps"],
                         guidance_scale=args["guidance_scale"],
                         generator=torch.manual_seed(args["seed"])).images[0]
    assert np.array_equal(np.asarray(image), np.asarray(ours)), "stock diffusers and the repo loader disagree"


def test_stock_pipeline_runs_with_its_own_defaults(monkeypatch):
    """A diffusers user's very first try: from_pretrained(path), then pipe(prompt) with nothing else."""
    from diffusers import DiffusionPipeline
    monkeypatch.chdir(REPO_ROOT)
    pipe = DiffusionPipeline.from_pretrained("models/tinyworld/lcm")
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a large blue star", num_inference_steps=1).images[0]
    assert image.size == (64, 64)


def test_shipped_configs_load_in_float32():
    import json
    te = json.loads((loaders.TINYWORLD / "lcm" / "text_encoder" / "config.json").read_text())
    assert te.get("dtype", "float32") == "float32", "transformers' dtype='auto' would load the text encoder in " \
        f"{te['dtype']} next to diffusers' float32 UNet"


def test_judge_card_runs_with_open_clip(monkeypatch):
    scope = run_card("clip", monkeypatch)
    img, txt = scope["image_features"], scope["text_features"]
    assert img.shape[0] == 2 and txt.shape[0] == 2 and img.shape[1] == txt.shape[1]
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()
    model, tokenizer, _ = loaders.load_judge()  # the repo loader builds the same network from the same files
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.encode_image(x), scope["model"].eval().encode_image(x))


def test_evaluator_loads_and_gives_features_of_the_right_shape():
    ev = loaders.load_evaluator()
    with torch.no_grad():
        feats = ev.features(torch.rand(3, 3, 64, 64))
        logits = ev(torch.rand(3, 3, 64, 64))
    assert feats.ndim == 2 and feats.shape[0] == 3 and torch.isfinite(feats).all()
    assert all(v.shape[0] == 3 for v in logits.values())
