"""Checking that a target answers, against real HTTP servers on loopback."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.targets.command import CommandCancelled
from app.targets.health import HealthCheck, Probe, SmokeTestError, run_smoke
from tests.support.sinks import Lines

PY = sys.executable


class Handler(BaseHTTPRequestHandler):
    """Answers each path from server.routes: (status, body, extra headers); the first 'fail_first' hits get 503."""

    def do_GET(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        server.hits += 1
        status, body, headers = server.routes.get(self.path, (404, b"not found", {}))
        if server.hits <= server.fail_first:
            status, body, headers = 503, b'{"status": "starting"}', {}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server_bind()  # the port is known, but connections are refused until serve()
        self.routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.hits = 0
        self.fail_first = 0
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str = "/health", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def route(self, path: str, status: int = 200, body: object = b"", **headers: str) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[path] = (status, raw, {k.replace("_", "-"): v for k, v in headers.items()})

    def serve(self) -> None:
        self.server_activate()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread:
            self.shutdown()
        self.server_close()


@pytest.fixture
def server():
    running = Server()
    running.serve()
    yield running
    running.close()


@pytest.fixture
def idle_server():
    """Bound to a port but not listening yet: connections are refused until .serve()."""
    waiting = Server()
    yield waiting
    waiting.close()


# --- probe -----------------------------------------------------------------------------------------


def test_probe_ok(server):
    server.route("/health", 200, {"status": "ok"})
    probe = HealthCheck(server.url()).probe()
    assert probe.ok and probe.status == 200 and probe.reason == "status 200" and probe.elapsed_ms >= 0
    assert str(probe).startswith("healthy: status 200")


def test_probe_wrong_status(server):
    server.route("/health", 500, b"boom")
    probe = HealthCheck(server.url()).probe()
    assert not probe.ok and probe.status == 500 and probe.reason == "status 500, expected 200"


def test_probe_expected_other_status(server):
    server.route("/health", 204)
    assert HealthCheck(server.url(), expect_status=204).probe().ok


def test_probe_json_subset_match_nested(server):
    server.route("/health", 200, {"status": "healthy", "version": "1.4", "checks": {"db": "ok", "redis": "ok"}})
    check = HealthCheck(server.url(), expect_json={"status": "healthy", "checks": {"db": "ok"}})
    probe = check.probe()
    assert probe.ok and probe.reason == "status 200, JSON matches"


@pytest.mark.parametrize(
    ("body", "expected", "reason"),
    [
        ({"status": "degraded"}, {"status": "healthy"}, "JSON field status is 'degraded', expected 'healthy'"),
        ({"version": "1"}, {"status": "healthy"}, "JSON field status is missing, expected 'healthy'"),
        ({"checks": {"db": "down"}}, {"checks": {"db": "ok"}}, "JSON field checks.db is 'down', expected 'ok'"),
        ({"checks": "fine"}, {"checks": {"db": "ok"}}, "JSON field checks is 'fine', expected an object"),
        ({"ok": 1}, {"ok": True}, "JSON field ok is 1, expected True"),
        ([1, 2], {"ok": True}, "JSON body is an array, expected an object"),
    ],
)
def test_probe_json_mismatch(server, body, expected, reason):
    server.route("/health", 200, body)
    probe = HealthCheck(server.url(), expect_json=expected).probe()
    assert not probe.ok and probe.status == 200 and probe.reason == reason


def test_probe_not_json(server):
    server.route("/health", 200, b"<html>OK</html>", Content_Type="text/html")
    probe = HealthCheck(server.url(), expect_json={"status": "ok"}).probe()
    assert not probe.ok and probe.reason == "status 200, but the body is not JSON"


def test_probe_connection_refused(idle_server):
    probe = HealthCheck(idle_server.url()).probe()
    assert not probe.ok and probe.status is None and probe.reason == "connection refused"


def test_probe_times_out_on_a_silent_server():
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        probe = HealthCheck(f"http://127.0.0.1:{port}/health", request_timeout_s=0.2).probe()
    assert not probe.ok and probe.reason == "no answer within 0.2 s"


def test_same_host_redirects_are_followed(server):
    server.route("/health", 302, Location="/health/")
    server.route("/health/", 200, {"status": "ok"})
    assert HealthCheck(server.url(), expect_json={"status": "ok"}).probe().ok


def test_redirects_to_another_host_are_not_followed(server):
    server.route("/elsewhere", 200, {"status": "ok"})
    server.route("/health", 302, Location=server.url("/elsewhere", host="localhost"))
    probe = HealthCheck(server.url()).probe()
    assert not probe.ok and probe.status == 302
    assert "not followed" in probe.reason and server.hits == 1


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "127.0.0.1:8000/health", "http:///x"])
def test_only_http_urls_are_accepted(url):
    with pytest.raises(ValueError, match="http:// or https://"):
        HealthCheck(url)


def test_credentials_in_the_url_are_refused():
    with pytest.raises(ValueError, match="no user or password"):
        HealthCheck("https://admin:hunter2@app.example/health")


# --- wait_healthy ----------------------------------------------------------------------------------


def test_wait_healthy_succeeds_once_the_server_comes_up(idle_server):
    idle_server.route("/health", 200, {"status": "ok"})
    idle_server.fail_first = 1  # up, but still starting at its first answer
    timer = threading.Timer(0.4, idle_server.serve)
    timer.start()
    seen: list[Probe] = []
    check = HealthCheck(idle_server.url(), expect_json={"status": "ok"}, timeout_s=5, interval_s=0.1)
    result = check.wait_healthy(on_probe=seen.append)
    timer.join()
    assert result.ok and seen[-1] is result
    reasons = [p.reason for p in seen]
    assert reasons[0] == "connection refused" and "status 503, expected 200" in reasons


def test_wait_healthy_gives_up_at_the_timeout(idle_server):
    seen: list[Probe] = []
    started = time.monotonic()
    result = HealthCheck(idle_server.url(), timeout_s=0.5, interval_s=0.1).wait_healthy(on_probe=seen.append)
    took = time.monotonic() - started
    assert not result.ok and result.reason == "connection refused" and len(seen) >= 2
    assert 0.5 <= took < 3


def test_no_request_runs_past_the_deadline():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        check = HealthCheck(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_s=0.3, request_timeout_s=10)
        started = time.monotonic()
        result = check.wait_healthy()
    assert not result.ok and time.monotonic() - started < 3


def test_cancel_stops_the_wait(idle_server):
    seen: list[Probe] = []
    started = time.monotonic()
    check = HealthCheck(idle_server.url(), timeout_s=30, interval_s=0.1)
    with pytest.raises(CommandCancelled):
        check.wait_healthy(should_cancel=lambda: len(seen) >= 2, on_probe=seen.append)
    assert len(seen) == 2 and time.monotonic() - started < 3


# --- smoke test ------------------------------------------------------------------------------------


def test_smoke_command_streams_lines_and_returns_its_status():
    lines = Lines()
    code = run_smoke([PY, "-c", "import sys; print('GET / 200'); sys.exit(2)"], 10, lines)
    assert code == 2
    assert lines[0][0] == "cmd" and ("out", "GET / 200") in lines


def test_smoke_command_timeout_and_missing_program(tmp_path):
    with pytest.raises(SmokeTestError, match=r"did not finish within 0\.3 s"):
        run_smoke([PY, "-c", "import time; time.sleep(30)"], 0.3)
    with pytest.raises(SmokeTestError, match="cannot run") as caught:
        run_smoke([str(tmp_path / "no-such-smoke")], 5)
    assert "check the command path" in caught.value.fix


def test_smoke_command_cancel():
    lines = Lines(cancel_when=lambda seen: ("out", "up") in seen)
    with pytest.raises(CommandCancelled):
        run_smoke([PY, "-c", "import time; print('up', flush=True); time.sleep(30)"], 30, lines)
    assert lines.of("out") == ["up"]
