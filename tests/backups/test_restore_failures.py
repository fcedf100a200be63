"""Real failures at the restore's later steps (stop, swap, start): live data stays whole and readable, the app
serves, and the job says where the live, scratch and pre-restore databases are."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import psycopg
import pytest

from app.audit.store import Actor
from app.backups.catalog import Catalog
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service, swaps
from app.jobs.context import CANCEL_CHECK_S
from app.jobs.engine import engine
from app.jobs.models import Job
from app.targets.dbadmin import Postgres
from app.targets.environment import inherited_env
from tests.backups.controlled import (
    back_to_managed,
    ctl_argv,
    held_once,
    stop_clashing,
    then_hold,
    use_commands,
)
from tests.backups.test_runbooks import app_pid, backup_now, copies, copy_url, restore_in_its_own_process
from tests.backups.test_schedule import finish
from tests.backups.test_silent_tools import silent_tools, with_pg_bin
from tests.conftest import wait_for
from tests.deployments.test_runbooks import ADMIN, health, log_text, run
from tests.support.jobs import finished
from tests.support.targets import write_targets_file


def _restore_after_a_change(app, target) -> tuple[str, dict]:
    name = backup_now(app, target)
    target.execute("DELETE FROM orders WHERE id > 10")
    target.execute('INSERT INTO "user" VALUES (?, ?, ?)', (100, "late", "2099-01-01 00:00:00+00"))
    return name, target.snapshot()


def _restored(app, target) -> tuple[str, dict, dict]:
    """A restore done after a change: (its pre-restore copy, the changed rows it holds, live as restored)."""
    name, changed = _restore_after_a_change(app, target)
    restored, view = run(app, "restore_backup", target.name, backup=name)
    assert restored.state == "succeeded", log_text(view)
    (pre,) = copies(target)
    return pre, changed, target.snapshot()


def test_a_stop_command_that_fails_leaves_live_serving_and_says_so(app, runner, data_target):
    """The app's stop command exits 1 and says nothing: started again, live untouched, the scratch accounted for."""
    use_commands(app, data_target, stop=["/bin/false"])
    try:
        name, before = _restore_after_a_change(app, data_target)
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert job.state == "failed", log_text(view)
        assert [s.state for s in view.steps[4:]] == ["failed", "not_run", "not_run", "not_run"]
        assert "`/bin/false` exited with status 1" in job.result, job.result
        assert "live database was not touched; staging was started again and is healthy" in job.result, job.result
        assert "no pre-restore copy was made" in job.result, job.result
        assert "scratch" in job.result and "dropped" in job.result, job.result
        assert data_target.snapshot() == before
        assert copies(data_target) == []
        assert health(data_target.code)[0] == 200
    finally:
        back_to_managed(app, data_target)


def test_an_undo_whose_stop_fails_leaves_the_restored_database_serving_and_the_copy_in_place(app, runner, data_target):
    pre, changed, live = _restored(app, data_target)
    use_commands(app, data_target, stop=["/bin/false"])
    try:
        job, view = run(app, "undo_restore", data_target.name, pre_restore=pre)
        assert job.state == "failed", log_text(view)
        assert f"the pre-restore copy {pre} is unchanged" in job.result, job.result
        assert "staging was started again and is healthy" in job.result, job.result
        assert data_target.snapshot() == live and copies(data_target) == [pre]
        assert data_target.snapshot(copy_url(data_target, pre)) == changed
        assert health(data_target.code)[0] == 200
    finally:
        back_to_managed(app, data_target)


