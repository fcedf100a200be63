"""Real Rewind servers (gunicorn) for the websocket and multi-process tests."""

import pytest

from tests.conftest import TARGETS
from tests.deployments.conftest import code_target  # noqa: F401 - the running code target, shared
from tests.support.http import Session
from tests.support.server import RewindServer

SERVER_ENV = {
    "REWIND_RUNBOOKS": "tests.support.runbooks",
    "REWIND_ACCESS_LOG": "0",
    "REWIND_THREADS": "400",
    # these tests open hundreds of sockets from one session; tests/security checks the caps themselves
    "REWIND_WS_PER_SESSION": "400",
    "REWIND_WS_PER_USER": "400",
}


def start_server(instance, database_url=None, **env) -> RewindServer:
    instance.mkdir(parents=True, exist_ok=True)
    (instance / "rewind.toml").write_text(TARGETS)
    return RewindServer(instance, database_url, **{**SERVER_ENV, **env}).start()


@pytest.fixture
def live(tmp_path):
    server = start_server(tmp_path / "instance")
    yield server
    server.stop()


@pytest.fixture
def admin(live):
    session = Session(live.url)
    session.login("admin", live.admin_password)
    return session
