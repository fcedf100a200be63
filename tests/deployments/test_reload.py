"""A graceful reload of a real gunicorn managed process: no refused connection, the new code answering after."""

from __future__ import annotations

import http.client
import re
import sys
import threading
from pathlib import Path

import pytest

from app.targets.environment import inherited_env
from app.targets.process import ManagedProcess
from tests.conftest import wait_for
from tests.support.postgres import free_port
from tests.support.processes import SERVER
from tests.support.sinks import Lines

APP = """
VERSION = {version!r}


def app(environ, start_response):
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


class Poller(threading.Thread):
    """Asks the app again and again from another thread, counting refused connections and other failures."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.refused = 0
        self.failures: list[str] = []
        self.bodies: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
                self.bodies.append(body)
            except ConnectionRefusedError:
                self.refused += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def get(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def answers(port: int):
    def check():
        try:
            return get(port)
        except OSError:
            return None

    return check


@pytest.fixture
def gunicorn_app(tmp_path: Path):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "webapp.py").write_text(APP.format(version="one"))
    port = free_port()
    env = inherited_env() | {"PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "webapp:app"]

    def make(reload_signal: str | None) -> ManagedProcess:
        run = tmp_path / "run"
        return ManagedProcess(argv, folder, run / "app.pid", run / "app.log", env=env, reload_signal=reload_signal)

    started: list[ManagedProcess] = []

    def start(reload_signal: str | None) -> ManagedProcess:
        process = make(reload_signal)
        process.start()
        started.append(process)
        assert wait_for(answers(port), timeout=60) == "one"
        return process

    yield folder, port, start
    for process in started:
        process.stop()


def test_a_reload_keeps_answering_and_serves_the_new_code_when_it_returns(gunicorn_app):
    folder, port, start = gunicorn_app
    process = start("SIGHUP")
    master = process.status().pid
    poller = Poller(port)
    poller.start()
    wait_for(lambda: poller.bodies, timeout=30)
    (folder / "webapp.py").write_text(APP.format(version="second"))
    lines = Lines()
    process.restart(lines)
    assert get(port) == "second", "every old worker is gone when restart returns"
    seen = len(poller.bodies)
    wait_for(lambda: len(poller.bodies) > seen + 5, timeout=30)
    poller.stop()
    assert poller.refused == 0 and poller.failures == []
    assert poller.bodies[0] == "one" and poller.bodies[-1] == "second"
    assert process.status().pid == master, "gunicorn's master keeps its pid"
    watch = process.watch()
    assert watch.pid == master and watch.exited() is None and port in watch.listening_ports()
    assert any(f"sent SIGHUP to pid {master}" in text for _, text in lines)
    said = lines.text()
    assert re.search(r"its \d old workers? (was|were) retired and \d new workers? (was|were) started", said), said
    assert "whether they load the code and serve is for the health check to tell" in said


def test_a_reload_whose_new_code_does_not_load_never_reads_as_done(gunicorn_app):
    """New workers that die loading the code: the restart says so, or starts afresh, never that all went well."""
    folder, _port, start = gunicorn_app
    process = start("SIGHUP")
    (folder / "webapp.py").write_text("raise ImportError(\"cannot import name 'create_app'\")\n")
    lines = Lines()
    process.restart(lines)
    said = lines.text()
    # What it can see (app/targets/process.py, ManagedProcess._reload): gunicorn exited, or no new worker runs, or new
    # workers it cannot yet tell from ones about to die, said as unproven. Never that the new code serves: only the
    # health check after it can tell (watching the new workers a while first was tried: 2 s on every healthy reload).
    seen = ("exited after SIGHUP", "no new worker runs", "whether they load the code and serve is for the health check")
    assert any(words in said for words in seen), said
    assert not re.search(r"serv(es|ing) (the )?new code|reloaded .* healthy|every old worker was retired$", said, re.M)


def test_without_reload_a_restart_stops_and_starts_a_new_master(gunicorn_app):
    folder, port, start = gunicorn_app
    process = start(None)
    master = process.status().pid
    (folder / "webapp.py").write_text(APP.format(version="second"))
    lines = Lines()
    process.restart(lines)
    assert wait_for(answers(port), timeout=60) == "second"
    assert process.status().pid != master
    assert any("sent SIGTERM" in text for _, text in lines)


def test_a_process_without_workers_is_restarted_not_signalled(tmp_path):
    (tmp_path / "server.py").write_text(SERVER)
    port = free_port()
    process = ManagedProcess(
        [sys.executable, str(tmp_path / "server.py"), str(port)],
        tmp_path,
        tmp_path / "app.pid",
        tmp_path / "app.log",
        env=inherited_env(),
        reload_signal="SIGHUP",
    )
    process.start()
    try:
        wait_for(answers(port), timeout=30)
        before = process.status().pid
        lines = Lines()
        process.restart(lines)
        assert any("has no worker processes for SIGHUP to replace" in text for _, text in lines)
        wait_for(answers(port), timeout=30)
        assert process.status().pid != before
    finally:
        process.stop()
