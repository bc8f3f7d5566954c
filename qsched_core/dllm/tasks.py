"""Three task families, one per category of the study, each with a held-out evaluation set and a disjoint train split.

| category (study)           | here                                   | scored by                               |
|----------------------------|----------------------------------------|-----------------------------------------|
| general QA (ARC, PIQA, ..) | `qa`: facts of a synthetic knowledge   | MC likelihood of each of 4 options      |
|                            | base, seen in pre-training as prose    | (chance 25 %)                           |
| math (GSM8K, MATH)         | `arith`: 1-2 step word problems,       | generation (gen_len 32, block 4) + exact|
|                            | worked solution, then "the answer is"  | match of the final number               |
| code (HumanEval, MBPP)     | `code`: a toy-language program from a  | generation (gen_len 64, block 8), pass@1|
|                            | description (`toylang.py`)             | = all 5 hidden tests pass               |

gen_len and block_len keep the study's ratios: steps = gen_len (one token committed per step), block =
gen_len / 8 (GSM8K: 256 / 32), code twice as long as math (512 vs 256).

Splits. The knowledge base is split *by fact*: 500 facts are asked in evaluation, the others in the QA train
split; every fact appears in pre-training only as a statement ("Kalo lives in north zentar ."), never in the
question format, for the evaluated ones. Arithmetic and code items are drawn from separate seeds and every
train prompt that equals an evaluation prompt is dropped, so the splits are disjoint by construction.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from .toylang import ProgramError, hidden_inputs, random_program, run_program
from .vocab import (
    ARITH_OBJECTS,
    CITY_DIR,
    CITY_STEM,
    JOB_ADJ,
    JOB_NOUN,
    NAMES,
    PET_ANIMAL,
    PET_COLOR,
)

TASKS = ("qa", "arith", "code")
CATEGORY = {"qa": "general QA", "arith": "math", "code": "code"}


@dataclass(frozen=True)
class GenSettings:
    """Generation settings of a task (steps = gen_len: one token per step, as in the study)."""
    gen_len: int
    block_len: int


GEN = {"arith": GenSettings(32, 4), "code": GenSettings(64, 8)}
QA_ANSWER_LEN = 4  # SFT pads QA answers (2 words) with EOS to this length


@dataclass(frozen=True)
class QAItem:
    prompt: str
    options: tuple[str, ...]
    answer: int                    # index of the correct option


@dataclass(frozen=True)
class GenItem:
    task: str                      # "arith" | "code"
    prompt: str
    target: str                    # reference answer (worked solution / reference program)
    tests: tuple[tuple[int, int], ...] = ()  # code: hidden (input, expected output) pairs


# ------------------------------------------------------------------------------------- knowledge base
ATTRIBUTES = {
    "city": ([f"{d} {s}" for d in CITY_DIR for s in CITY_STEM],
             ("{n} lives in {v} .", "{n} has a house in {v} .", "the home of {n} is {v} ."),
             "question : where does {n} live ? answer :"),
    "job": ([f"{a} {b}" for a in JOB_ADJ for b in JOB_NOUN],
            ("{n} works as a {v} .", "by trade {n} is a {v} ."),
            "question : what is the job of {n} ? answer :"),
    "pet": ([f"{c} {a}" for c in PET_COLOR for a in PET_ANIMAL],
            ("{n} owns a {v} .", "the pet of {n} is a {v} ."),
            "question : what pet does {n} own ? answer :"),
}


@dataclass(frozen=True)
class Fact:
    entity: str
    attribute: str
    value: str
    weight: float                  # how often pre-training mentions it: exp(-i / 25) for person i


def knowledge_base(seed: int = 0, n_entities: int = 300) -> list[Fact]:
    """n_entities people x 3 attributes; person i is mentioned with weight exp(-i / 25), so the last third of
    the people are mentioned about once or never in pre-training: their facts can only be guessed."""
    if not 1 <= n_entities <= len(NAMES):
        raise ValueError(f"n_entities={n_entities} must be in 1..{len(NAMES)}")
    rng = random.Random(seed)
    names = rng.sample(NAMES, n_entities)
    return [Fact(n, a, rng.choice(values), math.exp(-i / 25)) for i, n in enumerate(names)
            for a, (values, _, _) in ATTRIBUTES.items()]


def fact_statement(fact: Fact, rng: random.Random) -> str:
    return rng.choice(ATTRIBUTES[fact.attribute][1]).format(n=fact.entity, v=fact.value)


def qa_prompt(fact: Fact) -> str:
    return ATTRIBUTES[fact.attribute][2].format(n=fact.entity)


def split_facts(facts: list[Fact], n_eval: int = 500, seed: int = 0) -> tuple[list[Fact], list[Fact]]:
    """(evaluation facts, QA-train facts), disjoint."""
    if not 0 < n_eval < len(facts):
        raise ValueError(f"n_eval={n_eval} must be in 1..{len(facts) - 1} for a knowledge base of {len(facts)} facts")
    order = random.Random(seed + 1).sample(range(len(facts)), len(facts))
    return [facts[i] for i in order[:n_eval]], [facts[i] for i in order[n_eval:]]


def qa_item(fact: Fact, rng: random.Random, n_options: int = 4) -> QAItem:
    values = ATTRIBUTES[fact.attribute][0]
    options = [fact.value] + rng.sample([v for v in values if v != fact.value], n_options - 1)
    rng.shuffle(options)
    return QAItem(qa_prompt(fact), tuple(options), options.index(fact.value))


# ------------------------------------------------------------------------------------- arithmetic
def num(n: int) -> str:
    """Digits as separate words: 38 -> '3 8'."""
    return " ".join(str(n))


def random_arith(rng: random.Random) -> GenItem:
    name, obj = rng.choice(NAMES), rng.choice(ARITH_OBJECTS)
    x = rng.randint(2, 60)
    text, steps = [f"{name} has {num(x)} {obj} ."], []
    for _ in range(rng.randint(1, 2)):
        if x < 2 or rng.random() < 0.5:
            b = rng.randint(1, 40)
            text.append(f"then {name} {rng.choice(('finds', 'buys', 'gets'))} {num(b)} more .")
            steps.append(f"{num(x)} + {num(b)} = {num(x + b)} ;")
            x += b
        else:
            b = rng.randint(1, x - 1)
            text.append(f"then {name} {rng.choice(('loses', 'sells', 'gives away'))} {num(b)} .")
            steps.append(f"{num(x)} - {num(b)} = {num(x - b)} ;")
            x -= b
    prompt = f"question : {' '.join(text)} how many {obj} does {name} have now ? answer :"
    return GenItem("arith", prompt, " ".join(steps) + f" the answer is {num(x)}")


def random_code(rng: random.Random) -> GenItem:
    while True:  # redraw the rare program that overflows on a test input (x * x chains)
        desc, program = random_program(rng)
        try:
            tests = tuple((x, run_program(program, x)) for x in hidden_inputs(rng))
        except ProgramError:
            continue
        return GenItem("code", f"question : write f that takes x : {desc} answer :", program, tests)


MAKERS = {"arith": random_arith, "code": random_code}


def gen_items(task: str, n: int, seed: int, exclude: set[str] = frozenset()) -> list[GenItem]:
    """n distinct items of an arith / code task whose prompts are not in `exclude`."""
    if task not in MAKERS:
        raise ValueError(f"task={task!r} is not a generation task; use one of {tuple(MAKERS)}")
    rng, items, seen = random.Random(seed), [], set(exclude)
    for _ in range(50 * n):
        item = MAKERS[task](rng)
        if item.prompt not in seen:
            seen.add(item.prompt)
            items.append(item)
            if len(items) == n:
                return items
    raise ValueError(f"could not draw {n} distinct {task} items; ask for fewer")


# ------------------------------------------------------------------------------------- scoring
_FINAL = re.compile(r"the answer is ((?:\d )*\d)(?: |$)")


def arith_correct(item: GenItem, completion: str) -> bool:
    """Exact match of the number after the first 'the answer is' (the harness' stop-string cut)."""
    want, got = _FINAL.search(item.target + " "), _FINAL.search(completion + " ")
    return got is not None and got.group(1) == want.group(1)


def code_correct(item: GenItem, completion: str) -> bool:
    """pass@1: the completion runs and returns the expected value on every hidden test."""
    try:
        return all(run_program(completion, x) == y for x, y in item.tests)
    except ProgramError:
        return False


@dataclass
class TaskSuite:
    """The evaluation sets (held out) and train splits of all three tasks, from one seed."""
    qa_eval: list[QAItem]
    arith_eval: list[GenItem]
    code_eval: list[GenItem]
    facts: list[Fact]              # the whole knowledge base (pre-training states all of it as prose)
    qa_train: list[QAItem]
    arith_train: list[GenItem]
    code_train: list[GenItem]


def make_suite(n_eval: int = 500, n_train: int = 20000, seed: int = 0) -> TaskSuite:
    """Evaluation sets of n_eval items per task and train splits of n_train generated items (QA: the rest of the KB)."""
    facts = knowledge_base(seed)
    eval_facts, train_facts = split_facts(facts, n_eval, seed)
    rng = random.Random(seed + 2)
    arith_eval = gen_items("arith", n_eval, seed + 3)
    code_eval = gen_items("code", n_eval, seed + 4)
    return TaskSuite(
        qa_eval=[qa_item(f, rng) for f in eval_facts], arith_eval=arith_eval, code_eval=code_eval, facts=facts,
        qa_train=[qa_item(f, rng) for f in train_facts],
        arith_train=gen_items("arith", n_train, seed + 5, {i.prompt for i in arith_eval}),
        code_train=gen_items("code", n_train, seed + 6, {i.prompt for i in code_eval}))
