"""A running code target wired into a test app's targets file, and blue/green slots beside it."""

import subprocess
import sys

import pytest

from app.jobs.engine import current_targets
from app.targets.health import HealthCheck
from tests.conftest import wait_for
from tests.support.postgres import free_port
from tests.support.targets import SERVER, make_code_target, write_targets_file


@pytest.fixture
def code_target(app, tmp_path):
    target = make_code_target(tmp_path / "targets")
    write_targets(app, target)
    with app.app_context():
        current_targets().open(target.name).process().start()
        assert current_targets().open(target.name).health().wait_healthy().ok, "the test app did not come up"
    yield target
    with app.app_context():
        current_targets().open(target.name).process().stop()


def write_targets(app, target, **options) -> None:
    write_targets_file(app, target.toml(**options))


def bluegreen_toml(urls: dict, link, dirs: dict) -> str:
    return f"""
[targets.staging.bluegreen]
slots = {{ blue = "{urls["blue"]}", green = "{urls["green"]}" }}
link = "{link}"
slot_dirs = {{ blue = "{dirs["blue"]}", green = "{dirs["green"]}" }}
keep_previous_minutes = 90
"""


@pytest.fixture
def slots(app, tmp_path, code_target):
    """Two real slot servers and a symlink `current` pointing at blue's folder: (servers, link, dirs)."""
    servers, urls, dirs = {}, {}, {}
    for slot in ("blue", "green"):
        directory = tmp_path / slot
        directory.mkdir()
        (directory / "server.py").write_text(SERVER.format(status="healthy", greeting=slot))
        port = free_port()
        servers[slot] = subprocess.Popen([sys.executable, str(directory / "server.py"), str(port)])
        urls[slot], dirs[slot] = f"http://127.0.0.1:{port}/health", directory
    link = tmp_path / "current"
    link.symlink_to(dirs["blue"])
    write_targets_file(app, code_target.toml() + bluegreen_toml(urls, link, dirs))
    for url in urls.values():
        wait_for(lambda url=url: HealthCheck(url).probe().ok)
    yield servers, link, dirs
    for server in servers.values():
        server.kill()
        server.wait()
