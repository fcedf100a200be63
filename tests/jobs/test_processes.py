"""Jobs across processes: PostgreSQL fan-out between web workers, workers, and crashes."""

import os
import re
import signal
import subprocess
import sys

from tests.conftest import wait_for
from tests.jobs.conftest import SERVER_ENV, start_server
from tests.jobs.test_websocket import Reader, read_until, start_job
from tests.support.http import Session
from tests.support.server import REPO


def state_of(session: Session, job_id: int) -> str:
    import re

    page = session.get(f"/jobs/{job_id}")[2]
    return re.search(r'id="job-state"[^>]*data-state="(\w+)"', page).group(1)


def test_watcher_on_one_web_process_sees_a_job_run_by_another(tmp_path, pg_server):
    url = pg_server.create_database("twoweb")
    shared = {"REWIND_AUDIT_KEY": "k" * 40, "REWIND_SECRET_KEY": "s" * 40}  # every process of one Rewind shares them
    watcher_side = start_server(tmp_path / "a", url, REWIND_EXTERNAL_WORKERS="1", **shared)  # runs no jobs itself
    runner_side = start_server(tmp_path / "b", url, **shared)
    try:
        session = Session(watcher_side.url)
        session.login("admin", watcher_side.admin_password)
        job_id = start_job(session, runbook="test.count", lines="120", delay="0.01")
        ws = session.websocket(f"/jobs/{job_id}/ws")
        reader = Reader()
        read_until(ws, reader, timeout=60)
        assert reader.final == "succeeded"
        assert reader.lines == [f"line {i}" for i in range(1, 121)]
        assert f":{runner_side.worker_pid()}</dd>" in session.get(f"/jobs/{job_id}")[2], "run by the other process"
        assert "No break in the" in session.get("/audit/chain?fresh=1")[2]
    finally:
        watcher_side.stop()
        runner_side.stop()


def worker(env: dict, log=subprocess.DEVNULL) -> subprocess.Popen:
    """`flask rewind worker`; with `log` (an open file), its output there and faulthandler on (SIGABRT dumps every
    thread's stack into it)."""
    return subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "flask", "rewind", "worker"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log is not subprocess.DEVNULL else subprocess.DEVNULL,
    )


def test_killed_worker_leaves_its_job_interrupted_for_its_watcher_and_its_target_free(tmp_path, pg_server):
    url = pg_server.create_database("killed")
    web = start_server(tmp_path / "web", url, REWIND_EXTERNAL_WORKERS="1")
    env = {**web.env, **SERVER_ENV}
    first = worker(env)
    try:
        session = Session(web.url)
        session.login("admin", web.admin_password)
        job_id = start_job(session, runbook="test.sleep", target="staging", seconds="60")
        wait_for(lambda: "child up" in session.get(f"/jobs/{job_id}")[2], timeout=20)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert state_of(session, job_id) == "running", "nothing notices until a runner starts or a page watches"
        # An open job page looks by itself: it read "running" (and the overview too) until another job was asked
        # for; now its stream ends the job, and the step it was in no longer reads running either.
        ws = session.websocket(f"/jobs/{job_id}/ws")
        reader = Reader()
        reader.take(ws.recv())  # the snapshot: running
        ws.settimeout(60)
        while reader.final is None:
            message = ws.recv()
            assert message, "the stream closed before the job's end"
            reader.take(message)
        assert reader.final == "interrupted"
        step = re.search(r'<div id="step-0" class="step-row"[^>]*data-state="(\w+)"', message)
        assert step and step.group(1) == "failed", "its step no longer reads running on the open page"
        second = worker(env)
        try:
            assert state_of(session, job_id) == "interrupted"
            page = session.get(f"/jobs/{job_id}")[2]
            assert "during “Sleep”" in page and "not re-run" in page
            assert "job.interrupted" in session.get("/audit?action=job.interrupted")[2]
            # the target lock died with the process: staging takes a new job
            next_job = start_job(session, runbook="test.sleep", target="staging", seconds="0")
            wait_for(lambda: state_of(session, next_job) == "succeeded", timeout=20)
        finally:
            second.terminate()
            second.wait(timeout=15)
    finally:
        if first.poll() is None:
            first.kill()
        web.stop()


def test_killed_web_process_on_sqlite_interrupts_its_job(tmp_path):
    instance = tmp_path / "instance"
    server = start_server(instance)
    session = Session(server.url)
    session.login("admin", server.admin_password)
    job_id = start_job(session, runbook="test.sleep", target="staging", seconds="60")
    wait_for(lambda: "child up" in session.get(f"/jobs/{job_id}")[2], timeout=20)
    password = server.admin_password
    server.kill()
    restarted = start_server(instance)
    try:
        session = Session(restarted.url)
        session.login("admin", password)
        assert state_of(session, job_id) == "interrupted"
    finally:
        restarted.stop()


def test_worker_refuses_sqlite(tmp_path):
    env = {**os.environ, "FLASK_APP": "wsgi", "REWIND_INSTANCE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "rewind", "worker"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "need a PostgreSQL ops database" in result.stderr
