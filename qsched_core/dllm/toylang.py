"""A toy programming language for the code task: one integer variable, arithmetic, one optional if/else.

The code task is the study's HumanEval / MBPP analogue: the model reads a description in words and must
write a program that *runs* and returns the right value on hidden tests (pass@1). Like real code, the output
is long and syntax-constrained: one wrong token (a missing `;`, an `else` without `end`) and nothing runs.

Grammar (tokens separated by spaces; x is the only variable, k a digit 1..9):

    program := "def f x :" stmt* "return x"
    stmt    := "x = x" op arg ";"  |  "if x" cmp k ":" assign "else :" assign "end ;"
    assign  := "x = x" op arg ";"          op := + | - | *        arg := k | x        cmp := > | <

Example: "if x is greater than 4 , multiply by 3 , otherwise add 7 , then subtract 2 ." ->
    def f x : if x > 4 : x = x * 3 ; else : x = x + 7 ; end ; x = x - 2 ; return x

`run_program` is a strict interpreter: anything outside the grammar raises `ProgramError`, which the task
scores as a failure (like a SyntaxError in HumanEval).
"""
from __future__ import annotations

import random


class ProgramError(Exception):
    """The program does not parse or does not end with `return x`."""


OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
WORDS_OF_OP = {"+": "add", "-": "subtract", "*": "multiply by"}
MAX_ABS = 10**6  # values beyond this are an error (a runaway "x = x * x" chain)


def _assign(tok: list[str], i: int, x: int) -> tuple[int, int]:
    """Parse 'x = x op arg ;' at tok[i]; return (new x, next index)."""
    if len(tok) < i + 6 or tok[i:i + 3] != ["x", "=", "x"] or tok[i + 3] not in OPS or tok[i + 5] != ";":
        raise ProgramError(f"bad assignment at token {i}: {' '.join(tok[i:i + 6])}")
    arg = tok[i + 4]
    if arg == "x":
        b = x
    elif arg.isdigit() and len(arg) == 1:
        b = int(arg)
    else:
        raise ProgramError(f"bad argument {arg!r}")
    y = OPS[tok[i + 3]](x, b)
    if abs(y) > MAX_ABS:
        raise ProgramError("value overflow")
    return y, i + 6


def run_program(text: str, x: int) -> int:
    """Execute a program (space-separated tokens) on input x; raise ProgramError if it is not valid."""
    tok = text.split()
    if tok[:4] != ["def", "f", "x", ":"]:
        raise ProgramError("a program starts with 'def f x :'")
    i = 4
    while i < len(tok):
        if tok[i:] == ["return", "x"]:
            return x
        if tok[i] == "if":
            if len(tok) < i + 5 or tok[i + 1] != "x" or tok[i + 2] not in (">", "<") or not tok[i + 3].isdigit() \
                    or tok[i + 4] != ":":
                raise ProgramError(f"bad if at token {i}")
            cond = x > int(tok[i + 3]) if tok[i + 2] == ">" else x < int(tok[i + 3])
            x_then, j = _assign(tok, i + 5, x)
            if tok[j:j + 2] != ["else", ":"]:
                raise ProgramError("if without 'else :'")
            x_else, j = _assign(tok, j + 2, x)
            if tok[j:j + 2] != ["end", ";"]:
                raise ProgramError("if without 'end ;'")
            x, i = (x_then if cond else x_else), j + 2
        else:
            x, i = _assign(tok, i, x)
    raise ProgramError("a program ends with 'return x'")


def _random_op(rng: random.Random) -> tuple[str, str]:
    """(description words, statement) for one random operation."""
    if rng.random() < 0.12:
        return "square it", "x = x * x ;"
    op = rng.choice("+-*")
    k = rng.randint(2, 5) if op == "*" else rng.randint(1, 9)
    return f"{WORDS_OF_OP[op]} {k}", f"x = x {op} {k} ;"


def random_program(rng: random.Random) -> tuple[str, str]:
    """(description, reference program): 1-3 plain operations, optionally preceded by an if/else."""
    desc, code = [], []
    if rng.random() < 0.5:
        cmp_, t = rng.choice([(">", "greater"), ("<", "less")]), rng.randint(2, 8)
        (d1, s1), (d2, s2) = _random_op(rng), _random_op(rng)
        desc.append(f"if x is {cmp_[1]} than {t} , {d1} , otherwise {d2}")
        code.append(f"if x {cmp_[0]} {t} : {s1} else : {s2} end ;")
    for _ in range(rng.randint(1, 3) if not desc else rng.randint(0, 2)):
        d, s = _random_op(rng)
        desc.append(d)
        code.append(s)
    return " , then ".join(desc) + " .", "def f x : " + " ".join(code) + " return x"


def hidden_inputs(rng: random.Random, n: int = 5) -> list[int]:
    """n distinct hidden test inputs in -3..12 (both sides of every threshold 2..8 are likely covered)."""
    return rng.sample(range(-3, 13), n)
