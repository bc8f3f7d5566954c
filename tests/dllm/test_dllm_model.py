"""The mask predictor: LLaDA parameter names, bidirectional attention, padding invariance, checkpoint I/O."""
import json

import pytest
import torch

from qsched_core.dllm.model import (
    DLLMConfig,
    LLaDAModel,
    block_linear_filter,
    load_llada,
    load_safetensors,
    save_safetensors,
)

LLADA_BLOCK = {"attn_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_norm", "ff_proj", "up_proj", "ff_out"}


def test_parameter_names_are_llada_names(tiny_model):
    names = set(tiny_model.state_dict())
    assert {"model.transformer.wte.weight", "model.transformer.ln_f.weight", "model.transformer.ff_out.weight"} <= names
    assert {f"model.transformer.blocks.0.{m}.weight" for m in LLADA_BLOCK} <= names
    chosen = [n for n, m in tiny_model.named_modules() if block_linear_filter(m, n)]
    assert len(chosen) == 7 and "model.transformer.ff_out" not in chosen  # head stays FP


def test_attention_is_bidirectional(tiny_model):
    x = torch.randint(3, 600, (1, 10))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 600 + 3
    assert (tiny_model(x)[0, 0] - tiny_model(y)[0, 0]).abs().max() > 1e-6  # a later token changes position 0


def test_left_padding_changes_nothing(tiny_model):
    from qsched_core.dllm.diffusion import left_pad
    ids, attn = left_pad([[5, 6, 7, 8, 9], [9, 10, 11]], pad_id=0)
    padded = tiny_model(ids, attn)[1, 2:]
    alone = tiny_model(torch.tensor([[9, 10, 11]]))[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        DLLMConfig(d_model=130, n_heads=4)
    with pytest.raises(ValueError, match="mask_token_id"):
        DLLMConfig(vocab_size=10, mask_token_id=20)


def test_safetensors_round_trip(tiny_model, tmp_path):
    save_safetensors(tiny_model, tmp_path / "m.safetensors", dtype=torch.float32)
    back = load_safetensors(tmp_path / "m.safetensors")
    x = torch.randint(3, 600, (2, 8))
    torch.testing.assert_close(back(x), tiny_model(x))


def test_load_llada_from_a_local_folder(tiny_model, tmp_path):
    from safetensors.torch import save_file
    cfg = dict(d_model=128, n_layers=1, n_heads=2, n_kv_heads=2, mlp_hidden_size=256, vocab_size=640,
               embedding_size=640, rope_theta=10000.0, rms_norm_eps=1e-5, mask_token_id=2, max_sequence_length=128)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    state = {k: v.to(torch.bfloat16) for k, v in tiny_model.state_dict().items()}
    names = sorted(state)
    save_file({k: state[k] for k in names[:5]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in names[5:]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    model = load_llada(tmp_path, dtype=torch.float32)
    x = torch.randint(3, 600, (1, 6))
    torch.testing.assert_close(model(x), LLaDAModel.__call__(tiny_model.to(torch.bfloat16).float(), x))


def test_missing_llada_checkpoint_fails_fast(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LLaDA checkpoint"):
        load_llada(tmp_path / "LLaDA-8B-Base")
