"""qsched_core.widgets.live: interact in a live notebook, one plain call of the function in a headless run."""
import pytest
from ipywidgets import IntSlider, fixed

from qsched_core.widgets import headless, live


def test_headless_live_calls_the_function_once_with_the_initial_values(monkeypatch, capsys):
    monkeypatch.setenv("QSCHED_HEADLESS", "1")
    calls = []

    def plot(w, bits=3, group_size=32, symmetric=True, steps=1):
        calls.append((w, bits, group_size, symmetric, steps))
        return f"figure for {bits} bits"

    live(plot, w=fixed("W"), bits=(2, 8), group_size=[-1, 32, 64], symmetric=True, steps=IntSlider(value=4, min=1, max=8))
    assert calls == [("W", 3, 32, True, 4)]
    out = capsys.readouterr().out
    assert "plot(bits=3, group_size=32, symmetric=True, steps=4)" in out   # fixed values are not echoed
    assert "figure for 3 bits" in out                                     # the return value is displayed


def test_headless_switch_names_the_bad_value(monkeypatch):
    monkeypatch.setenv("QSCHED_HEADLESS", "yes")
    with pytest.raises(ValueError, match="QSCHED_HEADLESS='yes'"):
        headless()
    monkeypatch.delenv("QSCHED_HEADLESS")
    assert headless() is False
