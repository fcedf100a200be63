"""A graceful stop lets running jobs finish, claims nothing new, and marks the rest interrupted, saying why."""

import os
import runpy
import signal
import sqlite3
import struct
import subprocess
import threading
from pathlib import Path

import pytest
import websocket

from app.audit.store import Actor
from app.extensions import db
from app.jobs import runbook, service
from app.jobs.engine import engine
from app.jobs.models import Job
from tests.conftest import both_databases, wait_for


def enqueue(app, name, target=None, **params):
    with app.app_context():
        book = runbook.get(name)
        parsed = book.parse_params({k: str(v) for k, v in params.items()}, target)
        return service.enqueue(book, target, parsed, Actor(None, "opal")).id


def job(app, job_id) -> Job:
    with app.app_context():
        row = db.session.get(Job, job_id)
        db.session.expunge(row)
        return row


def test_running_jobs_finish_and_queued_ones_wait(app):
    from app.jobs.runner import Runner

    runner = Runner(app, workers=1).start()
    running = enqueue(app, "test.count", lines=20, delay=0.02)
    wait_for(lambda: job(app, running).state == "running")
    queued = enqueue(app, "test.count", lines=1)
    assert runner.drain(timeout_s=60) == []
    assert job(app, running).state == "succeeded"
    assert job(app, queued).state == "queued", "a stopping runner claims nothing new"
    runner.stop()


def test_jobs_still_running_at_the_timeout_are_interrupted_and_their_commands_stopped(app):
    runner = engine(app).start_runner()
    long = enqueue(app, "test.sleep", target="staging", seconds=600)
    wait_for(lambda: job(app, long).state == "running")
    assert runner.drain(timeout_s=0.5) == [long]
    row = job(app, long)
    assert row.state == "interrupted"
    assert row.result.startswith("Rewind was stopped during “Sleep”: its jobs did not finish within")
    assert not runner._running, "the job's thread stopped its command and let go"
    assert job(app, long).state == "interrupted", "the job's own ending did not overwrite it"
    runner.stop()


def test_a_job_interrupted_by_a_stop_says_what_it_had_already_changed(app):
    """QA: a deploy stopped in its release commands had merged the new code, but said only "check the target's
    state". What a job changed is kept on its row as it goes, so the interrupted job says it, as a failed one does."""
    runner = engine(app).start_runner()
    long = enqueue(app, "test.change_then_sleep", target="staging", seconds=600)
    wait_for(lambda: job(app, long).state == "running" and job(app, long).done is not None)
    assert runner.drain(timeout_s=0.5) == [long]
    row = job(app, long)
    assert row.state == "interrupted"
    assert "Already done before that: changed staging. It was not re-run" in row.result, row.result
    runner.stop()


@both_databases
def test_what_a_job_does_after_a_stop_interrupted_it_is_kept_in_its_log(app):
    """The stop marks the job interrupted while its thread still runs, and writes an event of its own: the lines
    the thread writes afterwards (a deploy putting its code back) must be kept, not lost to a taken number."""
    from app.jobs.events import load_view

    runner = engine(app).start_runner()
    changing = enqueue(app, "test.put_back")
    wait_for(lambda: job(app, changing).state == "running")
    assert runner.drain(timeout_s=0.5) == [changing]
    assert not runner._running, "the job's thread let go"
    with app.app_context():
        row = db.session.get(Job, changing)
        view = load_view(row)
    assert row.state == "interrupted"
    assert "put back" in [line for _, _, line in view.lines], "the put-back the thread did after the stop is told"
    runner.stop()


def test_what_a_job_changes_after_a_stop_interrupted_it_is_added_to_its_result(app):
    """The result is written when the stop marks the job; a change its thread makes afterwards (a deploy putting its
    code back) would otherwise be in the log only, the result still naming the change it undid as the last word."""
    runner = engine(app).start_runner()
    changing = enqueue(app, "test.put_back")
    wait_for(lambda: job(app, changing).state == "running")
    assert runner.drain(timeout_s=0.5) == [changing]
    row = job(app, changing)
    assert row.state == "interrupted"
    assert row.result.endswith("still needed. Then, as it stopped: half-changed the target."), row.result
    runner.stop()


