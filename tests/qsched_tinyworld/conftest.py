"""The shipped tiny world (student, judge) and one tiny calibration result, loaded once per test session."""
import pytest
import torch

from qsched_core import hub
from qsched_core.calibrate import CalibrationConfig, calibrate

TINY_CALIBRATION = dict(steps=2, n_prompts=2, grid_points=3, threads=1)


@pytest.fixture(scope="session")
def student():
    return hub.load_pipeline("tinyworld-lcm")


@pytest.fixture(scope="session")
def judge():
    return hub.load_judge("tinyworld-clip")


@pytest.fixture(scope="session")
def tiny_config() -> CalibrationConfig:
    return CalibrationConfig(**TINY_CALIBRATION)


@pytest.fixture(scope="session")
def tiny_grid(student, judge, tiny_config):
    """A 3x3 W4A8 grid on 2 calibration prompts at 2 steps (36 image evaluations)."""
    before = torch.get_num_threads()
    result = calibrate(tiny_config, pipe=student, judge=judge)
    torch.set_num_threads(before)
    return result
