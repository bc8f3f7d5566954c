"""Training stages: a seeded CPU smoke run, resuming from the checkpoint, and the instruct stage's start."""
import json

import pytest

from qsched_core.dllm.model import DLLMConfig
from qsched_core.dllm.train import TrainConfig, train_stage

TINY = DLLMConfig(d_model=128, n_layers=1, n_heads=2, d_ff=256)


def test_stages_run_and_resume(tmp_path):
    cfg = TrainConfig(max_steps=2, batch_size=2, seq_len=32, n_docs=40, n_train=5, ckpt_every=1, log_every=1)
    log = train_stage(cfg, tmp_path, TINY)
    assert log["steps"] == 2 and (tmp_path / "base.safetensors").is_file() and (tmp_path / "base.ckpt.pt").is_file()
    resumed = train_stage(TrainConfig(**{**cfg.__dict__, "max_steps": 3}), tmp_path, TINY)
    assert resumed["steps"] == 3 and [h["step"] for h in resumed["history"]] == [1, 2, 3]  # went on from step 2
    sft = TrainConfig(stage="instruct", max_steps=1, batch_size=2, n_train=5)
    assert train_stage(sft, tmp_path, init=str(tmp_path / "base.safetensors"))["steps"] == 1
    assert json.loads((tmp_path / "instruct.log.json").read_text())["config"]["stage"] == "instruct"


def test_config_errors():
    with pytest.raises(ValueError, match="stage"):
        TrainConfig(stage="chat")
    with pytest.raises(ValueError, match="init="):
        train_stage(TrainConfig(stage="instruct"), "/tmp/unused")
