"""Bad inputs to the FID / KID / attribute-accuracy path: each is rejected fast with a message that names the
argument, the value and the fix (NaN features used to hang in sqrtm, [0, 255] images gave FID 3.5e7,
32x32 images crashed with a matrix-shape error, FID from 2 images returned a number)."""
import numpy as np
import pytest
import torch

from qsched_core import metrics
from qsched_core.checks import MIN_FID_IMAGES
from qsched_core.evaluate.report import bootstrap_fids, fid_ci
from qsched_core.metrics import (MetricCard, ReferenceStats, attribute_accuracy, bootstrap_fid_ci, compute_fid,
                                 extract_features, fid_from_features, fid_to_reference, frechet, kid_from_features)
from robust_helpers import clear

RNG = np.random.default_rng(0)
GOOD = RNG.normal(size=(40, 8))
REF = ReferenceStats.from_features("ref", RNG.normal(size=(200, 8)))


def with_value(value, at=(3, 2)):
    feats = GOOD.copy()
    feats[at] = value
    return feats


def colour_features(x):  # a feature network that accepts any image size: mean colour and its square
    m = x.mean((2, 3))
    return torch.cat([m, m ** 2, m[:, :2]], 1)  # (B, 8)


FEATURE_CASES = [
    pytest.param(lambda: fid_from_features(with_value(np.nan), GOOD), ("feats_a", "1 NaN"), id="fid-nan-features"),
    pytest.param(lambda: fid_from_features(GOOD, with_value(np.inf)), ("feats_b", "1 inf"), id="fid-inf-features"),
    pytest.param(lambda: fid_to_reference(with_value(np.nan), REF), ("NaN", "feature network"), id="fid-ref-nan"),
    pytest.param(lambda: kid_from_features(with_value(np.nan), GOOD), ("NaN",), id="kid-nan"),
    pytest.param(lambda: fid_from_features(GOOD[:2], GOOD), ("N=2", f"at least {MIN_FID_IMAGES}"), id="fid-2-images"),
    pytest.param(lambda: fid_to_reference(GOOD[:3], REF), ("N=3", "generate more images"), id="fid-ref-3-images"),
    pytest.param(lambda: fid_from_features(GOOD[0], GOOD), ("(8,)", "(N, D)"), id="fid-1d-features"),
    pytest.param(lambda: fid_from_features([["a", "b"]] * 20, GOOD), ("array of numbers",), id="fid-str-features"),
    pytest.param(lambda: fid_from_features(np.zeros((0, 8)), GOOD), ("(0, 8)", "N >= 2"), id="fid-empty-features"),
    pytest.param(lambda: fid_from_features(GOOD, GOOD[:, :5]), ("feature dims differ", "one feature network"),
                 id="fid-dim-mismatch"),
    pytest.param(lambda: fid_to_reference(GOOD[:, :5], REF), ("D=5", "D=8"), id="fid-ref-dim-mismatch"),
    pytest.param(lambda: frechet(np.zeros(3), np.full((3, 3), np.nan), np.zeros(3), np.eye(3)),
                 ("first Gaussian sigma", "NaN", "matrix square root"), id="frechet-nan-sigma"),
    pytest.param(lambda: ReferenceStats("ref", np.zeros(3), np.full((3, 3), np.inf), 10), ("inf", "recompute"),
                 id="refstats-inf-sigma"),
    pytest.param(lambda: ReferenceStats("../x", np.zeros(3), np.eye(3), 10), ("name='../x'", "letters, digits"),
                 id="refstats-path-name"),
    pytest.param(lambda: ReferenceStats("ref", np.zeros(3), np.eye(4), 10), ("sigma (4, 4)", "(D, D)"),
                 id="refstats-shape"),
    pytest.param(lambda: bootstrap_fid_ci(with_value(np.nan), REF), ("NaN",), id="bootstrap-fid-nan"),
    # the table's bootstrap loops check their features once, before resampling (not in every draw)
    pytest.param(lambda: fid_ci(with_value(np.nan), REF, n_boot=3), ("NaN",), id="table-fid-ci-nan"),
    pytest.param(lambda: bootstrap_fids([GOOD, with_value(np.inf)], REF, n_boot=3), ("inf",), id="table-boot-fid-inf"),
]


@pytest.mark.parametrize("fn, fragments", FEATURE_CASES)
def test_bad_features_are_rejected_fast(fn, fragments):
    clear(fn, *fragments)


def images_of(size=64, scale=1.0, n=12, dtype=torch.float32):
    return (torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * scale).to(dtype)