def test_a_web_workers_sigterm_handler_starts_no_thread_it_wakes_the_waiting_drain(app):
    """A thread started inside a signal handler can hang the worker for ever (app/signalrelay.py says how): the
    drain thread is waiting before any signal, the handler only notes it, and gunicorn's own stop still runs."""
    from gunicorn.config import Config

    from app import serving

    hooks = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    worker = serving.BalancedThreadWorker(0, os.getpid(), [], None, 30, Config(), None)  # real, not started
    worker.method_queue.init()
    worker.wsgi = app
    previous = signal.getsignal(signal.SIGTERM)
    try:
        hooks["post_worker_init"](worker)
        runner, drain = engine(app).runner, worker.rewind_drain
        assert drain.is_alive() and runner.running, "the drain waits, started before any signal"
        before = set(threading.enumerate())
        signal.raise_signal(signal.SIGTERM)  # the handler has run when this returns
        assert set(threading.enumerate()) - before == set(), "the handler started no thread"
        assert not worker.alive, "gunicorn's own graceful stop ran"
        wait_for(lambda: not runner.running, timeout=30)  # the relay woke the drain: nothing more is claimed
        queued = enqueue(app, "test.count", lines=1)
        hooks["worker_exit"](None, worker)
        assert not drain.is_alive(), "worker_exit waited for the drain"
        assert job(app, queued).state == "queued"
    finally:
        signal.signal(signal.SIGTERM, previous)
        if hasattr(worker, "rewind_signals"):
            worker.rewind_signals.close()
        worker.method_queue.close()
        engine(app).runner.stop()


def test_a_web_worker_leaving_without_sigterm_stops_its_jobs_at_once_and_does_not_wait_for_the_drain(app):
    """Max requests reached, say: no SIGTERM woke the drain, so worker_exit must not wait on it for ever; its
    running job is marked interrupted (its command stopped) rather than left "running" with the process gone."""
    from gunicorn.config import Config

    from app import serving

    hooks = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    worker = serving.BalancedThreadWorker(0, os.getpid(), [], None, 30, Config(), None)
    worker.wsgi = app
    previous = signal.getsignal(signal.SIGTERM)
    try:
        hooks["post_worker_init"](worker)
        long = enqueue(app, "test.sleep", target="staging", seconds=600)
        wait_for(lambda: job(app, long).state == "running", timeout=30)
        leaving = threading.Thread(target=hooks["worker_exit"], args=(None, worker))
        leaving.start()
        leaving.join(timeout=60)
        assert not leaving.is_alive(), "worker_exit waited for a drain nothing had woken"
        assert worker.rewind_drain.is_alive(), "the SIGTERM drain was never woken"
        assert not engine(app).runner.running, "the runner claims nothing more"
        assert job(app, long).state == "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        worker.rewind_signals.note()  # let the waiting drain end, then the relay
        worker.rewind_drain.join(timeout=60)
        worker.rewind_signals.close()
        engine(app).runner.stop()


def test_sigterm_to_gunicorn_marks_an_unfinished_job_interrupted(tmp_path):
    from tests.jobs.conftest import start_server
    from tests.jobs.test_websocket import start_job
    from tests.support.http import Session

    server = start_server(tmp_path / "instance", REWIND_GRACEFUL_TIMEOUT="1")
    try:
        admin = Session(server.url)
        admin.login("admin", server.admin_password)
        job_id = start_job(admin, runbook="test.sleep", target="staging", seconds="600")
        wait_for(lambda: 'data-state="running"' in admin.get(f"/jobs/{job_id}")[2], timeout=30)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "instance" / "rewind.db") as conn:
        state, result = conn.execute("SELECT state, result FROM job WHERE id = ?", (job_id,)).fetchone()
    assert state == "interrupted" and result.startswith("Rewind was stopped")


def test_sigterm_tells_open_live_pages_to_reconnect_and_the_worker_leaves_at_once(tmp_path):
    """A page watching a job that runs elsewhere (here, still queued) held the worker until graceful_timeout."""
    from tests.jobs.conftest import start_server
    from tests.jobs.test_websocket import start_job
    from tests.support.http import Session

    server = start_server(tmp_path / "instance", REWIND_EXTERNAL_WORKERS="1")  # no worker runs the job
    try:
        admin = Session(server.url)
        admin.login("admin", server.admin_password)
        job_id = start_job(admin, runbook="test.count", lines="3")
        page = admin.websocket(f"/jobs/{job_id}/ws", timeout=15)
        assert 'data-state="queued"' in page.recv()
        server.process.send_signal(signal.SIGTERM)
        opcode, frame = page.recv_data(control_frame=True)  # answers the close, as a browser does
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert struct.unpack("!H", frame[:2])[0] == 1012, "service restart: the page's extension reconnects"
        assert frame[2:].decode() == "Rewind is restarting; reconnecting"
        assert server.process.wait(timeout=15) == 0, "the default graceful timeout is 30 s"
    finally:
        server.stop()


