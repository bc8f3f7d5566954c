"""Live controls for the notebooks: `live(fn, **controls)` is `ipywidgets.interact` that also runs headless.

Executed headless (nbmake in `make test`, nbconvert in `make notebooks`), a cell that calls `interact` now and
then never finishes: kernel and client both sit idle, each waiting for the other. This is an open problem of
headless notebook execution with interact's Output widget (reported upstream for nbconvert and nbclient); here
it hit notebooks 00 and 01 under ipykernel 6 and 7 alike. `make` sets QSCHED_HEADLESS=1 for those runs, and
`live` then builds the same controls, calls `fn` once with their values outside any Output widget, prints that
call and displays what `fn` returns. In JupyterLab (QSCHED_HEADLESS unset or 0) it is exactly `interact`.
"""
from __future__ import annotations

from typing import Any, Callable

from .utils import env_switch


def headless() -> bool:
    """True when QSCHED_HEADLESS=1 (`make test`, `make notebooks`): no frontend will ever show a widget."""
    return env_switch("QSCHED_HEADLESS")


def live(fn: Callable, /, **controls: Any) -> None:
    """`interact(fn, **controls)`; headless, run `fn` once with the controls' initial values instead.

    controls: anything `interact` accepts (a widget, a (min, max) tuple, a list of options, `fixed(value)`), and
    the initial values are the ones `interact` would start from (the function's defaults where they fit).
    """
    from IPython.display import display
    from ipywidgets import fixed, interact, interactive

    if not headless():
        interact(fn, **controls)
        return
    panel = interactive(fn, {"manual": True}, **controls)  # manual: the widgets are built, fn is not called
    values = {w._kwarg: w.get_interact_value() for w in panel.kwargs_widgets}
    for widget in (*panel.children, panel):
        widget.close()
    shown = ", ".join(f"{k}={v!r}" for k, v in values.items() if not isinstance(controls.get(k), fixed))
    print(f"[headless run, controls not shown] {getattr(fn, '__name__', 'fn')}({shown})")
    result = fn(**values)
    if result is not None:
        display(result)