def test_a_swap_refused_by_a_name_clash_keeps_live_and_the_restored_copy(app, runner, data_target):
    """The name live is to be kept under is taken (made while the app stopped): nothing renamed, the app serves."""
    use_commands(app, data_target, stop=stop_clashing(data_target))
    try:
        name, before = _restore_after_a_change(app, data_target)
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert job.state == "failed", log_text(view)
        assert [s.state for s in view.steps[4:]] == ["succeeded", "failed", "not_run", "not_run"]
        (scratch,) = [c for c in copies(data_target) if "pre_restore" not in c]
        assert f"the restored copy is kept as {scratch}" in job.result, job.result
        assert "is unchanged; staging was started again and is healthy on it" in job.result, job.result
        assert "no pre-restore copy was made" in job.result, job.result
        assert data_target.snapshot() == before  # live whole and readable
        with app.app_context():  # nothing renamed: no swap counts
            assert db.session.get(Job, job.id).swapped_at is None and swaps.since(data_target.name) == []
        assert data_target.snapshot(copy_url(data_target, scratch))["orders"] != before["orders"]  # the backup's
        assert health(data_target.code)[0] == 200
    finally:
        back_to_managed(app, data_target)


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_session_rewind_may_not_end_refuses_the_swap_and_live_serves_on(app, runner, data_target, pg_server):
    """Rewind's database user owns the database but is no superuser; a superuser's session on live cannot be ended."""
    live = data_target.url.rsplit("/", 1)[1]
    role = f"app_{live.removeprefix('shop_')}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN CREATEDB')
        conn.execute(f'ALTER DATABASE "{live}" OWNER TO "{role}"')
    with psycopg.connect(data_target.url, autocommit=True) as conn:
        for table in ("user", "orders", "alembic_version"):
            conn.execute(f'ALTER TABLE "{table}" OWNER TO "{role}"')
    own_url = data_target.url.replace(f"{pg_server.user}@", f"{role}@")
    write_targets_file(app, data_target.toml().replace(data_target.url, own_url))
    name, before = _restore_after_a_change(app, data_target)
    with psycopg.connect(data_target.url, application_name="a DBA's psql") as dba:  # a superuser, on live
        dba.execute("SELECT 1")
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert not dba.closed and dba.execute("SELECT count(*) FROM orders").fetchone() == (10,)
    assert job.state == "failed", log_text(view)
    assert [s.state for s in view.steps[4:]] == ["succeeded", "failed", "not_run", "not_run"]
    assert "a DBA's psql" in job.result and "may not end" in job.result, job.result
    (scratch,) = copies(data_target)
    assert "_restore_" in scratch and "pre_restore" not in scratch
    assert f"the restored copy is kept as {scratch}" in job.result, job.result
    assert "no pre-restore copy was made" in job.result
    assert data_target.snapshot() == before
    assert health(data_target.code)[0] == 200


def _cancel_once(app, target, reached, runbook: str, **params):
    """Run a job and cancel it once `reached` exists (its stop or start command got there); the job and view."""
    with app.app_context():
        book = runbooks.get(runbook)
        parsed = book.parse_params({k: str(v) for k, v in params.items()}, target.name)
        job_id = service.enqueue(book, target.name, parsed, ADMIN).id
    wait_for(reached.exists, timeout=120)
    with app.app_context():
        service.cancel(db.session.get(Job, job_id), Actor(None, "the on-call engineer"))
    return finished(app, job_id, timeout=120)


def test_a_cancel_while_the_app_stops_starts_it_again_on_the_untouched_live_database(app, runner, data_target):
    """The stop command has stopped the app and is still running when the cancel comes: the app serves again."""
    reached = data_target.code.repo.parent / "stopped"
    use_commands(app, data_target, stop=then_hold(data_target, ctl_argv(data_target, "stop"), reached))
    try:
        name, before = _restore_after_a_change(app, data_target)
        job, view = _cancel_once(app, data_target, reached, "restore_backup", backup=name)
        assert job.state == "cancelled", log_text(view)
        assert [s.state for s in view.steps[4:]] == ["cancelled", "not_run", "not_run", "not_run"]
        assert job.result.startswith("Cancelled by the on-call engineer during “Stop the application”."), job.result
        assert "The live database was not touched; staging was started again and is healthy" in job.result
        assert "no pre-restore copy was made" in job.result and "dropped" in job.result, job.result
        assert health(data_target.code)[0] == 200
        assert data_target.snapshot() == before
        assert copies(data_target) == []
    finally:
        back_to_managed(app, data_target)


