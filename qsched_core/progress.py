"""Progress bars for the slow loops: `tqdm.auto`, quiet wherever nobody would watch them.

A loop that takes more than a couple of seconds (sampling several image sets, quantizing every layer of a UNet,
training a toy model) wraps its iterable in `progress(...)`. In JupyterLab that is tqdm's notebook bar, in a
terminal its text bar. It stays silent when

  * QSCHED_FAST=1 or QSCHED_HEADLESS=1 (`make test`, `make notebooks`, the committed notebook outputs): a bar
    there is noise in the test log, and in a notebook executed headless it would be saved as an unrendered
    widget in the committed outputs;
  * stderr is neither a terminal nor a notebook kernel (a script piped to a log file, CI).

`progress(..., disable=False)` forces a bar on, `disable=True` off.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable

from .utils import env_switch


def in_notebook() -> bool:
    """True inside a Jupyter kernel (ipykernel's shell), where tqdm.auto draws a widget bar."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def show_progress() -> bool:
    """Whether a bar would be seen: not under make test / make notebooks, and on a terminal or in a notebook."""
    if env_switch("QSCHED_FAST") or env_switch("QSCHED_HEADLESS"):
        return False
    return in_notebook() or sys.stderr.isatty()


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None,
             disable: bool | None = None, **kwargs):
    """`tqdm.auto.tqdm(iterable, desc, total)`, disabled unless `show_progress()` (or `disable` says otherwise)."""
    from tqdm.auto import tqdm

    off = not show_progress() if disable is None else disable
    return tqdm(iterable, desc=desc, total=total, disable=off, leave=False, **kwargs)
