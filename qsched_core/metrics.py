"""Evaluation metrics: FID/KID on any feature network, CLIP score and CLIP-IQA, attribute accuracy, metric cards.

FID (Heusel et al. 2017) is the Frechet distance between Gaussians fitted to features of generated and
reference images:

    FID = ||mu_g - mu_r||^2 + Tr(Sigma_g + Sigma_r - 2 (Sigma_g Sigma_r)^(1/2))

We compute it with clean-fid's `frechet_distance` (Parmar et al. 2022) but on features from a network we pass in:
in the tiny world that is the evaluator CNN (Inception never sees 64x64 toy scenes and cannot be downloaded
here); on the hub tier it can be any extractor. Absolute numbers depend on the feature network, the number of
images and the resize policy, so every results table carries a `MetricCard` that states them.

Conventions: images are float (N, 3, H, W) in [0, 1]; `feature_fn` maps such a batch to (B, D) features.
clean-fid's folder API instead hands its `custom_feat_extractor` float (B, 3, H, W) in [0, 255], and its
mode="clean" resizes every image to 299x299 with PIL bicubic unless `custom_fn_resize` is given;
`fid_folders` bridges both (it divides by 255 and keeps the native size by default).

CLIP score and CLIP-IQA are the same functions JAQ uses (`qsched_core.jaq`). Confidence intervals and paired
tests live in `qsched_core.stats` and are re-exported here.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from .jaq import clip_iqa, clip_score  # noqa: F401  (re-exported: one implementation for JAQ and evaluation)
from .stats import bootstrap_ci, mean_std_over_seeds, paired_bootstrap_diff, sign_test, subsample_ci  # noqa: F401
from .checks import check_features, check_fid_features, check_gaussian, check_images, check_int, check_number
from .utils import atomic_write, load_or_compute, results_dir

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------- FID / KID
def _as_features(feats) -> np.ndarray:
    feats = check_features(feats)  # finite (N, D), N >= 2: NaN would hang clean-fid's sqrtm
    feats = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"features of shape {feats.shape} must be (N, D) with N >= 2 images")
    return feats.astype(np.float64)


def feature_stats(feats, checked: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mu (D,), Sigma (D, D)), float64, unbiased covariance as in clean-fid. checked=True: feats
    is already a float64 (N, D) array that passed `_as_features` (a bootstrap resample of one), not checked again."""
    feats = feats if checked else _as_features(feats)
    return feats.mean(0), np.atleast_2d(np.cov(feats, rowvar=False))


FID_BACKENDS = ("clean-fid", "eigh")


def fid_backend() -> str:
    """$QSCHED_FID_BACKEND: "clean-fid" (default, scipy's sqrtm) or "eigh" (one symmetric eigendecomposition;
    the same number to ~1e-6 relative, for machines whose scipy clean-fid 0.1.35 cannot call)."""
    name = os.environ.get("QSCHED_FID_BACKEND", "clean-fid")
    if name not in FID_BACKENDS:
        raise ValueError(f"QSCHED_FID_BACKEND={name!r} must be one of {FID_BACKENDS}")
    return name


