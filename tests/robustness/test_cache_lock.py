"""utils.cache_lock: processes side by side compute a cache file once; a killed run's lock does not block forever."""
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qsched_core.utils import cache_lock

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_take_turns_and_the_second_finds_the_file(tmp_path):
    target, log = tmp_path / "cell.json", tmp_path / "log.txt"
    worker = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from qsched_core.utils import cache_lock
        target, log = Path({str(target)!r}), Path({str(log)!r})
        with cache_lock(target, poll_s=0.05):
            if target.exists():
                log.open("a").write("reused\\n")
            else:
                log.open("a").write(f"start {{time.time()}}\\n")
                time.sleep(1.0)
                target.write_text("done")
                log.open("a").write(f"end {{time.time()}}\\n")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    lines = log.read_text().split()
    assert lines.count("start") == 1 and lines.count("reused") == 2  # computed once, found twice
    assert not (tmp_path / "cell.json.lock").exists()


def test_a_finished_process_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "x.npz.lock").write_text(f"{socket.gethostname()} {dead.pid}")
    t0 = time.perf_counter()
    with cache_lock(tmp_path / "x.npz", wait_limit_s=5):
        pass
    assert time.perf_counter() - t0 < 2


def test_a_live_holder_makes_a_clear_timeout(tmp_path):
    import os

    (tmp_path / "s.json.lock").write_text(f"{socket.gethostname()} {os.getpid()}")  # this very process: alive
    with pytest.raises(TimeoutError, match=r"s\.json\.lock has been held by .*delete the lock file"):
        with cache_lock(tmp_path / "s.json", wait_limit_s=0.3, poll_s=0.1):
            pass


def test_the_lock_goes_when_the_computation_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with cache_lock(tmp_path / "y.json"):
            raise RuntimeError("boom")
    assert not (tmp_path / "y.json.lock").exists()


def test_load_or_compute_loads_first_and_computes_once(tmp_path):
    from qsched_core.utils import load_or_compute

    target, calls = tmp_path / "v.txt", []
    load = lambda: target.read_text() if target.exists() else None  # noqa: E731

    def compute():
        calls.append(1)
        target.write_text("v")
        return "v"

    assert load_or_compute(target, load, compute) == "v" and calls == [1]
    assert load_or_compute(target, load, compute) == "v" and calls == [1]  # the second call loads
    assert not (tmp_path / "v.txt.lock").exists()
