"""Bad inputs to the JAQ objective and its scorers (a bare string was scored letter by letter, an empty
batch crashed inside torch.cat, NaN images passed the range check, k = nan / inf returned NaN / inf and k = "2"
raised a bare TypeError)."""
import pytest
import torch

from qsched_core.jaq import (JAQScorer, Judge, as_judge, best_by_jaq, clip_iqa, clip_score, jaq,
                             load_open_clip_judge, make_scorer)
from robust_helpers import clear, tiny_open_clip

PROMPTS = ["a red circle", "a blue star", "a green square", "a small circle"]
TC, IQ = torch.tensor([30.0, 31.0]), torch.tensor([0.5, 0.6])


def nan_at(images):
    bad = images.clone()
    bad[1, 0, 2, 2] = float("nan")
    return bad


SCORE_CASES = [
    pytest.param(lambda m, t, x: clip_score(m, t, x[:1], "a red circle"),
                 ("'a red circle' is a single string", "wrap it in a list"), id="clipscore-bare-string"),
    pytest.param(lambda m, t, x: clip_score(m, t, x, "abcd"), ("single string",), id="clipscore-str-len-matches"),
    pytest.param(lambda m, t, x: clip_score(m, t, x[:0], []), ("empty batch", "at least one image"),
                 id="clipscore-empty-batch"),
    pytest.param(lambda m, t, x: clip_score(m, t, nan_at(x), PROMPTS), ("images contains 1 NaN",),
                 id="clipscore-nan-images"),
    pytest.param(lambda m, t, x: clip_score(m, t, x.index_fill(0, torch.tensor([0]), float("inf")), PROMPTS),
                 ("inf",), id="clipscore-inf-images"),
    pytest.param(lambda m, t, x: clip_score(m, t, x * 255, PROMPTS), ("must lie in [0, 1]", "divide uint8"),
                 id="clipscore-0-255"),
    pytest.param(lambda m, t, x: clip_score(m, t, (x * 255).to(torch.uint8), PROMPTS), ("torch.uint8", "/ 255"),
                 id="clipscore-uint8"),
    pytest.param(lambda m, t, x: clip_score(m, t, x, PROMPTS[:3]), ("4 images but 3 prompts", "one prompt per image"),
                 id="clipscore-length-mismatch"),
    pytest.param(lambda m, t, x: clip_score(m, t, x, ["a", 3, "b", "c"]), ("prompts[1]=3", "not a string"),
                 id="clipscore-int-prompt"),
    pytest.param(lambda m, t, x: clip_score(m, t, x, None), ("list of strings", "NoneType"), id="clipscore-none"),
    pytest.param(lambda m, t, x: clip_score(m, t, list(x), PROMPTS), ("torch.Tensor", "torch.stack"),
                 id="clipscore-list-images"),
    pytest.param(lambda m, t, x: clip_score(m, t, x[0], PROMPTS[:1]), ("(3, 32, 32)", "images[None]"),
                 id="clipscore-3d"),
    pytest.param(lambda m, t, x: clip_score(m, t, x[:, :1], PROMPTS), ("(4, 1, 32, 32)", "(B, 3, H, W)"),
                 id="clipscore-grey"),
    pytest.param(lambda m, t, x: clip_score(m, t, x.to("meta"), PROMPTS), ("meta device",), id="clipscore-meta"),
    pytest.param(lambda m, t, x: clip_score(m, t, x, PROMPTS, batch_size=0), ("batch_size=0", ">= 1"),
                 id="clipscore-batch-0"),
    pytest.param(lambda m, t, x: clip_score(m, t, x, PROMPTS, batch_size=2.5), ("batch_size=2.5", "int"),
                 id="clipscore-batch-float"),
    pytest.param(lambda m, t, x: clip_iqa(m, t, x[:0]), ("empty batch",), id="clipiqa-empty-batch"),
    pytest.param(lambda m, t, x: clip_iqa(m, t, nan_at(x)), ("NaN",), id="clipiqa-nan-images"),
    pytest.param(lambda m, t, x: clip_iqa(m, t, x, prompt_pairs=("Good photo.", "Bad photo.")),
                 ("prompt_pairs=", "(positive, negative)"), id="clipiqa-unwrapped-pair"),
    pytest.param(lambda m, t, x: clip_iqa(m, t, x, prompt_pairs=()), ("non-empty",), id="clipiqa-no-pairs"),
]


@pytest.mark.parametrize("fn, fragments", SCORE_CASES)
def test_scorer_inputs(fn, fragments, judge, images):
    model, tokenizer, _ = judge
    clear(lambda: fn(model, tokenizer, images), *fragments)


