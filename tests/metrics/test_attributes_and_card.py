"""Attribute accuracy (per attribute, per group, all right) and the metric card written next to results."""
import pytest
import torch

from qsched_core.metrics import MetricCard, attribute_accuracy, attribute_correct, machine_description


def labels(**columns):
    return {k: torch.tensor(v) for k, v in columns.items()}


def test_attribute_accuracy_by_hand():
    target = labels(shape1=[0, 1, 2, 3], colour1=[0, 0, 1, 1], shape2=[1, -1, 2, -1])
    pred = labels(shape1=[0, 1, 2, 0], colour1=[0, 1, 1, 1], shape2=[1, 3, 0, 0])
    acc = attribute_accuracy(pred, target, groups={"object1": ["shape1", "colour1"]})
    assert acc["shape1"] == 0.75 and acc["colour1"] == 0.75
    assert acc["shape2"] == 0.5  # images 1 and 3 have no second object (-1) and are skipped
    assert acc["object1"] == 0.5  # images 0 and 2 get both object-1 attributes right
    assert acc["all"] == 0.25  # only image 0 is right everywhere (absent attributes count as right)
    assert attribute_correct(pred, target)["shape2"].tolist() == [True, True, False, True]


@pytest.mark.parametrize("pred, target, groups, match", [
    (labels(a=[0, 1]), labels(b=[0, 1]), None, "must match"),
    ({"a": torch.tensor([0.2, 0.9])}, labels(a=[0, 1]), None, "argmax the logits"),
    (labels(a=[0, 1]), labels(a=[0, 1, 1]), None, "integer label tensors"),
    (labels(a=[0, 1]), labels(a=[0, 1]), {"g": ["a", "zzz"]}, "unknown attributes"),
])
def test_attribute_accuracy_validates(pred, target, groups, match):
    with pytest.raises(ValueError, match=match):
        attribute_accuracy(pred, target, groups)


def card(**changes):
    fields = dict(feature_network="tinyworld-evaluator (penultimate, D=128)", n_images=512,
                  reference_set="tinyworld-eval-v1", reference_size=5000, resize_policy="native 64x64 (no resize)",
                  clip_backbone="tinyworld-clip", seeds=[0, 1, 2],
                  scorer_names=["jaq(k=2, tc=clipscore[tinyworld-clip], iq=clipiqa[tinyworld-clip])"],
                  machine="test machine, 2 cores, no GPU", date="2026-01-02")
    return MetricCard(**{**fields, **changes})


def test_metric_card_round_trips_through_markdown(tmp_path):
    original = card()
    text = original.to_markdown()
    assert "| n_images | 512 |" in text and "| seeds | 0; 1; 2 |" in text
    assert MetricCard.from_markdown(text) == original
    path = original.save(tmp_path / "fid_table.csv")
    assert path == tmp_path / "fid_table.card.md"
    assert MetricCard.from_markdown(path.read_text()) == original
    assert original.save(path) == path  # saving at a card path rewrites the same file


def test_metric_card_defaults_and_validation():
    fresh = MetricCard("f", 1, "r", 1, "native", "clip", [0], ["jaq"])
    assert "cores" in fresh.machine and torch.__version__ in fresh.machine and len(fresh.date) == 10
    with pytest.raises(ValueError, match="without '\\|'"):
        card(reference_set="a | b")
    with pytest.raises(ValueError, match="n_images=0"):
        card(n_images=0)
    with pytest.raises(ValueError, match="fields"):
        MetricCard.from_markdown("| field | value |\n|---|---|\n| n_images | 3 |\n")


def test_machine_description_names_cpu_and_torch():
    text = machine_description()
    assert "cores" in text and f"torch {torch.__version__}" in text
