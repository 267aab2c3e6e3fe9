"""Browser test of the route inspector: real JupyterLab, headless Debian Chromium (handbook §3 recipe).

Runs ``notebooks/05_route_inspector.ipynb`` (smoke path via ``DYNROUTE_SMOKE=1``) in an isolated, token-protected
JupyterLab, moves the image slider with the keyboard, checks that the figure changed and that the kernel sees the
new selection, uploads a non-image file and checks for a visible error message, and keeps screenshots
(``tmp_path`` and ``results/_smoke/browser/``). Needs ``apt-get install chromium`` and ``pip install playwright``;
never ``playwright install``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="pip install playwright (the wheel bundles its driver)")
from playwright.sync_api import sync_playwright  # noqa: E402

PROJ_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM, reason="no system chromium: apt-get install -y chromium")]
TOKEN = "dynroute-test"
ARTIFACTS = PROJ_ROOT / "results" / "_smoke" / "browser"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--disable-quic"]
RUN_ALL = """async () => { const app = window.jupyterapp, nb = app.shell.currentWidget;
  await nb.context.ready; await nb.sessionContext.ready;
  await app.commands.execute('notebook:run-all-cells'); }"""
ASK_KERNEL = """async (code) => { let text = '';
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const f = k.requestExecute({code}); f.onIOPub = m => { if (m.content.text) text += m.content.text; };
  await f.done; return text.trim(); }"""
FIGURE = ".jupyter-widgets.widget-output img"
MESSAGE = ".jupyter-widgets.widget-html"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ok(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"JupyterLab did not answer {url} within {timeout_s} s"
        time.sleep(0.3)


def _settings(root: Path, plugin: str, text: str) -> None:
    path = root / "settings" / "@jupyterlab" / plugin
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def lab(tmp_path):
    _settings(tmp_path, "apputils-extension/notification.jupyterlab-settings", '{"fetchNews": "false"}')
    # Render every cell (no windowing), so the widget far below the static grid image is in the DOM.
    _settings(tmp_path, "notebook-extension/tracker.jupyterlab-settings", '{"windowingMode": "none"}')
    shutil.copy(PROJ_ROOT / "notebooks/05_route_inspector.ipynb", tmp_path)
    port = free_port()
    env = {**os.environ, "DYNROUTE_SMOKE": "1", "PYTHONPATH": str(PROJ_ROOT),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp_path}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    cmd += ["--allow-root"] if os.geteuid() == 0 else []
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout_s=60)
        yield port
    finally:
        os.kill(proc.pid, signal.SIGTERM)           # by PID only; the server shuts its kernel down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _kernel_says(page, code: str, want: str, timeout_s: float = 20) -> None:
    deadline, got = time.monotonic() + timeout_s, None
    while (got := page.evaluate(ASK_KERNEL, code)) != want:
        assert time.monotonic() < deadline, f"kernel answered {got!r} to {code!r}, expected {want!r}"
        time.sleep(0.2)


def _keep(tmp_path: Path, page, name: str) -> Path:
    shot = tmp_path / name
    page.locator(".jupyter-widgets.widget-vbox").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(shot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)
    return shot


def _failure_artifacts(tmp_path: Path, page) -> None:
    """Keep a screenshot and the notebook DOM next to the server log, for debugging a failed run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "failure.png"))
    (ARTIFACTS / "failure.html").write_text(page.content())
    shutil.copy(tmp_path / "lab.log", ARTIFACTS / "failure_lab.log")


def test_inspector_slider_syncs_to_kernel(lab, tmp_path):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{lab}/lab/tree/05_route_inspector.ipynb?token={TOKEN}")
            page.wait_for_function("window.jupyterapp?.shell.currentWidget?.context", timeout=60_000)
            page.evaluate(RUN_ALL)
            handle = page.locator(".jupyter-widgets .noUi-handle").first
            handle.wait_for(timeout=180_000)                      # smoke records are computed first
            figure = page.locator(FIGURE).first
            figure.wait_for(timeout=60_000)
            before = figure.get_attribute("src")
            assert before.startswith("data:image/png;base64,")
            handle.focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            page.wait_for_function("document.querySelector('.widget-readout').innerText.trim() === '3'")
            _kernel_says(page, "print(ui.slider.value)", "3")
            _kernel_says(page, "print(ui.selected_index)", "3")
            page.locator(MESSAGE, has_text="showing image #3").first.wait_for(timeout=60_000)
            assert figure.get_attribute("src") != before, "the figure did not change with the slider"
            _keep(tmp_path, page, "inspector.png")
            # A file that is not an image: a visible message, no traceback, the figure stays.
            with page.expect_file_chooser() as chooser:     # FileUpload's <input> is never attached to the DOM
                page.locator(".jupyter-widgets.widget-upload").first.click()
            chooser.value.set_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}])
            page.locator(MESSAGE, has_text="not an image file").first.wait_for(timeout=60_000)
            assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                has_text="Traceback").count() == 0
            _kernel_says(page, "print(ui.upload_record is None, ui.slider.value)", "True 3")
            _keep(tmp_path, page, "inspector_bad_upload.png")
        except Exception:
            _failure_artifacts(tmp_path, page)
            raise
        finally:
            browser.close()
    assert (tmp_path / "inspector.png").stat().st_size > 10_000