def test_a_cancel_while_the_restored_copy_starts_swaps_back_and_starts_on_the_previous_database(
    app, runner, data_target
):
    """The start command hangs on the restored copy when the cancel comes: swapped back, the app serves live again."""
    run_dir = data_target.code.repo.parent
    armed, reached = run_dir / "armed", run_dir / "starting"
    use_commands(app, data_target, start=held_once(data_target, ctl_argv(data_target, "start"), armed, reached))
    try:
        name, before = _restore_after_a_change(app, data_target)
        armed.touch()  # the restore's start holds on; the start after the swap back runs the app
        job, view = _cancel_once(app, data_target, reached, "restore_backup", backup=name)
        assert job.state == "cancelled", log_text(view)
        assert [s.state for s in view.steps[4:]] == ["succeeded", "succeeded", "cancelled", "not_run"]
        assert job.result.startswith("Cancelled by the on-call engineer during “Start and verify”."), job.result
        (scratch,) = copies(data_target)
        assert "Swapped back" in job.result and "staging is healthy again" in job.result, job.result
        assert f"the restored copy is kept as {scratch}" in job.result, job.result
        assert health(data_target.code)[0] == 200
        assert data_target.snapshot() == before  # live is the previous database again, whole
        assert data_target.snapshot(copy_url(data_target, scratch))["orders"] != before["orders"]  # the backup's
    finally:
        back_to_managed(app, data_target)


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_cancel_while_the_scratch_copy_fills_says_live_was_not_touched_and_the_copy_dropped(
    app, runner, data_target, tmp_path
):
    """QA: cancelled during the fill (the longest step, where a cancel most often comes), the result said only
    "Cancelled by … during “Restore into a scratch database”.": nothing of live, nor of the half-filled copy."""
    name, before = _restore_after_a_change(app, data_target)
    reached = tmp_path / "filling"
    real = Postgres(data_target.url, inherited_env())
    # pg_restore reads the archive for the checks as the real one does; the fill's holds on until it is stopped
    silent_tools(tmp_path / "bin", real, f"touch {shlex.quote(str(reached))}; sleep 120", reads=True)
    write_targets_file(app, with_pg_bin(data_target, tmp_path / "bin"))
    job, view = _cancel_once(app, data_target, reached, "restore_backup", backup=name)
    assert job.state == "cancelled", log_text(view)
    assert [s.state for s in view.steps[2:4]] == ["cancelled", "not_run"], log_text(view)
    scratch = re.search(r"the scratch copy (\S+),", log_text(view)).group(1)
    assert job.result == (
        "Cancelled by the on-call engineer during “Restore into a scratch database”. The live database was not "
        f"touched; the half-filled scratch copy {scratch} was dropped."
    )
    assert f"dropped the half-filled scratch copy {scratch}; the live database was not touched" in log_text(view)
    assert data_target.snapshot() == before and copies(data_target) == []


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_restore_test_cancelled_while_it_fills_says_its_copy_was_dropped_and_nothing_recorded(
    app, runner, data_target, tmp_path
):
    """QA: as a restore's, a restore test's cancel said only "Cancelled by … during “Verify the backup”."."""
    name = backup_now(app, data_target)
    reached = tmp_path / "filling"
    real = Postgres(data_target.url, inherited_env())
    silent_tools(tmp_path / "bin", real, f"touch {shlex.quote(str(reached))}; sleep 120", reads=True)
    write_targets_file(app, with_pg_bin(data_target, tmp_path / "bin"))
    job, view = _cancel_once(app, data_target, reached, "verify_backup", backup=name, level="restore-test")
    assert job.state == "cancelled", log_text(view)
    scratch = re.search(r"into the scratch copy (\S+)", log_text(view)).group(1)
    assert job.result == (
        "Cancelled by the on-call engineer during “Verify the backup”. The live database was not touched; the "
        f"restore test's copy {scratch} was dropped, and nothing was recorded against the backup."
    )
    assert f"dropped the restore test's copy {scratch}; the live database was not touched" in log_text(view)
    assert copies(data_target) == []
    assert Catalog(data_target.backup_dir).get(name).state == "verified"  # as the backup job left it


def test_a_cancel_while_an_undo_stops_the_app_leaves_the_restored_database_serving(app, runner, data_target):
    pre, changed, live = _restored(app, data_target)
    reached = data_target.code.repo.parent / "stopped"
    use_commands(app, data_target, stop=then_hold(data_target, ctl_argv(data_target, "stop"), reached))
    try:
        job, view = _cancel_once(app, data_target, reached, "undo_restore", pre_restore=pre)
        assert job.state == "cancelled", log_text(view)
        assert "during “Stop the application”" in job.result, job.result
        assert f"the pre-restore copy {pre} is unchanged" in job.result, job.result
        assert "staging was started again and is healthy" in job.result, job.result
        assert health(data_target.code)[0] == 200
        assert data_target.snapshot() == live and copies(data_target) == [pre]
        assert data_target.snapshot(copy_url(data_target, pre)) == changed
    finally:
        back_to_managed(app, data_target)