def test_sigterm_lets_a_page_watching_a_running_job_see_its_end_before_it_closes(tmp_path):
    from tests.jobs.conftest import start_server
    from tests.jobs.test_websocket import Reader, read_until, start_job
    from tests.support.http import Session

    server = start_server(tmp_path / "instance")
    try:
        admin = Session(server.url)
        admin.login("admin", server.admin_password)
        job_id = start_job(admin, runbook="test.count", lines="20", delay="0.05")
        page = admin.websocket(f"/jobs/{job_id}/ws", timeout=15)
        reader = Reader()
        reader.take(page.recv())
        server.process.send_signal(signal.SIGTERM)  # the job has about a second to go: it ends in the drain
        read_until(page, reader)
        assert reader.final == "succeeded" and len(reader.lines) == 20
        opcode, frame = page.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert struct.unpack("!H", frame[:2])[0] == 1000, "closed as after any job's end, not told to reconnect"
        assert server.process.wait(timeout=15) == 0
    finally:
        server.stop()


def test_sigterm_to_a_worker_lets_a_short_job_finish_and_interrupts_a_long_one(tmp_path, pg_server):
    from tests.jobs.conftest import SERVER_ENV, start_server
    from tests.jobs.test_processes import state_of, worker
    from tests.jobs.test_websocket import start_job
    from tests.support.http import Session

    url = pg_server.create_database("graceful")
    web = start_server(tmp_path / "web", url, REWIND_EXTERNAL_WORKERS="1")
    # two job threads: a third job waits in the queue while both run
    log = (tmp_path / "worker.log").open("wb")
    process = worker({**web.env, **SERVER_ENV, "REWIND_GRACEFUL_TIMEOUT": "8", "REWIND_JOB_THREADS": "2"}, log)
    try:
        session = Session(web.url)
        session.login("admin", web.admin_password)
        long = start_job(session, runbook="test.sleep", target="staging", seconds="600")
        # the short job needs about 1 s: well inside the 8-s grace even on a loaded machine
        short = start_job(session, runbook="test.count", lines="20", delay="0.05")
        wait_for(lambda: state_of(session, long) == state_of(session, short) == "running", timeout=30)
        queued = start_job(session, runbook="test.count", lines="1")
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # seen once in a loaded full run: show where every thread stood
            process.send_signal(signal.SIGABRT)
            process.wait(timeout=30)
            pytest.fail("the worker did not stop within 60 s of SIGTERM; its log and threads:\n" + _tail(tmp_path))
        assert code == 0, _tail(tmp_path)
        assert state_of(session, short) == "succeeded"
        assert state_of(session, long) == "interrupted"
        assert "Rewind was stopped during “Sleep”" in session.get(f"/jobs/{long}")[2]
        assert state_of(session, queued) == "queued", "a slot came free, but a stopping worker claims nothing new"
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        web.stop()


def _tail(tmp_path, limit: int = 12000) -> str:
    return (tmp_path / "worker.log").read_text(errors="replace")[-limit:]


def test_a_second_quit_signal_while_the_first_is_stopping_the_worker_is_left_to_the_first(app):
    """Ctrl-C reaches the worker twice: the terminal's SIGINT, then the master's SIGQUIT, often while the first is
    still in its handler. Run again on top of it, the stop waited on locks the first held (a thread's join, the
    runner's), and the worker was killed at graceful_timeout."""
    from gunicorn.config import Config

    from app import serving

    hooks = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    worker = serving.BalancedThreadWorker(0, os.getpid(), [], None, 30, Config(), None)
    worker.tpool = worker.get_thread_pool()  # gthread's quit shuts it down
    worker.wsgi = app
    stops: list[int] = []

    def worker_int(w) -> None:
        stops.append(len(stops))
        if len(stops) == 1:
            w.handle_quit(signal.SIGQUIT, None)  # the master's SIGQUIT lands while the SIGINT is handled
        hooks["worker_int"](w)

    worker.cfg.set("worker_int", worker_int)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        hooks["post_worker_init"](worker)
        with pytest.raises(SystemExit) as leaving:
            worker.handle_quit(signal.SIGINT, None)
        assert leaving.value.code == 0
        assert stops == [0], "the second signal did not run the stop again"
        assert not engine(app).runner.running, "the first stop ran to its end: nothing more is claimed"
    finally:
        signal.signal(signal.SIGTERM, previous)
        worker.rewind_signals.note()
        worker.rewind_drain.join(timeout=60)
        worker.rewind_signals.close()
        engine(app).runner.stop()
