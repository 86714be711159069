"""A throwaway JupyterLab on loopback and Debian's Chromium driven by Playwright.

JupyterLab gets a temp root holding a copy of the workbench notebooks and a
database with a few months of traffic (made on a virtual clock, so it takes no
time), its own config, settings, runtime and workspace folders, no token or
password, no news or update checks, and a read-only extension manager.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from live_server import free_port
from playwright.sync_api import sync_playwright

from vbgateway import Gateway, VirtualClock
from vbgateway.client.service import stop_service
from vbgateway.seed import seed_demo

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["01_getting_started.ipynb", "02_agents.ipynb", "03_try_it.ipynb", "04_usage.ipynb"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LAB_CONFIG = """
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = {port}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.root_dir = {root!r}
c.ServerApp.password = ""
c.ServerApp.disable_check_xsrf = True
c.ServerApp.terminals_enabled = False
c.ServerApp.allow_root = True
c.IdentityProvider.token = ""
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.handlers.announcements.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
c.LanguageServerManager.autodetect = False
"""
NOTIFICATIONS = {"checkForUpdates": False, "fetchNews": "false", "doNotDisturbMode": True}


def make_traffic(db: Path) -> None:
    """Seed the demo tenants and send replies every other day over the last ~100 days."""
    start = datetime.now(UTC) - timedelta(days=100)
    clock = VirtualClock(start=start)
    with Gateway.open(db, clock=clock, seed=11) as gw:
        seed_demo(gw)
        acme = next(t for t in gw.list_tenants() if t.name == "Acme Corporation")
        client = gw.as_tenant(acme.id)
        agents = client.list_agents()
        for day in range(0, 99, 2):
            for i, agent in enumerate(agents):
                session = client.create_session(agent.id, customer_id=f"customer_{day % 7}")
                for turn in range(1 + (day + i) % 3):
                    clock.run(client.send_message(session.id, f"Question {turn} about my order, day {day}"))
            clock.advance(2 * 24 * 3600)


class Lab:
    """The running server: its URL, root, and a way to stop every kernel between notebooks."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop_kernels(self) -> None:
        """Shut every kernel down between tests (the database's local service stays, shared by the next ones)."""
        for session in self.api("/api/sessions"):  # type: ignore[union-attr]
            self.api(f"/api/sessions/{session['id']}", "DELETE")
        for kernel in self.api("/api/kernels"):  # type: ignore[union-attr]
            self.api(f"/api/kernels/{kernel['id']}", "DELETE")
        deadline = time.monotonic() + 30
        while self.api("/api/kernels") and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    (root / "data").mkdir()
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / name, root / "notebooks" / name)
    make_traffic(root / "data" / "vbgateway.duckdb")
    port = free_port()
    config = base / "config"
    config.mkdir()
    (config / "jupyter_lab_config.py").write_text(LAB_CONFIG.format(port=port, root=str(root)))
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(NOTIFICATIONS))
    notebook_settings = base / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    # every cell stays in the DOM (no windowing), so off-screen outputs can be found and waited for
    tracker = {"windowingMode": "none", "autoStartDefaultKernel": True}
    (notebook_settings / "tracker.jupyterlab-settings").write_text(json.dumps(tracker))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTER_DATA_DIR": str(base / "data"), "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "IPYTHONDIR": str(base / "ipython"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    log = (base / "lab.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser"], env=env, cwd=root,
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/api/status", timeout=2)
                break
            except OSError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (base / "lab.log").read_text()[-3000:]) from exc
                time.sleep(0.3)
        yield Lab(url, root)
    finally:
        stop_service(root / "data" / "vbgateway.duckdb")  # the notebooks' kernels started it
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(lab, browser, request, screenshots):
    """A fresh browser page; what it showed last is kept as ``reports/screenshots/last-<test>.png``."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, device_scale_factor=1)
    context.set_default_timeout(90_000)  # every page of the context: a second tab starts its own kernel too
    page = context.new_page()
    yield page
    page.screenshot(path=str(screenshots / f"last-{request.node.name[:60]}.png"), full_page=True)
    context.close()
    lab.stop_kernels()


@pytest.fixture(scope="module")
def screenshots():
    folder = REPO / "reports" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


DOCS_IMG = REPO / "docs" / "img"


@pytest.fixture
def publish():
    """Copy a screenshot over the README's image of it, only when ``VB_UPDATE_DOCS_IMG=1`` asks.

    A test run leaves the checkout as it found it; refreshing the pictures is a
    decision (``VB_UPDATE_DOCS_IMG=1 make test``), and the diff shows what changed.
    """
    def copy(screenshot: Path) -> None:
        if os.environ.get("VB_UPDATE_DOCS_IMG") == "1":
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copy(screenshot, DOCS_IMG / screenshot.name)

    return copy
