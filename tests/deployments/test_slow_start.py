"""An application slow to come back, as real ones are: restart and verify keep asking until the deadline.

The slowness is built for real: a gunicorn app whose workers each sleep through their first request (as a real
app's first request loads code, opens its pool and warms its caches), longer than one probe may wait and far
shorter than the health timeout; and one that is slower than a probe on every request.
"""

from __future__ import annotations

import re
import socket
import sys
from urllib.parse import urlsplit

import pytest

from app.jobs.engine import current_targets
from tests.conftest import wait_for
from tests.deployments.test_runbooks import log_text, run
from tests.support.postgres import free_port
from tests.support.targets import commit, git, write_targets_file

FIRST_SLEEP_S = 4  # above the default probe timeout (2 s), far below the health timeout
APP = """
import json
import os
import time

FIRST, EVERY = float(os.environ["FIRST_SLEEP"]), float(os.environ["EVERY_SLEEP"])
warm = False


def app(environ, start_response):
    global warm
    time.sleep(EVERY if warm else max(FIRST, EVERY))  # each worker's first request is slow
    warm = True
    body = json.dumps({"status": "healthy"}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""


def slow_target(root, *, first: float, every: float, health: str) -> str:
    """The targets file of a gunicorn app (reloaded in place by HUP) in its own git repository."""
    repo = root / "slow" / "app"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "A slow app", **{"webapp.py": APP, ".gitignore": "__pycache__/\n"})
    port, state = free_port(), root / "slow" / "run"
    server = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    command = [*server, "--graceful-timeout", "1", "--no-control-socket", "webapp:app"]
    return f"""
[targets.staging.repo]
path = "{repo}"
branch = "main"

[targets.staging.process]
command = [{", ".join(f'"{a}"' for a in command)}]
cwd = "{repo}"
pid_file = "{state}/app.pid"
log_file = "{state}/app.log"
reload = "HUP"
env = {{ FIRST_SLEEP = "{first}", EVERY_SLEEP = "{every}", PYTHONDONTWRITEBYTECODE = "1" }}

[targets.staging.health]
url = "http://127.0.0.1:{port}/health"
json = {{ status = "healthy" }}
{health}
"""


@pytest.fixture
def slow_app(app, tmp_path):
    """Writes the targets file and starts the app (not waiting for it: the runbooks under test do)."""

    def make(**options) -> None:
        write_targets_file(app, slow_target(tmp_path, **options))
        with app.app_context():
            current_targets().open("staging").process().start()

    yield make
    with app.app_context():
        if "staging" in current_targets().names():
            current_targets().open("staging").process().stop()


def listens(app) -> bool:
    with app.app_context():
        url = urlsplit(current_targets().config("staging").health.url)
    try:
        socket.create_connection((url.hostname, url.port), timeout=1).close()
        return True
    except OSError:
        return False


def probes(text: str) -> list[str]:
    return re.findall(r"^probe \d+ at \+[\d.]+ s: .*$", text, re.M)


def test_a_restart_verifies_an_app_whose_first_requests_are_slower_than_a_probe(app, runner, slow_app):
    slow_app(first=FIRST_SLEEP_S, every=0, health="timeout = 120")
    job, view = run(app, "verify")  # the start: both workers are cold
    assert job.state == "succeeded", job.result

    job, view = run(app, "restart")  # a graceful reload: new workers, cold again
    assert job.state == "succeeded", job.result
    assert job.verification == "passed"
    seen = probes(log_text(view))
    assert re.search(r"old workers? (was|were) retired and \d new workers? (was|were) started", log_text(view))
    slow = [line for line in seen if "no answer within 2 s" in line]
    assert slow, seen
    assert "it is there but answers slowly" in slow[0], "the log says slow, not absent"
    assert "healthy: status 200, JSON matches" in seen[-1] and seen.index(slow[0]) < len(seen) - 1
    assert not any("connection refused" in line for line in seen), "a reload never refuses a connection"


def test_an_app_always_slower_than_a_probe_fails_saying_so_and_what_to_raise(app, runner, slow_app):
    slow_app(first=0, every=60, health="timeout = 3\nprobe_timeout = 0.5")
    wait_for(lambda: listens(app), timeout=60)  # it accepts connections: every probe then waits for an answer
    job, view = run(app, "verify")
    assert job.state == "failed" and job.verification == "failed"
    assert "staging did not become healthy: it answered too slowly" in job.result
    assert "got an answer within 0.5 s (health.probe_timeout) before health.timeout (3 s) passed" in job.result
    assert "raise health.probe_timeout in the targets file" in job.result
    seen = probes(log_text(view))
    assert len(seen) >= 2 and all("no answer within" in line for line in seen), seen
