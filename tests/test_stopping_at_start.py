"""Ctrl-C (or SIGTERM) at any moment of gunicorn's start stops it at once, not at graceful_timeout with a SIGKILL.

A terminal's Ctrl-C signals the whole process group: the worker gets SIGINT from the terminal and SIGQUIT from
the master a moment later, possibly before its own handlers are in place, or while the first is being handled.
Real gunicorn, real worker; every wait is on the process or on its log, bounded by the graceful window.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TARGETS, wait_for
from tests.support.server import RewindServer

GRACEFUL_S = 1  # REWIND_GRACEFUL_TIMEOUT: gunicorn's graceful_timeout is this + 10 (gunicorn.conf.py)
WINDOW_S = GRACEFUL_S + 10  # a worker still there then is killed by the master (SIGKILL)


def booted(server: RewindServer) -> int | None:
    """The worker's pid once the master has forked it (it is loading Rewind now)."""
    found = re.search(r"Booting worker with pid: (\d+)", server.log.read_text())
    return int(found.group(1)) if found else None


def serves(server: RewindServer) -> bool:
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.fixture
def server(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "rewind.toml").write_text(TARGETS)
    server = RewindServer(instance, REWIND_GRACEFUL_TIMEOUT=str(GRACEFUL_S), REWIND_ACCESS_LOG="0")
    yield server
    if server.process is not None and server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@pytest.mark.parametrize(
    ("moment", "sig", "to"),
    [
        ("booting", signal.SIGINT, "group"),  # Ctrl-C while the worker loads Rewind
        ("serving", signal.SIGINT, "group"),  # Ctrl-C once it serves: its job runner drains (no jobs)
        ("booting", signal.SIGTERM, "master"),  # a service manager's stop while the worker loads
        ("serving", signal.SIGTERM, "master"),
    ],
)
def test_a_worker_with_no_jobs_stops_at_once_whenever_the_signal_lands(server, moment, sig, to):
    process = server.spawn(own_session=True)
    worker = wait_for(lambda: booted(server), timeout=120)
    if moment == "serving":
        wait_for(lambda: serves(server), timeout=120)
    if to == "group":
        os.killpg(process.pid, sig)  # as the terminal does: master and worker alike
    else:
        process.send_signal(sig)
    try:
        status = process.wait(timeout=WINDOW_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {WINDOW_S} s after {sig.name} to the {to}:\n{server.log.read_text()}")
    assert status == 0, server.log.read_text()
    log = server.log.read_text()
    assert "SIGKILL" not in log and "Perhaps out of memory" not in log, log
    assert f"Worker exiting (pid: {worker})" in log, log
    assert gone(worker)
