"""Notebook 06 keeps the course's shape (graded exercises with collapsed solutions and checks, a closing list), and
its exercise checks accept the worked solution, reject a wrong answer with a hint, and wait for `...`."""
import re
from pathlib import Path

import nbformat
import torch

from qsched_core.dllm import exercises
from qsched_core.dllm.evaluate import paired_gap
from qsched_core.dllm.vocab import TOKENIZER

NB = Path(__file__).resolve().parents[2] / "notebooks" / "06_dllm_ptq.ipynb"


def test_notebook_exercises_solutions_and_closing_list():
    cs = nbformat.read(NB, as_version=4).cells
    starts = [i for i, c in enumerate(cs) if c.cell_type == "markdown" and re.search(r"\*\*Exercise \d", c.source)]
    assert 2 <= len(starts) <= 4
    assert "warm-up" in cs[starts[0]].source and "open question" in cs[starts[-1]].source
    for n, i in enumerate(starts):
        block = cs[i:starts[n + 1] if n + 1 < len(starts) else len(cs)]
        assert any(c.cell_type == "markdown" and "<details>" in c.source and "Solution" in c.source for c in block[:4])
        for stub in (c for c in block[:3] if c.cell_type == "code" and "exercises.check_" in c.source):
            assert hasattr(exercises, re.search(r"exercises\.(check_\w+)", stub.source).group(1))
            assert "= ..." in stub.source
    assert any("What you should now be able to explain" in c.source for c in cs if c.cell_type == "markdown")
    assert not any("EX4_RESULT" in c.source or "pilot" in c.source for c in cs)


def test_check_forward_passes(tiny_model, capsys):
    prompt = [TOKENIZER.eos_id] + TOKENIZER.encode("question : 2 + 3 ?")
    assert exercises.count_forward_passes(tiny_model, prompt, 8, 4) == 8
    assert exercises.check_forward_passes(8, tiny_model, prompt, gen_len=8, block_len=4)
    assert not exercises.check_forward_passes(2, tiny_model, prompt, gen_len=8, block_len=4)
    assert "count again" in capsys.readouterr().out
    assert not exercises.check_forward_passes(..., tiny_model, prompt)
    assert "no answer yet" in capsys.readouterr().out


def test_check_shared_top_channel(tiny_model):
    n = exercises.shared_top_channel(tiny_model, tiny_model, n_seqs=2)
    assert n == tiny_model.cfg.n_layers  # a model shares every top channel with itself
    assert exercises.check_shared_top_channel(n, tiny_model, tiny_model, n_seqs=2)
    assert not exercises.check_shared_top_channel(n + 1, tiny_model, tiny_model, n_seqs=2)


def test_check_gap_interval(capsys):
    g = torch.Generator().manual_seed(0)
    fp = (torch.rand(300, generator=g) < 0.8).double()
    a = fp[:, None] * (torch.rand(300, 3, generator=g) < 0.85).double()   # three seeds, averaged by the check
    b = fp[:, None] * (torch.rand(300, 1, generator=g) < 0.95).double()
    want = paired_gap(fp, a, b)
    assert exercises.check_gap_interval(want, fp, a, b)
    assert not exercises.check_gap_interval((want[0], want[1] - 20, want[2] + 20), fp, a, b)
    assert "ONE set of item indices" in capsys.readouterr().out
    assert not exercises.check_gap_interval((want[0] + 5, want[1], want[2]), fp, a, b)
