"""Checking that a target answers, against real HTTP servers on loopback."""

from __future__ import annotations

import json
import re
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
    """Answers each path from server.routes: (status, body, extra headers); the first 'fail_first' hits get 503.

    server.statuses, when set, overrides the status of the next answers one by one; the first answer waits
    server.first_delay seconds (an app's first request after a start: imports, pools, caches).
    """

    def do_GET(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        server.hits += 1
        if server.hits == 1 and server.first_delay:
            time.sleep(server.first_delay)
        status, body, headers = server.routes.get(self.path, (404, b"not found", {}))
        if server.hits <= server.fail_first:
            status, body, headers = 503, b'{"status": "starting"}', {}
        if server.statuses:
            status = server.statuses.pop(0)
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
        self.statuses: list[int] = []  # when set, the statuses of the next answers, in order
        self.first_delay = 0.0
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


CHECKOUT = "3f2a9c41b7e05d6e8f9a0b1c2d3e4f5a6b7c8d9e"


@pytest.mark.parametrize(
    ("body", "json", "ok", "reason"),
    [
        ({"commit": CHECKOUT}, None, True, "status 200, runs 3f2a9c41b7e0"),
        ({"build": {"sha": "3F2A9C4"}}, None, True, "status 200, runs 3f2a9c41b7e0"),  # abbreviated, any case
        ({"commit": CHECKOUT, "status": "ok"}, {"status": "ok"}, True, "status 200, JSON matches, runs 3f2a9c41b7e0"),
        (
            {"commit": "9d8e7f60a1b2"},
            None,
            False,
            "status 200, but JSON field commit says it runs 9d8e7f60a1b2, where the checkout is at 3f2a9c41b7e0: "
            "the app still runs other code (a restart that did not restart it?)",
        ),
        ({"version": "1.4"}, None, False, "status 200, but JSON field commit is missing"),
        ({"commit": "3f2a9c"}, None, False, "status 200, but JSON field commit is '3f2a9c', not a commit id"),
        ({"commit": "v1.4-3f2a9c4"}, None, False, "not a commit id (7 or more hex digits; health.commit_field)"),
        ({"commit": None}, None, False, "JSON field commit is None, not a commit id"),
    ],
)
def test_a_probe_with_a_commit_field_is_healthy_only_running_the_checkout_s_commit(server, body, json, ok, reason):
    server.route("/health", 200, body)
    field = "build.sha" if "build" in body else "commit"
    probe = HealthCheck(server.url(), expect_json=json, expect_commit=(field, CHECKOUT)).probe()
    assert probe.ok is ok and reason in probe.reason, probe.reason


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
    seen: list[Probe] = []

    def on_probe(probe: Probe) -> None:
        seen.append(probe)
        if len(seen) == 1:
            idle_server.serve()  # it comes up after the first probe was refused

    check = HealthCheck(idle_server.url(), expect_json={"status": "ok"}, timeout_s=30, interval_s=0.1)
    result = check.wait_healthy(on_probe=on_probe)
    assert result.ok and result.probe is seen[-1] and result.probes == len(seen) == 3
    assert [p.reason for p in seen] == ["connection refused", "status 503, expected 200", "status 200, JSON matches"]


def test_wait_healthy_gives_up_at_the_timeout(idle_server):
    seen: list[Probe] = []
    result = HealthCheck(idle_server.url(), timeout_s=0.5, interval_s=0.1).wait_healthy(on_probe=seen.append)
    assert not result.ok and not result.early and result.probes == len(seen) >= 2
    assert result.reason == "no healthy answer within 0.5 s; last: connection refused"
    assert all(p.refused for p in seen), "refusals with no process to watch never end the wait early"


def test_no_request_runs_past_the_deadline():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        check = HealthCheck(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_s=0.3, request_timeout_s=10)
        seen: list[Probe] = []
        result = check.wait_healthy(on_probe=seen.append)
    assert not result.ok and seen
    waited = [float(re.fullmatch(r"no answer within ([\d.]+) s", p.reason).group(1)) for p in seen]
    assert all(w <= 0.3 for w in waited), f"each request is cut to the time left, not 10 s: {waited}"
    assert result.reason.startswith("no healthy answer within 0.3 s"), "a probe cut short proves no slowness"


def test_an_answer_slower_than_a_probe_is_asked_again_until_the_deadline(server):
    server.route("/health", 200, {"status": "ok"})
    server.first_delay = 1.0  # above one probe's timeout, far below the deadline
    seen: list[Probe] = []
    check = HealthCheck(server.url(), timeout_s=300, interval_s=0.1, request_timeout_s=0.3)
    result = check.wait_healthy(on_probe=seen.append)
    assert result.ok and result.reason == "status 200"
    assert seen[0].timed_out and seen[0].reason == "no answer within 0.3 s" and seen[0].status is None
    assert "it is there but answers slowly" in str(seen[0]), "the log tells slow from refused"
    assert not seen[-1].timed_out


def test_an_app_slower_than_every_probe_fails_saying_it_answered_too_slowly():
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), answers none
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        check = HealthCheck(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout_s=1, request_timeout_s=0.2)
        seen: list[Probe] = []
        result = check.wait_healthy(on_probe=seen.append)
    assert not result.ok and not result.early and all(p.timed_out for p in seen)
    assert result.reason.startswith(f"it answered too slowly: none of its {len(seen)} probes got an answer within")
    assert "within 0.2 s (health.probe_timeout) before health.timeout (1 s) passed" in result.reason
    assert result.reason.endswith("raise health.probe_timeout in the targets file")


