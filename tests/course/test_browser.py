"""The notebooks' live widgets, tested in a real browser: JupyterLab + headless Chromium driven by Playwright.

`make test` runs every notebook headless, where `widgets.live` calls the plotting function once; that proves
the function works but not the widget. Here JupyterLab runs on a free localhost port (token-protected, on copies
of the notebooks in a temporary folder with their stored outputs and execution counts removed, FAST mode,
QSCHED_HEADLESS unset so `live` is ipywidgets' `interact`), Chromium opens a notebook, waits until its kernel is
connected and idle, runs all its cells from the Run menu, moves a slider with the mouse and checks that the figure
(and, in notebook 03, the printed JAQ read-out) changes within WIDGET_TIMEOUT_S. A screenshot of the
page goes to results/fast/browser/ (results/browser/ in a full-mode run). Everything is shut down at the end,
every wait is bounded.

Chromium comes from Debian (`apt-get install chromium`, which `make setup` runs as root) and Playwright from
requirements.txt; Playwright's own browser download is never used. Without either, the test is skipped and says
why.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import qsched_core

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
NOTEBOOKS = ("03_qsched_coefficients.ipynb", "00_tiny_world.ipynb")
RUN_ALL_TIMEOUT_S = 420      # a notebook's cells, FAST mode, on a busy 2-core CPU
KERNEL_TIMEOUT_S = 120       # page load until the notebook's kernel is connected and idle
WIDGET_TIMEOUT_S = 60        # one redraw after a slider move (3 images + JAQ in notebook 03: seconds when idle)
LAB_SETTINGS = {             # no news pop-up, no autosave, every cell kept in the page
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                   "autoStartDefaultKernel": True},
}


def _requirements():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed, so the widgets were not tested in a browser: install it with "
                    "`apt-get install chromium` (`make setup` does it when run as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed, so the widgets were not tested in a browser: "
                    "`pip install -r requirements.txt`")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_copy(src: Path, dst: Path) -> None:
    """`src` without its stored outputs and execution counts: the committed notebooks carry the prompts [1], [2],
    ... of the run that saved them, which would read as "already run" before this kernel has run a single cell."""
    nb = json.loads(src.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    dst.write_text(json.dumps(nb, indent=1))


def _api(base: str, token: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on copies of the notebooks; yields (base url, token), then shuts everything down."""
    _requirements()
    work = tmp_path_factory.mktemp("lab")
    for nb in NOTEBOOKS:
        _fresh_copy(ROOT / "notebooks" / nb, work / nb)
    for name, value in LAB_SETTINGS.items():
        (work / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "settings" / name).write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "QSCHED_HEADLESS"}
    env.update(QSCHED_FAST="1", JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"), JUPYTER_RUNTIME_DIR=str(work / "runtime"))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--ServerApp.port_retries=0", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.expose_app_in_browser=True"]   # window.jupyterapp: the page's own view of its kernel
    log = open(work / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(work / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield base, token
    finally:
        try:
            for kernel in _api(base, token, "/api/kernels") or []:
                _api(base, token, f"/api/kernels/{kernel['id']}", "DELETE")
            _api(base, token, "/api/shutdown", "POST")
            server.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    sync_playwright = _requirements()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def _cell_state(page) -> dict:
    return page.evaluate("""() => {
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)') || document;
        const prompts = Array.from(panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'))
            .map(e => e.textContent.trim());
        const outputs = Array.from(panel.querySelectorAll('.jp-OutputArea-output')).map(e => e.textContent);
        const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
        return {prompts, status: status ? status.getAttribute('data-status') : null,
                tracebacks: outputs.filter(t => t.includes('Traceback')).map(t => t.slice(0, 400))};
    }""")


def _confirm_kernel_dialog(page) -> None:
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    if select.count():                                  # "Select Kernel": keep the notebook's python3
        select.click()


def _started(prompts) -> bool:
    return any(p.strip("[]: ") for p in prompts)       # "[*]" or a number: the kernel has taken the cells


def kernel_state(page, notebook: str) -> str:
    """The page's own view of the kernel of `notebook`: "connected/idle" once the notebook is loaded, its session
    has a kernel, the kernel's websocket is connected and the kernel has said it is idle."""
    return page.evaluate("""(path) => {
        const app = window.jupyterapp;
        if (!app) return 'application not started';
        for (const w of app.shell.widgets('main')) {
            const context = w.context, session = w.sessionContext;
            if (!context || !session || context.path !== path) continue;
            const kernel = session.session && session.session.kernel;
            if (!context.isReady || !session.isReady || !kernel) return 'no kernel yet';
            return `${kernel.connectionStatus}/${kernel.status}`;
        }
        return 'notebook not open yet';
    }""", notebook)


def wait_for_kernel(page, notebook: str) -> None:
    """Wait (KERNEL_TIMEOUT_S at most) until the page's kernel for `notebook` is connected and idle.

    The toolbar's execution indicator is no such signal: it reads data-status="idle" from the moment the notebook
    opens, before any kernel exists. Run All clicked then makes JupyterLab start a second kernel while the session
    is still starting its own; the first is shut down and the cells end up run by no kernel (seen in CI).
    """
    deadline = time.monotonic() + KERNEL_TIMEOUT_S
    while (state := kernel_state(page, notebook)) != "connected/idle":
        if time.monotonic() > deadline:
            pytest.fail(f"{notebook}: the kernel was not connected and idle {KERNEL_TIMEOUT_S} s after the page "
                        f"loaded ({state})")
        time.sleep(0.25)


def start_run_all(page, base: str, token: str, notebook: str) -> float:
    """Open `notebook`, wait for its kernel, click Run > Run All Cells until a cell has started; returns the
    monotonic start time.

    The click is repeated (up to 5 times) while no cell has started, e.g. when a "Select Kernel" dialog was open.
    The copies have no stored execution counts (`_fresh_copy`), so a prompt other than "[ ]" is this kernel's.
    """
    workspace = Path(notebook).stem           # a fresh workspace per notebook: its tab is the only one open
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={token}")
    wait_for_kernel(page, notebook)
    t0 = time.monotonic()
    for _ in range(5):
        _confirm_kernel_dialog(page)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _started(_cell_state(page)["prompts"]):
                return t0
            time.sleep(0.5)
    pytest.fail(f"{notebook}: Run All Cells started no cell after 5 tries")


def finished(page, notebook: str, t0: float) -> float | None:
    """Seconds since `t0` once every code cell of the page has run (None while some still run); fails on an
    error output or after RUN_ALL_TIMEOUT_S."""
    state = _cell_state(page)
    assert not state["tracebacks"], f"{notebook} failed in the browser: {state['tracebacks'][0]}"
    if state["prompts"] and all(p.strip("[]: ").isdigit() for p in state["prompts"]) and state["status"] == "idle":
        return time.monotonic() - t0
    if time.monotonic() - t0 >= RUN_ALL_TIMEOUT_S:
        restarted = state["prompts"] and not _started(state["prompts"])  # every prompt back to "[ ]": cleared
        pytest.fail(f"{notebook}: not finished after {RUN_ALL_TIMEOUT_S} s (kernel status {state['status']!r}"
                    + ("; every cell shows '[ ]' again although cells had started: the kernel restarted or died, "
                       "e.g. out of memory on a loaded machine" if restarted else "") + f"): {state['prompts']}")
    return None


@pytest.fixture(scope="module")
def notebooks_run(lab, browser):
    """Notebooks 03 and 00, each in its own tab, run at the same time (each kernel uses one thread, so on two
    cores this halves the wait); yields {notebook: (page, seconds all its cells took)}."""
    pages = {nb: browser.new_page(viewport={"width": 1400, "height": 1000}) for nb in NOTEBOOKS}
    starts = {nb: start_run_all(page, *lab, nb) for nb, page in pages.items()}
    seconds = {}
    while len(seconds) < len(pages):
        for nb, page in pages.items():
            if nb not in seconds and (s := finished(page, nb, starts[nb])) is not None:
                seconds[nb] = s
        time.sleep(1)
    yield {nb: (page, seconds[nb]) for nb, page in pages.items()}
    for page in pages.values():
        page.close()


def move_slider(page, label: str) -> str:
    """Drag the handle of the slider labelled `label` with the mouse to a quarter of its track away from where it
    is (towards the far side); returns the readout after the move."""
    slider = page.locator(".widget-interact .widget-slider", has=page.locator(".widget-label", has_text=label))
    handle, track = slider.locator(".noUi-handle").first, slider.locator(".noUi-target").first
    handle.scroll_into_view_if_needed()
    h, tr = handle.bounding_box(), track.bounding_box()
    x, y = h["x"] + h["width"] / 2, h["y"] + h["height"] / 2
    target = tr["x"] + tr["width"] * (0.25 if x > tr["x"] + tr["width"] / 2 else 0.75)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(target, y, steps=8)
    page.mouse.up()
    return slider.locator(".widget-readout").inner_text()


def widget_output(page) -> dict:
    """The interact panel's output now, read in one step (no auto-wait): its first image's src (None without one)
    and its text; {"img": None, "text": ""} while the panel is not on the page."""
    return page.evaluate("""() => {
        const out = document.querySelector('.widget-interact .widget-output');
        const img = out && out.querySelector('img');
        return {img: img ? img.getAttribute('src') : null, text: out ? out.innerText : ''};
    }""")


def wait_for_panel(page, text: str = "") -> dict:
    """The interact panel's first drawing: its output once it shows an image (and `text`), WIDGET_TIMEOUT_S at
    most. The kernel is idle when the cell has run, but the page renders the widget views after that."""
    deadline = time.monotonic() + WIDGET_TIMEOUT_S
    while not ((now := widget_output(page))["img"] and text in now["text"]) and time.monotonic() < deadline:
        time.sleep(0.25)
    return now


def wait_for_change(page, before: dict, keys) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < WIDGET_TIMEOUT_S:
        now = widget_output(page)
        if now["img"] and all(now[k] != before[k] for k in keys):
            return time.monotonic() - t0
        time.sleep(0.25)
    pytest.fail(f"the widget output did not change ({', '.join(keys)}) within {WIDGET_TIMEOUT_S} s of the move")


def screenshot(page, name: str) -> Path:
    path = qsched_core.results_dir("browser") / f"{name}.png"
    page.locator(".widget-interact").first.scroll_into_view_if_needed()
    page.screenshot(path=str(path))
    return path


def test_qsched_sliders_redraw_images_and_jaq(notebooks_run):
    page, seconds = notebooks_run["03_qsched_coefficients.ipynb"]
    page.bring_to_front()
    before = wait_for_panel(page, "JAQ")
    assert before["img"] and "JAQ" in before["text"], f"no panel or JAQ read-out under the sliders: {before['text']!r}"
    value = move_slider(page, "start_x")
    latency = wait_for_change(page, before, ("img", "text"))
    after = widget_output(page)
    assert f"c^x_0 = {float(value):.3f}" in after["text"], (value, after["text"])
    path = screenshot(page, "03_qsched_coefficients")
    print(f"03: all cells {seconds:.0f} s; start_x -> {value}: image and JAQ redrawn in {latency:.1f} s; {path}")


def test_caption_widget_redraws_images(notebooks_run):
    page, seconds = notebooks_run["00_tiny_world.ipynb"]
    page.bring_to_front()
    before = wait_for_panel(page)
    assert before["img"], f"no image under the sliders: {before['text']!r}"
    value = move_slider(page, "steps")
    latency = wait_for_change(page, before, ("img",))
    path = screenshot(page, "00_tiny_world")
    print(f"00: all cells {seconds:.0f} s; steps -> {value}: images redrawn in {latency:.1f} s; {path}")
