"""The real dashboard server on a free port, and Debian's Chromium driven by Playwright (never a downloaded one)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy in {timeout} s")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("ATLAS_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's ATLAS_HOME: a test may change its registry behind the page's back, as a second tab or the CLI
    would."""
    return tmp_path_factory.mktemp("e2e-home")


@contextlib.contextmanager
def dashboard_server(home: Path, log_dir: Path, **env_extra: str) -> Iterator[str]:
    """The README's launch command on a free port with ATLAS_HOME ``home``; its URL while it runs. A traceback in the
    server's log fails the test that started it."""
    port = free_port()
    env = {**os.environ, "ATLAS_HOME": str(home), "PYTHONPATH": str(ROOT), **env_extra}
    log = open(log_dir / "server.log", "w+")
    # The README's launch command itself (it finds .venv ready and starts streamlit with these extra flags).
    proc = subprocess.Popen(
        ["bash", "scripts/dashboard.sh", "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        tail = log.read()[-3000:]
        log.close()
        if "Traceback" in tail:
            pytest.fail(f"the server logged a traceback:\n{tail}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, server_home: Path) -> Iterator[str]:
    with dashboard_server(server_home, tmp_path_factory.mktemp("e2e-log")) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; `bash scripts/test.sh` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.console_errors = []
    pg.on("console", lambda msg: pg.console_errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: pg.console_errors.append(str(exc)))
    yield pg
    context.close()