def test_a_refused_connection_is_not_a_slow_one(idle_server):
    probe = HealthCheck(idle_server.url()).probe()
    assert probe.refused and not probe.timed_out and "slowly" not in str(probe)


def test_cancel_stops_the_wait(idle_server):
    seen: list[Probe] = []
    check = HealthCheck(idle_server.url(), timeout_s=30, interval_s=0.1)
    with pytest.raises(CommandCancelled):
        check.wait_healthy(should_cancel=lambda: len(seen) >= 2, on_probe=seen.append)
    assert len(seen) == 2


def test_answers_of_5xx_end_the_wait_after_the_failure_threshold(server):
    server.route("/health", 500, b"Traceback (most recent call last):\nModuleNotFoundError: No module named 'redis'")
    seen: list[Probe] = []
    result = HealthCheck(server.url(), timeout_s=300, interval_s=0.1, failure_threshold=4).wait_healthy(
        on_probe=seen.append
    )
    assert not result.ok and result.early and result.probes == len(seen) == server.hits == 4
    assert result.reason == "answered 500 to 4 probes in a row (status 500, expected 200)"
    assert result.answer.startswith("status 500: Traceback") and "No module named 'redis'" in result.answer


def test_a_5xx_between_other_failures_starts_the_count_again(server):
    server.route("/health", 200, b"ok")
    server.statuses = [503, 503, 404, 503, 503]
    seen: list[Probe] = []
    result = HealthCheck(server.url(), timeout_s=300, interval_s=0.1, failure_threshold=3).wait_healthy(
        on_probe=seen.append
    )
    assert result.ok and [p.status for p in seen] == [503, 503, 404, 503, 503, 200]


def test_an_expected_5xx_is_health_not_failure(server):
    server.route("/health", 500, {"status": "unhealthy"})
    result = HealthCheck(server.url(), expect_status=500, failure_threshold=1).wait_healthy()
    assert result.ok and result.probes == 1


def test_the_failing_answer_keeps_only_the_start_of_a_long_body(server):
    server.route("/health", 502, b"x" * 5000)
    probe = HealthCheck(server.url()).probe()
    assert probe.body == "x" * 400 and probe.answer == "status 502: " + "x" * 400


def test_the_failing_answer_is_kept_without_colour_codes(server):
    server.route("/health", 500, b"\x1b[31mInternalError\x1b[0m: column \x1b[1msigned_up_at\x1b[0m does not exist")
    probe = HealthCheck(server.url()).probe()
    assert probe.answer == "status 500: InternalError: column signed_up_at does not exist"


@pytest.mark.parametrize("threshold", [0, -1, 1.5, True])
def test_the_failure_threshold_is_a_count_of_probes(threshold):
    with pytest.raises(ValueError, match="failure_threshold must be a count of probes"):
        HealthCheck("http://127.0.0.1:1/health", failure_threshold=threshold)


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


# --- TLS -------------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    """The same server over https, with a self-signed certificate for 127.0.0.1 (made by openssl)."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    running = Server()
    running.socket = context.wrap_socket(running.socket, server_side=True)
    running.serve()
    running.cert = cert
    yield running
    running.close()


def test_a_self_signed_certificate_says_what_to_set(tls_server):
    tls_server.route("/health", 200, {"status": "ok"})
    url = tls_server.url().replace("http://", "https://")
    probe = HealthCheck(url).probe()
    assert not probe.ok and probe.status is None
    assert "TLS certificate not accepted: self-signed certificate" in probe.reason
    assert "set health.ca_file" in probe.reason
    trusted = HealthCheck(url, expect_json={"status": "ok"}, ca_file=tls_server.cert).probe()
    assert trusted.ok, trusted


def test_an_unreadable_ca_file_is_a_failed_probe_that_names_it(tls_server, tmp_path):
    url = tls_server.url().replace("http://", "https://")
    probe = HealthCheck(url, ca_file=tmp_path / "missing.pem").probe()
    assert not probe.ok and probe.status is None
    assert f"health.ca_file {tmp_path / 'missing.pem'} cannot be used: No such file or directory" in probe.reason


def test_an_answer_after_a_redirect_says_where_it_came_from(server):
    # A health URL that now sends to a login page answers 200 there: the reason must not read like the endpoint's.
    server.route("/health", 302, Location="/login?next=/health")
    server.route("/login?next=/health", 200, b"<html><title>Sign in</title></html>")
    probe = HealthCheck(server.url()).probe()
    assert probe.ok and probe.reason == "status 200 from /login?next=/health (redirected)"
    failing = HealthCheck(server.url(), expect_json={"status": "ok"}).probe()
    assert (
        not failing.ok
        and failing.reason == "status 200 from /login?next=/health (redirected), but the body is not JSON"
    )
    assert failing.body.startswith("<html><title>Sign in")
    server.route("/plain", 200, {"status": "ok"})
    assert HealthCheck(server.url("/plain"), expect_json={"status": "ok"}).probe().reason == "status 200, JSON matches"


def test_a_probe_cut_short_by_the_deadline_says_its_time_in_two_decimals():
    from app.targets.health import _describe_error

    assert _describe_error(TimeoutError(), 0.569827, "h") == "no answer within 0.57 s"
    assert _describe_error(TimeoutError(), 2.0, "h") == "no answer within 2 s"