def test_an_undo_whose_copy_was_dropped_since_it_was_queued_stops_nothing(app, runner, data_target):
    """The undo's check step finds the pre-restore copy gone before anything is stopped or renamed."""
    pre, _, live = _restored(app, data_target)
    pid = app_pid(app, data_target)
    runner.stop(wait=True)  # queued now, run once the copy is gone
    with app.app_context():
        book = runbooks.get("undo_restore")
        job_id = service.enqueue(
            book, data_target.name, book.parse_params({"pre_restore": pre}, data_target.name), ADMIN
        ).id
    if data_target.engine == "sqlite":
        Path(copy_url(data_target, pre).removeprefix("sqlite:///")).unlink()
    else:
        with psycopg.connect(data_target.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{pre}"')
    again = engine(app).start_runner()
    try:
        job = finish(app, job_id)
    finally:
        again.stop(wait=True)
    assert job.state == "failed" and job.current_step == "Check the copies", job.result
    assert f"{pre} is no longer there" in job.result and "nothing was changed" in job.result, job.result
    assert app_pid(app, data_target) == pid and health(data_target.code)[0] == 200  # never stopped
    assert data_target.snapshot() == live and copies(data_target) == []


def test_a_restore_killed_after_its_swap_counts_as_the_swap_it_made(app, users, data_target):
    """kill -9 of the process running a restore while the restored copy starts: live is the restored copy now, so
    the job, interrupted, still counts as a swap (an older copy's undo and the flags' plans say so), and says where
    the replaced database is."""
    run_dir = data_target.code.repo.parent
    armed, reached = run_dir / "armed", run_dir / "starting"
    use_commands(app, data_target, start=held_once(data_target, ctl_argv(data_target, "start"), armed, reached))
    process = None
    try:
        runner = engine(app).start_runner()
        name, before = _restore_after_a_change(app, data_target)
        runner.stop(wait=True)  # the CLI runs the job in a process of its own when no runner is up
        armed.touch()
        process, _ = restore_in_its_own_process(app, data_target, name)
        wait_for(reached.exists, timeout=120)  # renamed, and the start holds on
        process.kill()
        process.wait(timeout=30)
        runner = engine(app).start_runner()  # a runner starting up finds the job orphaned
        try:
            with app.app_context():
                job_id = max(j.id for j in db.session.query(Job).filter_by(runbook="restore_backup"))
                wait_for(lambda: db.session.get(Job, job_id).state == "interrupted" or db.session.commit(), timeout=30)
                job = db.session.get(Job, job_id)
                (pre,) = [c for c in copies(data_target) if "pre_restore" in c]
                assert f"the database it replaced is kept as {pre}" in job.result, job.result
                assert [(s.job_id, s.at) for s in swaps.since(data_target.name)] == [(job_id, job.swapped_at)]
        finally:
            runner.stop(wait=True)
        after = data_target.snapshot()  # the backup's rows: the swap happened
        assert after != before and len(after["orders"]) == 20 and len(before["orders"]) == 10
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        back_to_managed(app, data_target)


def test_a_swap_whose_mark_cannot_be_recorded_is_not_made_and_live_serves_on(app, runner, data_target, monkeypatch):
    """Review: the mark the undo's and the flags' guards read could fail to be written (Rewind's own database
    failing) and the swap went ahead unmarked. Now nothing is renamed: the app starts again on live, untouched.
    (The write's failure is stood in for here; JobContext's own test fails it for real.)"""
    from app.jobs.context import JobContext

    real = JobContext.swapped
    monkeypatch.setattr(JobContext, "swapped", lambda self, kept_as: False if kept_as else real(self, kept_as))
    name, before = _restore_after_a_change(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert "Rewind could not record the swap in its own database, so nothing was renamed" in job.result, job.result
    assert "staging was started again and is healthy" in job.result, job.result
    assert data_target.snapshot() == before  # live, untouched
    assert health(data_target.code)[0] == 200
    assert [c for c in copies(data_target) if "pre_restore" in c] == []  # nothing renamed


def test_a_restore_of_an_app_stopped_before_it_says_so_and_starts_it_only_to_verify(app, runner, data_target):
    """QA: production stopped from the Overview, then restored: the log said it kept serving and that downtime
    started at the stop. It was down all along; the restore starts it on the restored database, which verifies it."""
    name, _ = _restore_after_a_change(app, data_target)
    with app.app_context():
        engine(app).targets.open(data_target.name).process().stop()
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", text
    assert "staging is not running (it was stopped before this job); it is started on the restored database" in text
    assert "staging was not running: no downtime starts here" in text
    assert "staging is healthy: it serves again (it was not running before this job)" in text
    assert "staging keeps serving" not in text, text
    assert "is stopped: downtime starts" not in text and "downtime ends" not in text
    assert health(data_target.code)[0] == 200


def test_a_restore_that_fails_before_its_swap_leaves_an_app_stopped_before_it_stopped(app, runner, data_target):
    """Left as found: a failure before the swap starts the app again only if it ran before the job."""
    use_commands(app, data_target, stop=["/bin/false"])
    try:
        name, before = _restore_after_a_change(app, data_target)
        stopped = subprocess.run(ctl_argv(data_target, "stop"), capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stderr
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert job.state == "failed", log_text(view)
        assert "The live database was not touched; staging is left stopped, as it was before this job" in job.result
        assert data_target.snapshot() == before and copies(data_target) == []
        with pytest.raises(urllib.error.URLError):  # refused: not started, though the stop failed
            health(data_target.code)
    finally:
        back_to_managed(app, data_target)


@pytest.mark.parametrize("data_target", ["sqlite"], indirect=True)
def test_an_app_down_at_the_fill_and_serving_again_by_the_stop_is_started_again_when_the_stop_fails(
    app, runner, data_target, tmp_path
):
    """Review: whether the app ran was read once, as the fill began, and trusted at the stop, which can come hours
    later. A crashed app its supervisor brought back meanwhile was then left stopped, "as it was before this job".
    Here the status says "not running" until the restore's scratch copy exists, then asks the app."""
    live = Path(data_target.url.removeprefix("sqlite:///"))
    script = tmp_path / "status.py"
    script.write_text(
        "import glob, subprocess, sys\n"
        f"if not glob.glob({str(live) + '.restore_*'!r}):\n"
        "    print('not running')\n"
        "    sys.exit(3)\n"
        "sys.exit(subprocess.call(sys.argv[1:]))\n"
    )
    status = [sys.executable, str(script), *ctl_argv(data_target, "status")]
    use_commands(app, data_target, stop=["/bin/false"], status=status)
    try:
        name, before = _restore_after_a_change(app, data_target)
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        text = log_text(view)
        assert job.state == "failed", text
        assert "staging is not running (it was stopped before this job)" in text, "the fill's own look"
        assert "live database was not touched; staging was started again and is healthy" in job.result, job.result
        assert "left stopped" not in job.result
        assert data_target.snapshot() == before
        assert health(data_target.code)[0] == 200
    finally:
        back_to_managed(app, data_target)


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_cancel_while_live_and_restored_are_compared_drops_the_scratch_copy_and_says_so(app, runner, data_target):
    """QA: cancelled while the compare counted live (here, waiting on a table another session held locked), the job
    ended "Cancelled by … during “Stop the application”." and the filled scratch copy stayed beside live, unsaid."""
    name, before = _restore_after_a_change(app, data_target)
    live = Postgres(data_target.url, inherited_env()).name
    with psycopg.connect(data_target.url, autocommit=True) as holder, psycopg.connect(data_target.url) as watcher:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        with app.app_context():
            book = runbooks.get("restore_backup")
            job_id = service.enqueue(
                book, data_target.name, book.parse_params({"backup": name}, data_target.name), ADMIN
            ).id

        def waiting() -> bool:  # the compare's count of orders waits on the lock
            found = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                "AND query LIKE 'SELECT count(*)%%'",
                (live,),
            ).fetchone()[0]
            watcher.commit()
            return found > 0

        wait_for(waiting, timeout=60)
        with app.app_context():
            service.cancel(db.session.get(Job, job_id), Actor(None, "the on-call engineer"))
        time.sleep(2 * CANCEL_CHECK_S)  # the compare waits on past the job's next look at its cancel, as in use
        holder.execute("COMMIT")
    job, view = finished(app, job_id, timeout=120)
    assert job.state == "cancelled", log_text(view)
    scratch = re.search(r"the scratch copy (\S+),", log_text(view)).group(1)
    assert job.result == (
        "Cancelled by the on-call engineer during “Stop the application”. The live database was not touched and "
        f"{data_target.name} was not stopped; no pre-restore copy was made; the scratch copy {scratch} was dropped."
    ), job.result
    assert copies(data_target) == [] and data_target.snapshot() == before
    assert health(data_target.code)[0] == 200
