"""Bad flags to every CLI in scripts/: each fails before any model loads or any stage trains, with argparse's exit
code 2 or a ValueError that names the flag's value and the accepted form (no deep traceback, no silent run)."""
import importlib.util
import sys

import pytest

from qsched_core.utils import REPO_ROOT
from robust_helpers import clear


def script(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(module)
    return module


def with_argv(monkeypatch, name, argv, fn):
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    return fn


ARGV_CASES = [  # (script, entry, argv, fragments) ; entry "parse_args" takes argv, "argv:" reads sys.argv
    ("qsched_search", "parse_args", ["--steps", "0"], ("num_steps=0",)),
    ("qsched_search", "parse_args", ["--k", "nan"], ("k=nan", "finite")),
    ("qsched_search", "parse_args", ["--preset", "w9a9"], ("preset='w9a9'", "w4a8")),
    ("qsched_search", "parse_args", ["--method", "random"], ("method='random'",)),
    ("qsched_search", "parse_args", ["--grid-points", "1"], ("grid_points=1",)),
    ("qsched_search", "parse_args", ["--threads", "0"], ("threads=0",)),
    ("qsched_search", "parse_args", ["--pipeline", "nope"], ("unknown pipeline 'nope'",)),
    ("qsched_search", "parse_args", ["--guidance-scale", "nan"], ("guidance_scale=nan",)),
    ("qsched_eval", "parse_args", ["--n-prompts", "-5"], ("n_prompts=-5",)),
    ("qsched_eval", "parse_args", ["--seeds", "a,b"], ("seeds='a,b'", "comma-separated ints")),
    ("qsched_eval", "parse_args", ["--steps", "2,x"], ("steps='2,x'",)),
    ("qsched_eval", "parse_args", ["--presets", "w9a9"], ("preset='w9a9'",)),
    ("qsched_eval", "parse_args", ["--ptq-methods", "magic"], ("ptq='magic'", "smoothquant")),
    ("qsched_eval", "parse_args", ["--threads", "0"], ("threads=0",)),
    ("qsched_eval", "parse_args", ["--device", "tpu"], ("device='tpu'",)),
    ("qsched_ablations", "parse_args", ["--n-prompts", "-5"], ("n_prompts=-5",)),
    ("qsched_ablations", "parse_args", ["--seeds", "a"], ("seeds='a'",)),
    ("qsched_ablations", "parse_args", ["--preset", "w9a9"], ("preset='w9a9'",)),
    ("qsched_ablations", "parse_args", ["--groups", "magic"], ("groups='magic'",)),
    ("qsched_ablations", "parse_args", ["--threads", "0"], ("threads=0",)),
    ("qsched_ablations", "parse_args", ["--name", "../x"], ("name='../x'",)),
    ("qsched_tinyworld_sweep", "main", ["--presets", "w9a9"], ("['w9a9']", "presets:")),
    ("qsched_tinyworld_sweep", "main", ["--steps", "2,x"], ("steps='2,x'",)),
    ("qsched_tinyworld_sweep", "main", ["--grid-points", "1"], ("grid_points=1",)),
    ("qsched_tinyworld_sweep", "main", ["--k", "nan"], ("k=nan",)),
    ("qsched_tinyworld_sweep", "main", ["--methods", "coarse_to_fine"], ("must include 'grid'",)),
    ("train_tinyworld", "argv:main", ["--minutes", "-1", "--stages", "vae"], ("minutes=-1.0",)),
    ("eval_tinyworld", "argv:parse_args", ["--steps", "2"], ("steps=(2,)", "must include 4")),
    ("eval_tinyworld", "argv:parse_args", ["--device", "tpu"], ("device='tpu'",)),
    ("eval_tinyworld", "argv:parse_args", ["--n-prompts", "1"], ("n_prompts=1",)),
]


@pytest.mark.parametrize("name, entry, argv, fragments", ARGV_CASES,
                         ids=[f"{c[0]}{''.join(c[2])}" for c in ARGV_CASES])
def test_bad_values_raise_before_any_work(name, entry, argv, fragments, monkeypatch, tmp_path):
    monkeypatch.setenv("QSCHED_FAST", "1")
    if name == "qsched_tinyworld_sweep":
        argv = [*argv, "--out-dir", str(tmp_path)]
    module = script(name)
    if entry.startswith("argv:"):
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
        clear(getattr(module, entry[5:]), *fragments)
    else:
        clear(lambda: getattr(module, entry)(argv), *fragments)


PARSER_ERRORS = [  # argparse's own exit (code 2) with the flag and the value on stderr
    ("qsched_search", "parse_args", ["--n-prompts", "x"], "invalid int value: 'x'"),
    ("qsched_ablations", "parse_args", ["--steps", "x"], "invalid int value: 'x'"),
    ("train_tinyworld", "argv:main", ["--stages", "vae,bogus"], "must be comma-separated names from"),
    ("train_tinyworld", "argv:main", ["--stages", "vae", "--set", "vae.minutes=abc"], "minutes needs a number"),
    ("train_tinyworld", "argv:main", ["--stages", "vae", "--set", "vae.nope=1"], "<stage>.<field>=<value>"),
    ("train_tinyworld", "argv:main", ["--stages", "vae", "--set", "minutes=1"], "<stage>.<field>=<value>"),
    ("eval_tinyworld", "argv:parse_args", ["--steps", "2,x"], "--steps '2,x' must be comma-separated ints"),
    ("bench_tinyworld_cpu", "argv:parse_args", ["--threads", "0"], "--threads 0"),
    ("bench_tinyworld_cpu", "argv:parse_args", ["--batch-size", "x"], "invalid int value: 'x'"),
    ("time_cell", "parse_args", ["--repeats", "1"], "--repeats 1: give at least 2"),
    ("time_cell", "parse_args", ["--n-prompts", "0"], "--n-prompts 0: give a positive number"),
]


@pytest.mark.parametrize("name, entry, argv, fragment", PARSER_ERRORS,
                         ids=[f"{c[0]}{''.join(c[2])}" for c in PARSER_ERRORS])
def test_argparse_errors_name_the_flag(name, entry, argv, fragment, monkeypatch, capsys):
    module = script(name)
    if entry.startswith("argv:"):
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
        fn = getattr(module, entry[5:])
    else:
        fn = lambda: getattr(module, entry)(argv)  # noqa: E731
    with pytest.raises(SystemExit) as info:
        fn()
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err
