"""FID/KID on arbitrary features: closed forms, cached reference statistics, clean-fid's folder API."""
import numpy as np
import pytest
import torch
from PIL import Image

from qsched_core import metrics
from qsched_core.metrics import (
    ReferenceStats,
    bootstrap_fid_ci,
    compute_fid,
    feature_stats,
    fid_folders,
    fid_from_features,
    fid_to_reference,
    kid_from_features,
)

pytest.importorskip("cleanfid")


def gaussian(n, d, shift=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).normal(shift, scale, size=(n, d))


def colour_features(images):
    """Toy feature network: per-channel mean and std, (B, 6)."""
    return torch.cat([images.mean((2, 3)), images.std((2, 3))], dim=1)


def test_identical_features_give_zero():
    feats = gaussian(200, 8)
    assert abs(fid_from_features(feats, feats)) < 1e-6


def test_fid_grows_with_mean_shift_and_equals_shift_norm():
    a = gaussian(300, 4)
    fids = [fid_from_features(a, a + s) for s in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(x < y for x, y in zip(fids, fids[1:]))
    # same covariance: FID = ||mu_a - mu_b||^2 = D * s^2
    assert fids[3] == pytest.approx(4 * 1.0**2, abs=1e-4) and fids[4] == pytest.approx(4 * 2.0**2, abs=1e-4)


def test_one_dimensional_closed_form():
    a, b = gaussian(5000, 1, 0.0, 1.0, seed=1), gaussian(5000, 1, 1.0, 2.0, seed=2)
    (mu_a, s_a), (mu_b, s_b) = feature_stats(a), feature_stats(b)
    # 1-D: FID = (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2, exactly for the fitted Gaussians
    expected = (mu_a[0] - mu_b[0]) ** 2 + (np.sqrt(s_a[0, 0]) - np.sqrt(s_b[0, 0])) ** 2
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-9)
    assert fid_from_features(a, b) == pytest.approx(1.0 + 1.0, abs=0.15)  # population value (0-1)^2 + (1-2)^2


def test_independent_coordinates_add_their_1d_distances():
    # Orthogonal +-1 columns give an exactly diagonal sample covariance, so clean-fid's matrix square root
    # must reduce to the sum of 1-D closed forms: sum_d (mu_a,d - mu_b,d)^2 + (sigma_a,d - sigma_b,d)^2.
    base = np.stack([np.tile([1.0, -1.0], 50), np.repeat([1.0, -1.0], 50)], axis=1)  # (100, 2)
    a = base * [1.0, 3.0] + [0.0, 1.0]
    b = base * [2.0, 0.5] + [1.5, -1.0]
    (mu_a, s_a), (mu_b, s_b) = feature_stats(a), feature_stats(b)
    assert s_a[0, 1] == 0 and s_b[0, 1] == 0
    expected = ((mu_a - mu_b) ** 2 + (np.sqrt(np.diag(s_a)) - np.sqrt(np.diag(s_b))) ** 2).sum()
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(a, b) == pytest.approx(sum(fid_from_features(a[:, [d]], b[:, [d]]) for d in (0, 1)))


def test_features_must_be_2d_with_two_rows():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="feature dims differ"):
        fid_from_features(gaussian(10, 3), gaussian(10, 4))


