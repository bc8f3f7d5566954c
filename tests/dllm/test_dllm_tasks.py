"""The three task families: sizes, disjoint splits, scorers, the toy language and the corpora."""
import random

import pytest

from qsched_core.dllm.corpus import calibration_corpus, sft_pairs
from qsched_core.dllm.tasks import arith_correct, code_correct, make_suite
from qsched_core.dllm.toylang import ProgramError, random_program, run_program
from qsched_core.dllm.vocab import TOKENIZER


@pytest.fixture(scope="module")
def suite():
    return make_suite(n_eval=500, n_train=300)


def test_eval_sets_are_large_and_disjoint_from_train(suite):
    for task in ("qa", "arith", "code"):
        ev, tr = getattr(suite, f"{task}_eval"), getattr(suite, f"{task}_train")
        assert len(ev) >= 500 and len({i.prompt for i in ev}) == len(ev)
        assert not {i.prompt for i in ev} & {i.prompt for i in tr}


def test_references_score_as_correct_and_junk_does_not(suite):
    assert all(arith_correct(i, i.target) for i in suite.arith_eval)
    assert all(code_correct(i, i.target) for i in suite.code_eval)
    item = suite.arith_eval[0]
    assert not arith_correct(item, "the answer is")
    assert not code_correct(suite.code_eval[0], "def f x : x = x +")
    assert all(i.options[i.answer] and len(set(i.options)) == 4 for i in suite.qa_eval)


def test_toy_language_interpreter():
    assert run_program("def f x : if x > 4 : x = x * 3 ; else : x = x + 7 ; end ; x = x - 2 ; return x", 5) == 13
    assert run_program("def f x : if x > 4 : x = x * 3 ; else : x = x + 7 ; end ; x = x - 2 ; return x", 1) == 6
    for bad in ("def f x : x = x + 1 ;", "def f x : x = y + 1 ; return x", "f x : return x"):
        with pytest.raises(ProgramError):
            run_program(bad, 1)
    desc, prog = random_program(random.Random(0))
    TOKENIZER.encode(desc), TOKENIZER.encode(prog)


def test_tokenizer_round_trip_and_unknown_words():
    text = "question : where does Kalo live ? answer :"
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == text
    with pytest.raises(ValueError, match="not in the vocabulary"):
        TOKENIZER.encode("a zebra")


def test_sft_rows_and_calibration_corpora(suite):
    ids, prompt_mask, ans_len = sft_pairs(suite)
    assert ids.shape[1] == 128 and (ans_len > 0).all()
    assert ((ids == TOKENIZER.eos_id) | ~(~prompt_mask)).any()
    wiki, pile = calibration_corpus("wiki", 4, 64), calibration_corpus("pile", 4, 64, seed=1)
    assert wiki.shape == (4, 64) and not (wiki == TOKENIZER.mask_id).any()
    assert "question" not in TOKENIZER.decode(wiki.flatten(), stop_at_eos=False)
    assert not (calibration_corpus("wiki", 4, 64, seed=1) == wiki).all()
    with pytest.raises(ValueError, match="wiki"):
        calibration_corpus("c4")
    assert pile.shape == (4, 64)
