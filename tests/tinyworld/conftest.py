"""Shared fixtures: the shipped tiny-world models, loaded once per test run (offline, float32, CPU)."""
import pytest

from qsched_core.jaq import Judge
from qsched_core.tinyworld.loaders import load_evaluator, load_judge, load_pipeline, load_teacher_pipeline


@pytest.fixture(scope="session")
def pipe():
    return load_pipeline()


@pytest.fixture(scope="session")
def teacher(pipe):
    return load_teacher_pipeline()


@pytest.fixture(scope="session")
def evaluator():
    return load_evaluator()


@pytest.fixture(scope="session")
def judge() -> Judge:
    model, tokenizer, _ = load_judge()
    return Judge(model, tokenizer, "tinyworld-clip")