def test_reference_stats_are_computed_once_and_validated(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return gaussian(50, 3)

    first = ReferenceStats.get_or_compute("tiny-eval", compute, cache_dir=tmp_path, dim=3)
    second = ReferenceStats.get_or_compute("tiny-eval", compute, cache_dir=tmp_path, dim=3)
    assert len(calls) == 1 and (tmp_path / "tiny-eval.npz").is_file()
    assert np.array_equal(first.mu, second.mu) and np.array_equal(first.sigma, second.sigma) and second.n == 50
    with pytest.raises(ValueError, match="delete the file"):
        ReferenceStats.load("tiny-eval", tmp_path, dim=5)
    with pytest.raises(ValueError, match="names a file"):
        ReferenceStats.from_features("../escape", gaussian(5, 3))
    with pytest.raises(ValueError, match="reference 'tiny-eval' has D=3"):
        fid_to_reference(gaussian(20, 4), first)


def test_compute_fid_batches_images_through_the_feature_network():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(40, 3, 8, 8, generator=g), torch.rand(30, 3, 8, 8, generator=g) ** 2
    ref = ReferenceStats.from_features("real", colour_features(real))
    expected = fid_from_features(colour_features(fake), colour_features(real))
    assert compute_fid(fake, ref, colour_features, batch_size=7) == pytest.approx(expected, rel=1e-6)
    assert compute_fid(list(fake.split(8)), ref, colour_features) == pytest.approx(expected, rel=1e-6)
    assert compute_fid(real, ref, colour_features) == pytest.approx(0.0, abs=1e-6)


def _write_pngs(folder, images):
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")


def test_fid_folders_matches_in_memory_fid(tmp_path):
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(12, 3, 16, 16, generator=g), torch.rand(10, 3, 16, 16, generator=g) ** 2
    _write_pngs(tmp_path / "a", a)
    _write_pngs(tmp_path / "b", b)
    qa, qb = ((x * 255).round() / 255 for x in (a, b))  # PNG stores uint8
    expected = fid_from_features(colour_features(qa), colour_features(qb))
    got = fid_folders(tmp_path / "a", tmp_path / "b", colour_features, batch_size=4)
    assert got == pytest.approx(expected, rel=1e-5)


def test_kid_is_near_zero_for_one_distribution_and_seeded():
    a, b = gaussian(200, 4, seed=3), gaussian(200, 4, seed=4)
    same = kid_from_features(a, b, num_subsets=20, max_subset_size=100)
    shifted = kid_from_features(a, b + 1.0, num_subsets=20, max_subset_size=100)
    assert abs(same) < 0.05 < shifted
    assert kid_from_features(a, b, num_subsets=20, max_subset_size=100) == same


def test_bootstrap_fid_interval_narrows_with_more_images():
    ref = ReferenceStats.from_features("ref", gaussian(2000, 2, seed=5))
    widths = []
    for n in (40, 640):
        fid, lo, hi = bootstrap_fid_ci(gaussian(n, 2, shift=0.5, seed=6), ref, n_boot=100)
        assert lo < hi and np.isfinite(fid)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_clip_metrics_are_the_jaq_functions():
    from qsched_core import jaq

    assert metrics.clip_score is jaq.clip_score and metrics.clip_iqa is jaq.clip_iqa


def test_fid_interval_contains_its_estimate_where_a_bootstrap_would_not():
    """With n close to D, every with-replacement resample's FID lies above the estimate; half-sampling does not."""
    ref = ReferenceStats.from_features("ref", gaussian(2000, 16, seed=7))
    feats = gaussian(60, 16, shift=0.3, seed=8)
    fid, lo, hi = bootstrap_fid_ci(feats, ref, n_boot=100)
    assert lo <= fid <= hi, (lo, fid, hi)
    rng = np.random.default_rng(0)
    boots = [fid_to_reference(feats[rng.integers(0, 60, 60)], ref) for _ in range(50)]
    assert np.quantile(boots, 0.025) > fid  # the old interval: entirely above its own estimate


def test_kid_is_standardised_by_the_reference():
    a, b = gaussian(300, 4, seed=9), gaussian(300, 4, seed=10)
    scaled = kid_from_features(a * 100, b * 100, num_subsets=20, max_subset_size=100)
    assert scaled == pytest.approx(kid_from_features(a, b, num_subsets=20, max_subset_size=100), rel=1e-6, abs=1e-9)
    raw = kid_from_features(a * 100, b * 100, num_subsets=20, max_subset_size=100, normalize=False)
    assert abs(raw) > 100 * abs(scaled)  # unnormalised, the kernel's scale swamps the comparison


def test_eigh_backend_agrees_with_clean_fid(monkeypatch):
    from qsched_core.metrics import feature_stats, frechet

    rng = np.random.default_rng(0)
    a, b = feature_stats(rng.normal(size=(400, 16))), feature_stats(rng.normal(0.3, 1.2, size=(300, 16)))
    monkeypatch.setenv("QSCHED_FID_BACKEND", "clean-fid")
    ref = frechet(*a, *b)
    monkeypatch.setenv("QSCHED_FID_BACKEND", "eigh")
    assert frechet(*a, *b) == pytest.approx(ref, rel=1e-6) and ref > 1.0  # a real distance, not ~0
    assert frechet(*a, *a) == pytest.approx(0.0, abs=1e-8)
    monkeypatch.setenv("QSCHED_FID_BACKEND", "sqrt")
    with pytest.raises(ValueError, match="QSCHED_FID_BACKEND='sqrt'"):
        frechet(*a, *b)