IMAGE_CASES = [
    pytest.param(lambda ev: compute_fid(images_of(scale=255.0), REF, colour_features),
                 ("255]", "must lie in [0, 1]", "divide uint8 images by 255"), id="fid-0-255-images"),
    pytest.param(lambda ev: compute_fid((images_of() * 2 - 1), REF, colour_features),
                 ("must lie in [0, 1]", "(x + 1) / 2"), id="fid-minus1-1-images"),
    pytest.param(lambda ev: compute_fid(images_of(scale=255.0, dtype=torch.uint8), REF, colour_features),
                 ("torch.uint8", ".float() / 255"), id="fid-uint8-images"),
    pytest.param(lambda ev: compute_fid(images_of().index_fill(0, torch.tensor([2]), float("nan")), REF,
                                        colour_features), ("NaN", "sampler or decoder diverged"), id="fid-nan-images"),
    pytest.param(lambda ev: extract_features(images_of(size=32), ev.features), ("(12, 3, 32, 32)", "(B, 3, 64, 64)",
                                                                               "F.interpolate"), id="evaluator-32px"),
    pytest.param(lambda ev: extract_features(images_of(size=128), ev.features), ("128, 128)", "resize explicitly"),
                 id="evaluator-128px"),
    pytest.param(lambda ev: compute_fid(images_of()[0], REF, colour_features), ("(3, 64, 64)", "images[None]"),
                 id="fid-3d-image"),
    pytest.param(lambda ev: compute_fid(images_of().permute(0, 2, 3, 1), REF, colour_features),
                 ("(12, 64, 64, 3)", "permute(0, 3, 1, 2)"), id="fid-channels-last"),
    pytest.param(lambda ev: compute_fid(images_of()[:0], REF, colour_features), ("images is empty",),
                 id="fid-empty-images"),
    pytest.param(lambda ev: compute_fid([], REF, colour_features), ("images is empty",), id="fid-empty-batches"),
    pytest.param(lambda ev: compute_fid(images_of(n=3), REF, colour_features), ("N=3", "FID needs at least"),
                 id="fid-3-images"),
    pytest.param(lambda ev: compute_fid(images_of().numpy(), REF, colour_features), ("torch.Tensor", "from_numpy"),
                 id="fid-numpy-images"),
    pytest.param(lambda ev: extract_features(images_of(), colour_features, batch_size=0), ("batch_size=0", ">= 1"),
                 id="extract-batch-size-0"),
    pytest.param(lambda ev: bootstrap_fid_ci(GOOD, REF, n_boot=0), ("n_boot=0", ">= 1"), id="bootstrap-n-boot-0"),
    pytest.param(lambda ev: bootstrap_fid_ci(GOOD, REF, alpha=1.5), ("alpha=1.5",), id="bootstrap-alpha"),
]


@pytest.mark.parametrize("fn, fragments", IMAGE_CASES)
def test_bad_images_are_rejected_before_the_feature_network(fn, fragments, evaluator):
    clear(lambda: fn(evaluator), *fragments)


def test_nan_features_fail_within_a_second():
    """The reported hang: NaN features sent clean-fid's sqrtm into minutes of iterations."""
    import time
    t0 = time.perf_counter()
    with pytest.raises(ValueError):
        fid_from_features(np.full((40, 64), np.nan), GOOD[:, :1].repeat(64, 1))
    assert time.perf_counter() - t0 < 1.0


def test_valid_images_still_work(evaluator):
    """The checks reject only bad inputs: the evaluator size gives features, [0, 1] images a finite FID."""
    assert extract_features(images_of(n=3), evaluator.features).shape[0] == 3
    ref = ReferenceStats.from_features("colour", extract_features(images_of(n=40), colour_features))
    assert np.isfinite(compute_fid(images_of(n=12), ref, colour_features))


ACCURACY_CASES = [
    pytest.param(lambda: attribute_accuracy({"shape": torch.tensor([0, 1])}, {"shape": torch.tensor([0, 1, 1])}),
                 ("(2,)", "(3,)", "integer label tensors"), id="accuracy-length-mismatch"),
    pytest.param(lambda: attribute_accuracy({"shape": torch.rand(3, 4)}, {"shape": torch.tensor([0, 1, 1])}),
                 ("argmax the logits first",), id="accuracy-logits"),
    pytest.param(lambda: attribute_accuracy({"shape": torch.tensor([0])}, {"colour": torch.tensor([0])}),
                 ("['shape']", "['colour']", "must match"), id="accuracy-name-mismatch"),
    pytest.param(lambda: attribute_accuracy({"a": torch.tensor([0])}, {"a": torch.tensor([0])}, groups={"g": ["b"]}),
                 ("unknown attributes ['b']",), id="accuracy-unknown-group"),
    pytest.param(lambda: MetricCard("f", 0, "r", 10, "none", "clip", [0], ["jaq"]), ("n_images=0", ">= 1"),
                 id="metric-card-zero-images"),
    pytest.param(lambda: MetricCard("f|g", 10, "r", 10, "none", "clip", [0], ["jaq"]), ("feature_network", "'|'"),
                 id="metric-card-pipe"),
]


@pytest.mark.parametrize("fn, fragments", ACCURACY_CASES)
def test_bad_labels_and_cards(fn, fragments):
    clear(fn, *fragments)


def test_metrics_module_exports_the_checked_functions():
    assert metrics.fid_from_features is fid_from_features
