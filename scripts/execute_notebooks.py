"""Execute notebooks in full mode and write them back with their outputs: python scripts/execute_notebooks.py NB...

This is how the committed outputs of notebooks/ are made (qsched_core/notebooks.py says what is cleaned and
checked). Each notebook runs top to bottom in a fresh kernel with QSCHED_FAST=0 and QSCHED_HEADLESS=1, is written
back in place, and its wall time and any problem are printed. --fast runs FAST mode instead (for a quick look;
tests/course/test_notebook_outputs.py rejects such outputs in a commit).
"""
from __future__ import annotations

import argparse
import sys
import time

from qsched_core.notebooks import execute


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="+", help="paths of .ipynb files")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    p.add_argument("--fast", action="store_true", help="QSCHED_FAST=1 instead of a full run")
    args = p.parse_args()
    failed = 0
    for path in args.notebooks:
        t0 = time.perf_counter()
        found = execute(path, timeout=args.timeout, fast=args.fast)
        print(f"{path}: {time.perf_counter() - t0:.0f} s{''.join(chr(10) + '  ' + f for f in found)}", flush=True)
        failed += bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
