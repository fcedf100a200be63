"""Verifying the process Rewind just started: fail fast, and say why (real processes, real HTTP).

Outcomes are asserted by the probes made and what they saw, never by elapsed time: each
wait here has a timeout far beyond what the test takes, so an early end can only be
the fail-fast rule at work.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from app.targets.health import HealthCheck, Probe
from app.targets.process import ManagedProcess
from tests.conftest import wait_for
from tests.support.postgres import free_port
from tests.support.processes import PY, SERVER, exec_script

LONG = 300  # a timeout no test here may reach


@pytest.fixture
def start(tmp_path):
    """Starts real applications as ManagedProcess (each with its own pid file), and kills what is left after."""
    made: list[ManagedProcess] = []

    def make(command: list[str], name: str = "app") -> ManagedProcess:
        process = ManagedProcess(
            command, cwd=tmp_path, pid_file=tmp_path / f"{name}.pid", log_file=tmp_path / f"{name}.log"
        )
        process.start()
        made.append(process)
        return process

    yield make
    for process in made:
        if (pid := process.status().pid) is not None:
            os.killpg(pid, signal.SIGKILL)


def served(process: ManagedProcess) -> None:
    wait_for(lambda: "serving on" in process.log_file.read_text(), timeout=20)


def check(port: int, **options) -> HealthCheck:
    return HealthCheck(f"http://127.0.0.1:{port}/health", timeout_s=LONG, interval_s=0.1, **options)


def test_an_exec_style_app_verifies_healthy(start, tmp_path):
    port = free_port()
    process = start(exec_script(tmp_path, str(port)))
    verdict = check(port).wait_healthy(process=process.watch())
    assert verdict.ok and verdict.reason == "status 200"


CRASHES = """
import sys
print("loading settings from the environment", flush=True)
print("Traceback (most recent call last):", file=sys.stderr)
print("ModuleNotFoundError: No module named 'redis'", file=sys.stderr, flush=True)
sys.exit(1)
"""


def test_a_process_that_exits_at_once_fails_verification_at_its_first_probe(start):
    process = start([PY, "-c", textwrap.dedent(CRASHES)])
    pid = int(process.pid_file.read_text().splitlines()[0])
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text(), timeout=20)
    watch = process.watch()
    verdict = check(free_port()).wait_healthy(process=watch)
    assert not verdict.ok and verdict.early and verdict.probes == 1
    assert "the application" in verdict.reason and "while it was being verified" in verdict.reason
    tail = process.log_tail(40)
    assert tail[-2:] == ["Traceback (most recent call last):", "ModuleNotFoundError: No module named 'redis'"]


def test_a_process_that_dies_while_being_verified_ends_the_wait(start, tmp_path):
    """Up and answering 503 (still warming up), then gone: the wait ends at the next probe, not at the timeout."""
    port = free_port()
    process = start(exec_script(tmp_path, str(port), "503"))
    served(process)
    watch = process.watch()
    seen: list[Probe] = []

    def on_probe(probe: Probe) -> None:
        seen.append(probe)
        if len(seen) == 2:
            os.killpg(watch.pid, signal.SIGKILL)
            wait_for(lambda: watch.exited() is not None, timeout=20)

    verdict = check(port, failure_threshold=10).wait_healthy(process=watch, on_probe=on_probe)
    assert not verdict.ok and verdict.early and verdict.probes == len(seen) == 3
    assert [p.status for p in seen] == [503, 503, None]
    assert verdict.reason.startswith(f"the application (pid {watch.pid}) exited while it was being verified")


def test_a_process_answering_500_fails_after_failure_threshold_probes(start, tmp_path):
    port = free_port()
    process = start(exec_script(tmp_path, str(port), "500"))
    seen: list[Probe] = []
    verdict = check(port, failure_threshold=3).wait_healthy(process=process.watch(), on_probe=seen.append)
    assert not verdict.ok and verdict.early
    answered = [p.status for p in seen if p.status is not None]
    assert answered == [500, 500, 500], "the third 500 in a row ends the wait"
    assert all(p.refused for p in seen[: -len(answered)]), "before it listened, only refusals"
    assert verdict.reason.startswith("answered 500 to 3 probes in a row")
    assert verdict.answer == "status 500: Traceback: ModuleNotFoundError: No module named 'redis'"


def test_an_answer_from_another_process_is_not_health(start, tmp_path):
    """An old copy holds the port; the process just started listens on none yet (still migrating)."""
    port = free_port()
    old = start(exec_script(tmp_path, str(port)), name="old")
    served(old)
    migrating = start([PY, "-c", "import time; print('migrating', flush=True); time.sleep(600)"])
    seen: list[Probe] = []
    verdict = HealthCheck(f"http://127.0.0.1:{port}/health", timeout_s=1, interval_s=0.1).wait_healthy(
        process=migrating.watch(), on_probe=seen.append
    )
    assert not verdict.ok and not verdict.early, "it may still come up: wait, but never call the old copy healthy"
    assert seen and all(p.status == 200 and not p.ok for p in seen)
    assert all(p.reason.endswith("listens on no port yet, so another process answered") for p in seen)


def test_an_answer_on_a_port_the_process_does_not_hold_fails_fast(start, tmp_path):
    old_port, new_port = free_port(), free_port()
    old = start(exec_script(tmp_path, str(old_port)), name="old")
    served(old)
    new = start([*exec_script(tmp_path, str(new_port))])
    served(new)
    seen: list[Probe] = []
    verdict = check(old_port, failure_threshold=3).wait_healthy(process=new.watch(), on_probe=seen.append)
    assert not verdict.ok and verdict.early and verdict.probes == 3
    assert all(p.status == 200 and not p.ok and "another process answered" in p.reason for p in seen)
    assert f"listens on port {new_port}, not on the health URL's port {old_port}" in verdict.reason


def test_refusals_while_the_process_listens_elsewhere_fail_fast(start, tmp_path):
    listens, asked = free_port(), free_port()
    process = start(exec_script(tmp_path, str(listens)))
    served(process)
    seen: list[Probe] = []
    verdict = check(asked, failure_threshold=4).wait_healthy(process=process.watch(), on_probe=seen.append)
    assert not verdict.ok and verdict.early and verdict.probes == 4
    assert all(p.refused for p in seen)
    assert "check the health URL's port" in verdict.reason


def test_a_stopped_process_fails_verification_at_once(start, tmp_path):
    process = start(exec_script(tmp_path, str(free_port())))
    process.stop()
    verdict = check(free_port()).wait_healthy(process=process.watch())
    assert not verdict.ok and verdict.early and verdict.probes == 1
    assert verdict.reason.startswith("the application is not running")


def test_refusals_on_the_port_it_holds_but_another_address_fail_fast(start, tmp_path):
    """The app binds 127.0.0.1 only; the health URL asks 127.0.0.2 (another loopback address) on the same port."""
    port = free_port()
    process = start(exec_script(tmp_path, str(port)))
    served(process)
    seen: list[Probe] = []
    health = HealthCheck(f"http://127.0.0.2:{port}/health", timeout_s=LONG, interval_s=0.1, failure_threshold=3)
    verdict = health.wait_healthy(process=process.watch(), on_probe=seen.append)
    assert not verdict.ok and verdict.early and verdict.probes == 3 and all(p.refused for p in seen)
    assert "refuses connections (is it bound to another address?)" in verdict.reason


DAEMONIZES = """
import os, sys
if os.fork():
    sys.exit(0)  # the process Rewind started exits at once...
