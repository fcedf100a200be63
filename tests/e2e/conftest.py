"""Headless Chromium (Debian's package) driven by Playwright, against a real Rewind server."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app.demo.build import build_demo
from app.demo.cli import stop_in
from tests.support.server import RewindServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required in CI: apt-get install chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def server(tmp_path):
    running = RewindServer(tmp_path / "instance").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def demo_server():
    """The demo sandbox behind a real Rewind, one per test file: a file's drills keep out of each other's way."""
    # A short path: gpg-agent's socket lives in the GnuPG home, and socket paths stop at 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rw-e2e-"))
    root.chmod(0o711)  # as root the demo's PostgreSQL runs as `postgres`, which must reach its folder
    instance = root / "instance"
    instance.mkdir()
    build_demo(instance / "demo", instance / "rewind.toml", on_line=lambda *a: None)
    server = RewindServer(instance, REWIND_ACCESS_LOG="0").start()
    yield server
    server.stop()
    stop_in(instance, on_line=lambda text: None)  # the demo, and the gpg-agent of Rewind's own home
    shutil.rmtree(root, ignore_errors=True)
