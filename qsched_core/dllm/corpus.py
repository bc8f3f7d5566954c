"""Text for the tiny world: generic prose, the pre-training mix, SFT pairs and the two calibration corpora.

Why two generic corpora: the study calibrates GPTQ, SmoothQuant, QuaRot and DuQuant on WikiText-2 and AWQ on
the Pile validation set, both clean text unrelated to the benchmarks (dllm_ptq.md §1.3). Here `wiki` is
encyclopedic prose from a small grammar and `pile` mixes that prose with lists and dialogues. Calibration
sequences come from seeds that pre-training never uses and contain no task text and no [MASK].

Pre-training ("Base") reads random 128-token windows of a stream of documents separated by [EOS]:
generic prose, knowledge-base statements (rare people are mentioned rarely), and the train splits of the
three tasks written as "question : ... answer : ..." text. SFT ("Instruct") reads (prompt, answer) pairs
from the same train splits, the answer padded with [EOS] to the task's generation length (LLaDA's recipe).
"""
from __future__ import annotations

import itertools
import random

import torch

from .tasks import GEN, QA_ANSWER_LEN, TaskSuite, fact_statement
from .vocab import ADJS, CONNECTIVES, NOUNS, PREPS, TOKENIZER, VERBS

CALIB_SEED_OFFSET = 10_000  # calibration seeds live far from the pre-training seeds


def _np(rng: random.Random) -> str:
    return f"the {rng.choice(ADJS)} {rng.choice(NOUNS)}" if rng.random() < 0.6 else f"the {rng.choice(NOUNS)}"


def wiki_sentence(rng: random.Random) -> str:
    s = f"{_np(rng)} {rng.choice(VERBS)} {_np(rng)}"
    if rng.random() < 0.5:
        s += f" {rng.choice(PREPS)} {_np(rng)}"
    if rng.random() < 0.3:
        s += f" {rng.choice(CONNECTIVES)} {_np(rng)} {rng.choice(VERBS)} {_np(rng)}"
    if rng.random() < 0.15:
        s += f" in the year {' '.join(str(rng.randint(1000, 1999)))}"
    return s + " ."


def wiki_doc(rng: random.Random) -> str:
    return " ".join(wiki_sentence(rng) for _ in range(rng.randint(2, 6)))


def pile_doc(rng: random.Random) -> str:
    """Prose, a numbered list, or a dialogue: the Pile-val analogue for AWQ."""
    kind = rng.random()
    if kind < 0.4:
        return wiki_doc(rng)
    if kind < 0.7:
        return " ".join(f"item {i} : {_np(rng)} ;" for i in range(1, rng.randint(3, 7)))
    turns = [f"{rng.choice(('a', 'they'))} {rng.choice(('says', 'asks', 'replies'))} : {wiki_sentence(rng)}"
             for _ in range(rng.randint(2, 5))]
    return " ".join(turns)


def pretrain_stream(suite: TaskSuite, n_docs: int, seed: int = 0) -> torch.Tensor:
    """A 1-D token stream of n_docs documents, each followed by [EOS] (the Base model's pre-training mix)."""
    rng = random.Random(seed)
    by_entity: dict[str, list] = {}
    for f in suite.facts:
        by_entity.setdefault(f.entity, []).append(f)
    people = list(by_entity)
    cum = list(itertools.accumulate(by_entity[n][0].weight for n in people))
    ids: list[int] = []
    for _ in range(n_docs):
        r = rng.random()
        if r < 0.25:
            doc = wiki_doc(rng)
        elif r < 0.55:  # a short paragraph about one person
            person = by_entity[rng.choices(people, cum_weights=cum)[0]]
            doc = " ".join(fact_statement(f, rng) for f in rng.sample(person, rng.randint(1, 3)))
        elif r < 0.60:
            item = rng.choice(suite.qa_train)
            doc = f"{item.prompt} {item.options[item.answer]}"
        elif r < 0.80:
            item = rng.choice(suite.arith_train)
            doc = f"{item.prompt} {item.target}"
        else:
            item = rng.choice(suite.code_train)
            doc = f"{item.prompt} {item.target}"
        ids += TOKENIZER.encode(doc) + [TOKENIZER.eos_id]
    return torch.tensor(ids, dtype=torch.long)


def sft_pairs(suite: TaskSuite, seq_len: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All SFT examples, left-padded to seq_len: (ids (N, L), prompt_mask (N, L) bool, answer_len (N,)).

    Layout per row: [PAD]* [EOS] prompt answer [EOS]* with the answer padded by [EOS] to the task's gen_len
    (QA: QA_ANSWER_LEN). prompt_mask marks pads, the leading [EOS] and the prompt: never noised.
    """
    rows = [(i.prompt, i.options[i.answer], QA_ANSWER_LEN) for i in suite.qa_train]
    rows += [(i.prompt, i.target, GEN["arith"].gen_len) for i in suite.arith_train]
    rows += [(i.prompt, i.target, GEN["code"].gen_len) for i in suite.code_train]
    ids = torch.full((len(rows), seq_len), TOKENIZER.pad_id, dtype=torch.long)
    prompt_mask = torch.ones(len(rows), seq_len, dtype=torch.bool)
    ans_len = torch.zeros(len(rows), dtype=torch.long)
    for r, (prompt, answer, length) in enumerate(rows):
        p = [TOKENIZER.eos_id] + TOKENIZER.encode(prompt)
        a = TOKENIZER.encode(answer)
        if len(a) >= length or len(p) + length > seq_len:
            raise ValueError(f"SFT example does not fit: prompt {len(p)} + answer {len(a)} (pad to {length}) > "
                             f"seq_len={seq_len}; raise seq_len or shorten the task")
        a = a + [TOKENIZER.eos_id] * (length - len(a))
        ids[r, seq_len - len(p) - length:] = torch.tensor(p + a)
        prompt_mask[r, seq_len - length:] = False
        ans_len[r] = length
    return ids, prompt_mask, ans_len


def calibration_corpus(kind: str, n_seqs: int = 128, seq_len: int = 128, seed: int = 0) -> torch.Tensor:
    """(n_seqs, seq_len) clean token sequences of the 'wiki' or 'pile' corpus (random windows of a fresh stream)."""
    makers = {"wiki": wiki_doc, "pile": pile_doc}
    if kind not in makers:
        raise ValueError(f"kind={kind!r} must be 'wiki' (GPTQ / SmoothQuant / QuaRot / DuQuant) or 'pile' (AWQ)")
    rng = random.Random(CALIB_SEED_OFFSET + 7919 * seed + (kind == "pile"))
    ids: list[int] = []
    while len(ids) < n_seqs * seq_len:
        ids += TOKENIZER.encode(makers[kind](rng)) + [TOKENIZER.eos_id]
    return torch.tensor(ids[: n_seqs * seq_len], dtype=torch.long).reshape(n_seqs, seq_len)