os.setsid()
if os.fork():
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])  # ...and the server runs on in a session of its own
"""


def test_an_app_still_starting_at_the_timeout_is_said_to_be_slow_not_broken(start, tmp_path):
    """Alive and not yet listening when health.timeout passes (an app that warms up for longer): the way on is a
    longer timeout, which "no healthy answer; last: connection refused" alone did not say."""
    port = free_port()
    process = start([PY, "-c", "import time; time.sleep(60)"])
    watch = process.watch()
    verdict = HealthCheck(f"http://127.0.0.1:{port}/health", timeout_s=1, interval_s=0.1).wait_healthy(process=watch)
    assert not verdict.ok and not verdict.early and verdict.probe.refused
    assert verdict.reason == (
        f"pid {watch.pid} still runs but accepted no connection on port {port} within 1 s (health.timeout) — if the "
        "application is slow to start (loading code, migrating, warming caches), raise health.timeout in the "
        "targets file; otherwise its log says what it waits for"
    )
    # Without a process to follow, nothing says it still runs: the plain words stay.
    plain = HealthCheck(f"http://127.0.0.1:{port}/health", timeout_s=0.3, interval_s=0.1).wait_healthy()
    assert plain.reason == "no healthy answer within 0.3 s; last: connection refused"


def test_an_app_that_daemonizes_itself_is_named_as_such(start, tmp_path):
    (tmp_path / "server.py").write_text(SERVER)
    port = free_port()
    process = start([PY, "-c", DAEMONIZES, str(tmp_path / "server.py"), str(port)])
    try:
        wait_for(lambda: check(port).probe().ok, timeout=20)
        verdict = check(port).wait_healthy(process=process.watch())
        assert not verdict.ok and verdict.early and verdict.probes == 1
        assert "while it was being verified" in verdict.reason
        assert "puts itself in the background (daemonizes), make it stay in the foreground" in verdict.reason
    finally:  # Rewind cannot know the copy that escaped: the test stops it
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            if _serves(pid, tmp_path):
                os.kill(pid, signal.SIGKILL)


def _serves(pid: int, folder: Path) -> bool:
    try:
        return str(folder / "server.py") in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False