def sqrtm_psd(sigma: np.ndarray) -> np.ndarray:
    """Sigma^(1/2) of a symmetric PSD matrix: V diag(sqrt(w)) V^T from one eigendecomposition."""
    w, v = np.linalg.eigh(np.asarray(sigma, dtype=np.float64))
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_eigh(mu_a, sigma_a, mu_b, sigma_b, root_b: np.ndarray | None = None) -> float:
    """Frechet distance with Tr (S_a S_b)^(1/2) = sum_i sqrt(lambda_i), lambda_i the eigenvalues of the symmetric
    S_b^(1/2) S_a S_b^(1/2), which is similar to S_a S_b (both PSD). Pass root_b = S_b^(1/2) (`sqrtm_psd`) to
    reuse it across calls, as bootstrap loops do."""
    root = sqrtm_psd(sigma_b) if root_b is None else root_b
    lam = np.linalg.eigvalsh(root @ np.asarray(sigma_a, dtype=np.float64) @ root)
    tr_covmean = np.sqrt(np.clip(lam, 0, None)).sum()
    return float(((np.asarray(mu_a) - mu_b) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * tr_covmean)


def frechet(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """Frechet distance of two Gaussians through clean-fid (lazy import: it pulls in torchvision and scipy), or
    through `frechet_eigh` when $QSCHED_FID_BACKEND=eigh."""
    check_gaussian(mu_a, sigma_a, "first Gaussian"), check_gaussian(mu_b, sigma_b, "second Gaussian")
    if np.shape(mu_a) != np.shape(mu_b):
        raise ValueError(f"feature dims differ: {np.shape(mu_a)} vs {np.shape(mu_b)}; use one feature network")
    if fid_backend() == "eigh":
        return frechet_eigh(np.atleast_1d(mu_a), np.atleast_2d(sigma_a), np.atleast_1d(mu_b), np.atleast_2d(sigma_b))
    from cleanfid.fid import frechet_distance

    if np.size(mu_a) == 1:  # scipy 1.17's sqrtm(1x1, disp=False) returns no error estimate; clean-fid unpacks two
        return float(((mu_a - mu_b) ** 2 + (np.sqrt(sigma_a) - np.sqrt(sigma_b)) ** 2).sum())
    try:
        return float(frechet_distance(mu_a, sigma_a, mu_b, sigma_b))
    except TypeError as err:  # clean-fid 0.1.35 calls sqrtm(..., disp=False), which scipy 1.18 removed
        import scipy

        raise RuntimeError(f"clean-fid's FID failed with scipy {scipy.__version__} ({err}); clean-fid 0.1.35 needs "
                           "scipy < 1.18: pip install 'scipy==1.17.1' (the pin in requirements.txt), or set "
                           "QSCHED_FID_BACKEND=eigh (the same distance by eigendecomposition)") from err


def fid_from_features(feats_a, feats_b) -> float:
    """FID between two feature sets (N_a, D) and (N_b, D)."""
    feats_a, feats_b = check_fid_features(feats_a, "feats_a"), check_fid_features(feats_b, "feats_b")
    return frechet(*feature_stats(feats_a), *feature_stats(feats_b))


def kid_from_features(feats_a, feats_b, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0,
                      normalize: bool = True) -> float:
    """KID (cubic-kernel MMD^2, Binkowski et al. 2018) via clean-fid, reproducible through `seed`.

    The cubic kernel (x.y / D + 1)^3 depends on the scale of each dimension, so by default both sets are
    standardised by the second (reference) set's per-dimension mean and std first: every dimension then weighs
    the same, as Inception's roughly unit-scale pool3 features do. normalize=False passes the raw features.
    """
    from cleanfid.fid import kernel_distance

    if normalize:
        ref = _as_features(feats_b)
        mu, sd = ref.mean(0), ref.std(0)
        sd = np.where(sd > 0, sd, 1.0)  # a constant reference dimension is only centred
        feats_a, feats_b = (_as_features(feats_a) - mu) / sd, (ref - mu) / sd

    state = np.random.get_state()  # clean-fid samples subsets from numpy's global generator
    np.random.seed(seed)
    try:
        return kernel_distance(_as_features(feats_a), _as_features(feats_b), num_subsets, max_subset_size)
    finally:
        np.random.set_state(state)


def _batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        return (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    return images  # already an iterable of (B, 3, H, W) batches


@torch.no_grad()
def extract_features(images, feature_fn: FeatureFn, batch_size: int = 64) -> np.ndarray:
    """Features (N, D) float64 of images (a (N, 3, H, W) tensor in [0, 1] or an iterable of such batches)."""
    check_int(batch_size, "batch_size", 1)
    feats = [feature_fn(check_images(batch)).float().cpu() for batch in _batches(images, batch_size)]
    if not feats:
        raise ValueError("images is empty (no batch); pass a (N, 3, H, W) tensor in [0, 1] with N >= 2")
    return _as_features(torch.cat(feats))


@dataclass(frozen=True)
class ReferenceStats:
    """Gaussian statistics of a reference image set, cached as `<cache_dir>/<name>.npz`.

    mu: (D,) float64, sigma: (D, D) float64, n: number of reference images.
    """
    name: str
    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name):
            raise ValueError(f"name={self.name!r} must use only letters, digits, '.', '_', '-' (it names a file)")
        d = np.shape(self.mu)
        if len(d) != 1 or np.shape(self.sigma) != (d[0], d[0]) or self.n < 2:
            raise ValueError(f"ReferenceStats {self.name!r}: mu {np.shape(self.mu)} must be (D,), sigma "
                             f"{np.shape(self.sigma)} (D, D) and n={self.n} >= 2")
        check_gaussian(self.mu, self.sigma, f"ReferenceStats {self.name!r}")

    @property
    def dim(self) -> int:
        return len(self.mu)

    @classmethod
    def from_features(cls, name: str, feats) -> ReferenceStats:
        mu, sigma = feature_stats(feats)
        return cls(name, mu, sigma, len(feats))

    @staticmethod
    def path(name: str, cache_dir: str | Path | None = None) -> Path:
        return Path(cache_dir or results_dir("fid_stats")) / f"{name}.npz"

    def save(self, cache_dir: str | Path | None = None) -> Path:
        path = self.path(self.name, cache_dir)
        with atomic_write(path, "wb") as f:  # an interrupted save leaves no truncated cache behind
            np.savez(f, name=self.name, mu=self.mu, sigma=self.sigma, n=self.n)
        return path

    @classmethod
    def load(cls, name: str, cache_dir: str | Path | None = None, dim: int | None = None) -> ReferenceStats:
        path = cls.path(name, cache_dir)
        try:
            with np.load(path) as f:
                stats = cls(str(f["name"]), f["mu"], f["sigma"], int(f["n"]))
        except FileNotFoundError:
            raise
        except (OSError, EOFError, KeyError, TypeError, AttributeError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} is not valid reference statistics ({type(err).__name__}: {err}); delete it: "
                             "ReferenceStats.get_or_compute (e.g. quality.reference_stats()) rebuilds it") from err
        if stats.name != name or (dim is not None and stats.dim != dim):
            raise ValueError(f"{path} holds {stats.name!r} with D={stats.dim}, expected {name!r} with D={dim}; "
                             "it was built with another feature network: delete the file to recompute it")
        return stats

    @classmethod
    def get_or_compute(cls, name: str, compute_features: Callable[[], object], cache_dir: str | Path | None = None,
                       dim: int | None = None) -> ReferenceStats:
        """Load `<name>.npz` if cached, else call `compute_features()` -> (N, D), save and return the stats.

        Processes side by side that need the same reference compute it once (`utils.load_or_compute`)."""
        def cached() -> ReferenceStats | None:
            if cls.path(name, cache_dir).is_file():
                try:
                    return cls.load(name, cache_dir, dim)
                except ValueError as err:  # corrupt or stale cache: recompute instead of failing
                    warnings.warn(f"recomputing the reference statistics: {err}", stacklevel=3)
            return None

        def compute() -> ReferenceStats:
            stats = cls.from_features(name, compute_features())
            if dim is not None and stats.dim != dim:
                raise ValueError(f"compute_features gave D={stats.dim} features, expected dim={dim}")
            stats.save(cache_dir)
            return stats

        return load_or_compute(cls.path(name, cache_dir), cached, compute)


def fid_to_reference(feats, ref: ReferenceStats) -> float:
    """FID of generated features (N, D) against cached reference statistics."""
    feats = check_fid_features(feats)
    mu, sigma = feature_stats(feats)
    if len(mu) != ref.dim:
        raise ValueError(f"features have D={len(mu)} but reference {ref.name!r} has D={ref.dim}; "
                         "use the feature network that built the reference statistics")
    return frechet(mu, sigma, ref.mu, ref.sigma)


def compute_fid(images, ref_stats: ReferenceStats, feature_fn: FeatureFn, batch_size: int = 64) -> float:
    """FID of images ((N, 3, H, W) in [0, 1], or batches of them) against `ref_stats`, features by `feature_fn`."""
    return fid_to_reference(extract_features(images, feature_fn, batch_size), ref_stats)


def bootstrap_fid_ci(feats, ref_stats: ReferenceStats, n_boot: int = 200, alpha: float = 0.05,
                     seed: int = 0) -> tuple[float, float, float]:
    """(FID, lo, hi): the spread due to which images were drawn, by half-sampling without replacement.

    n_boot subsets of n // 2 generated images give FIDs whose spread around their mean, scaled to n images, is
    placed around the full FID (`stats.subsample_ci`). A with-replacement bootstrap (this function before) duplicates
    rows, which shrinks the covariance and pushes every resampled FID above the estimate: its intervals excluded
    their own estimate. To compare two rows use a paired bootstrap of the difference (`evaluate.report`).
    """
    check_int(n_boot, "n_boot", 1), check_number(alpha, "alpha", 0, 1, low_open=True)
    feats = _as_features(feats)
    n, rng = len(feats), np.random.default_rng(seed)
    fid = fid_to_reference(feats, ref_stats)
    if n // 2 < 2:  # halves of 1 image have no covariance: no interval (only reachable below checks.MIN_FID_IMAGES)
        return fid, math.nan, math.nan
    # the halves skip fid_to_reference's sample-size floor (the full set passed it above): 16 images give halves of 8
    subs = [frechet(*feature_stats(feats[rng.choice(n, n // 2, replace=False)], checked=True), ref_stats.mu,
                    ref_stats.sigma)
            for _ in range(n_boot)]
    return (fid, *subsample_ci(fid, subs, n // 2, n, alpha))


def fid_folders(dir_a: str | Path, dir_b: str | Path, feature_fn: FeatureFn, batch_size: int = 64,
                resize: Callable | None = None, device: str = "cpu") -> float:
    """FID between two image folders through `cleanfid.fid.compute_fid(custom_feat_extractor=...)`.

    resize: None keeps the native size (identity `custom_fn_resize`), "clean" uses clean-fid's PIL-bicubic
    299x299, a callable (H, W, 3) uint8 array -> array is passed on as `custom_fn_resize`. clean-fid hands the
    extractor float (B, 3, H, W) in [0, 255]; we divide by 255 so `feature_fn` sees [0, 1] as everywhere else.
    """
    from cleanfid import fid

    fn_resize = (lambda im: im) if resize is None else (None if resize == "clean" else resize)
    return float(fid.compute_fid(str(dir_a), str(dir_b), mode="clean", custom_fn_resize=fn_resize,
                                 custom_feat_extractor=lambda x: feature_fn(x / 255), batch_size=batch_size,
                                 device=torch.device(device), num_workers=0, verbose=False))


# ------------------------------------------------------------------------------------- attribute accuracy
def attribute_correct(pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                      ignore_index: int = -1) -> dict[str, torch.Tensor]:
    """Per-image correctness (N,) bool for each attribute; targets equal to `ignore_index` count as correct."""
    if set(pred) != set(target) or not pred:
        raise ValueError(f"pred attributes {sorted(pred)} and target attributes {sorted(target)} must match")
    out = {}
    for name in target:
        p, t = torch.as_tensor(pred[name]), torch.as_tensor(target[name])
        if p.shape != t.shape or p.ndim != 1 or p.is_floating_point() or t.is_floating_point():
            raise ValueError(f"attribute {name!r}: pred {tuple(p.shape)} {p.dtype} and target {tuple(t.shape)} "
                             f"{t.dtype} must be integer label tensors (N,); argmax the logits first")
        out[name] = (p == t) | (t == ignore_index)
    return out


def attribute_accuracy(pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                       groups: Mapping[str, Sequence[str]] | None = None, ignore_index: int = -1) -> dict[str, float]:
    """Accuracy per attribute, per group ("all attributes of the group right") and "all" (every attribute right).

    groups, e.g. {"object1": ["shape1", "color1", "size1"]}, give GenEval-style compositional scores; an attribute
    is averaged only over images where its target is not `ignore_index` (e.g. a missing second object).
    """
    correct = attribute_correct(pred, target, ignore_index)
    out = {}
    for name, ok in correct.items():
        valid = torch.as_tensor(target[name]) != ignore_index
        out[name] = ok[valid].float().mean().item() if valid.any() else float("nan")
    for group, names in (groups or {}).items():
        unknown = set(names) - set(correct)
        if unknown or group in correct:
            raise ValueError(f"group {group!r}: unknown attributes {sorted(unknown)} or a name that clashes "
                             f"with an attribute; known attributes: {sorted(correct)}")
        out[group] = torch.stack([correct[n] for n in names]).all(0).float().mean().item()
    out["all"] = torch.stack(list(correct.values())).all(0).float().mean().item()
    return out


# -------------------------------------------------------------------------------------------- metric card
def machine_description() -> str:
    """One line: CPU model, cores, GPU (if any), torch and python versions."""
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    fid = "" if fid_backend() == "clean-fid" else f", FID by {fid_backend()} ($QSCHED_FID_BACKEND)"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, python {platform.python_version()}{fid}"


@dataclass
class MetricCard:
    """What a results table was measured with; `save` writes it as markdown next to the table."""
    feature_network: str
    n_images: int
    reference_set: str
    reference_size: int
    resize_policy: str
    clip_backbone: str
    seeds: list[int]
    scorer_names: list[str]
    machine: str = field(default_factory=machine_description)
    date: str = field(default_factory=lambda: datetime.date.today().isoformat())

    def __post_init__(self):
        self.seeds, self.scorer_names = [int(s) for s in self.seeds], [str(s) for s in self.scorer_names]
        if self.n_images < 1 or self.reference_size < 1:
            raise ValueError(f"n_images={self.n_images} and reference_size={self.reference_size} must be >= 1")
        for f in fields(self):
            text = str(getattr(self, f.name))
            if "\n" in text or "|" in text or (f.name == "scorer_names" and any("; " in s for s in self.scorer_names)):
                raise ValueError(f"{f.name}={text!r} must be one line without '|' (and scorer names without '; ')")

    def to_markdown(self) -> str:
        rows = [(f.name, "; ".join(map(str, v)) if isinstance(v := getattr(self, f.name), list) else str(v))
                for f in fields(self)]
        return "\n".join(["**Metric card**", "", "| field | value |", "|---|---|"]
                         + [f"| {k} | {v} |" for k, v in rows]) + "\n"

    @classmethod
    def from_markdown(cls, text: str) -> MetricCard:
        values = dict(re.findall(r"^\| (\w+) \| (.*) \|$", text, flags=re.MULTILINE))
        values.pop("field", None)
        missing = {f.name for f in fields(cls)} - set(values)
        if missing:
            raise ValueError(f"not a metric card: fields {sorted(missing)} are missing")
        seeds, names = ([x for x in values[key].split("; ") if x] for key in ("seeds", "scorer_names"))
        return cls(**{**values, "n_images": int(values["n_images"]), "reference_size": int(values["reference_size"]),
                      "seeds": [int(s) for s in seeds], "scorer_names": names})

    def save(self, table_path: str | Path) -> Path:
        """Write `<table stem>.card.md` beside `table_path` (e.g. results/fid.csv -> results/fid.card.md)."""
        table_path = Path(table_path)
        stem = table_path.name[:-len(".card.md")] if table_path.name.endswith(".card.md") else table_path.stem
        path = table_path.with_name(f"{stem}.card.md")
        with atomic_write(path) as f:
            f.write(self.to_markdown())
        return path

    def to_dict(self) -> dict:
        return asdict(self)
