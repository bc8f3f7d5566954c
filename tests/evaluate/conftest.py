"""Tiny-world fixtures for the runner tests: the shipped student, evaluator and judge, 4 prompts, 1-2 steps.

Everything expensive is session-scoped; each test gets its own cache folder so cache hits are deliberate.
"""
import pytest

from qsched_core.evaluate import Calibration, EvalConfig, Models


@pytest.fixture(autouse=True)
def allow_tiny_fid():
    """These tests check the runner's plumbing on 2-4 images; FID refuses fewer than checks.MIN_FID_IMAGES (10)
    images everywhere else, so lower the floor here only, test by test (a session-wide patch would leak into the
    suites that run later and check the floor)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("qsched_core.checks.MIN_FID_IMAGES", 2)
        yield


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    from qsched_core import hub
    from qsched_core.tinyworld.loaders import load_evaluator
    from qsched_core.tinyworld.quality import reference_stats

    evaluator = load_evaluator()
    ref = reference_stats(evaluator, n=48, seed=1, cache_dir=tmp_path_factory.mktemp("fid"))
    return Models(hub.load_pipeline("tinyworld-lcm"), evaluator, hub.load_judge("tinyworld-clip"), ref)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """Cells that several tests read (the naive FP row) are computed once per session, here."""
    return tmp_path_factory.mktemp("shared-cells")


@pytest.fixture
def cfg(tmp_path, shared_cache) -> EvalConfig:
    return EvalConfig(n_prompts=4, n_ref=48, batch_size=4, n_boot=20, fid_boot=1, cache_dir=shared_cache,
                      search_dirs=(tmp_path / "searches",))


@pytest.fixture
def tiny_cal() -> Calibration:
    return Calibration(num_prompts=1, grid_points=3)  # 9 grid points x 1 prompt