def test_model_and_images_on_different_devices(judge, images):
    model, tokenizer, _ = judge
    meta_model = tiny_open_clip().to("meta")
    clear(lambda: clip_score(meta_model, tokenizer, images, PROMPTS), "images are on cpu", "model is on meta",
          "images.to('meta')")


JAQ_CASES = [
    pytest.param(lambda: jaq(TC, IQ, k=float("nan")), ("k=nan must be finite",), id="jaq-k-nan"),
    pytest.param(lambda: jaq(TC, IQ, k=float("inf")), ("k=inf must be finite",), id="jaq-k-inf"),
    pytest.param(lambda: jaq(TC, IQ, k="2"), ("k='2' (str)", "float(k)"), id="jaq-k-str"),
    pytest.param(lambda: jaq(TC, IQ, k=None), ("k=None", "real number"), id="jaq-k-none"),
    pytest.param(lambda: jaq(TC, IQ, k=-1.0), ("k=-1.0", ">= 0"), id="jaq-k-negative"),
    pytest.param(lambda: jaq(TC, IQ, k=torch.tensor([1.0, 2.0])), ("k=", "real number"), id="jaq-k-vector"),
    pytest.param(lambda: jaq(TC, IQ, tc_floor=0.0), ("tc_floor=0.0", "> 0"), id="jaq-floor-zero"),
    pytest.param(lambda: jaq(TC, IQ, tc_floor=float("nan")), ("tc_floor=nan",), id="jaq-floor-nan"),
    pytest.param(lambda: jaq(torch.tensor([30.0, float("nan")]), IQ), ("tc_scores contains 1 NaN",),
                 id="jaq-nan-tc"),
    pytest.param(lambda: jaq(TC, torch.tensor([0.5, float("nan")])), ("iq_scores contains 1 NaN",), id="jaq-nan-iq"),
    pytest.param(lambda: jaq(TC, IQ[:1]), ("(2,)", "(1,)", "one score per image"), id="jaq-length-mismatch"),
    pytest.param(lambda: jaq(TC[:0], IQ[:0]), ("non-empty",), id="jaq-empty"),
    pytest.param(lambda: jaq(TC / 100, IQ * 50), ("iq_scores CLIP-IQA values in [0, 1]",), id="jaq-iq-range"),
    pytest.param(lambda: best_by_jaq({}), ("score_sets is empty",), id="best-by-jaq-empty"),
    pytest.param(lambda: best_by_jaq({"a": (TC, IQ)}, k="2"), ("k='2'",), id="best-by-jaq-k-str"),
    pytest.param(lambda: as_judge("tinyworld-clip"), ("judge='tinyworld-clip'", "load_open_clip_judge"),
                 id="as-judge-str"),
    pytest.param(lambda: load_open_clip_judge("ViT-Nope-99"), ("arch='ViT-Nope-99'", "open_clip.list_models()"),
                 id="open-clip-unknown-arch"),
    pytest.param(lambda: load_open_clip_judge("ViT-B-32"), ("no local weights", "checkpoint_path"),
                 id="open-clip-no-weights", marks=pytest.mark.filterwarnings("ignore")),
]


@pytest.mark.parametrize("fn, fragments", JAQ_CASES)
def test_jaq_inputs(fn, fragments):
    clear(fn, *fragments, exc=(ValueError, FileNotFoundError))


SCORER_CASES = [
    pytest.param(dict(k="2"), ("k='2' (str)",), id="scorer-k-str"),
    pytest.param(dict(k=float("nan")), ("k=nan",), id="scorer-k-nan"),
    pytest.param(dict(k=float("inf")), ("k=inf",), id="scorer-k-inf"),
    pytest.param(dict(kind="fid"), ("kind='fid'",), id="scorer-kind"),
    pytest.param(dict(iq="musiq"), ("iq='musiq'",), id="scorer-iq"),
    pytest.param(dict(batch_size=0), ("batch_size=0",), id="scorer-batch-0"),
]


@pytest.mark.parametrize("options, fragments", SCORER_CASES)
def test_scorer_options(options, fragments, judge):
    clear(lambda: make_scorer(options.pop("kind", "jaq"), judge, **options), *fragments)


def test_scorer_call_rejects_a_bare_string_and_empty_batches(judge, images):
    scorer = JAQScorer(Judge(*judge))
    clear(lambda: scorer(images[:1], "a red circle"), "single string")
    clear(lambda: scorer(images[:0], []), "empty batch")
    clear(lambda: scorer(nan_at(images), PROMPTS), "NaN")
    out = scorer(images, PROMPTS)  # and a valid call still works
    assert all(torch.isfinite(v) for v in out.values())
