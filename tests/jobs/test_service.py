"""Queueing, running, cancelling and interrupting jobs with the in-process runner."""

import re
import threading
from pathlib import Path

from sqlalchemy import select

from app.audit import store
from app.audit.models import AuditEvent
from app.audit.store import Actor
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.events import load_view
from app.jobs.models import Job
from tests.conftest import both_databases, wait_for
from tests.support.jobs import finished

OPERATOR = Actor(None, "opal")


def enqueue(app, name, target=None, **params):
    with app.app_context():
        book = runbooks.get(name)
        parsed = book.parse_params({k: str(v) for k, v in params.items()}, target)
        return service.enqueue(book, target, parsed, OPERATOR).id


def job_state(app, job_id):
    with app.app_context():
        job = db.session.get(Job, job_id)
        return job.state


def audit_actions(app, job_id):
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action.startswith("job."))).all()
        return [(e.action, e.outcome) for e in rows if f'"job_id":{job_id}' in e.details]


@both_databases
def test_job_runs_every_step_and_is_audited(app, runner):
    job_id = enqueue(app, "test.count", lines=7)
    job, view = finished(app, job_id)
    assert job.state == "succeeded" and job.result == "counted 7 lines"
    assert job.verification == "passed"
    assert [line for _, _, line in view.lines] == [f"line {i}" for i in range(1, 8)]
    assert [s.state for s in view.steps] == ["succeeded", "succeeded"]
    assert view.fraction == 1.0
    assert audit_actions(app, job_id) == [("job.queued", "ok"), ("job.start", "ok"), ("job.succeeded", "ok")]
    with app.app_context():
        assert store.verify().intact


def test_a_job_whose_steps_were_skipped_says_so_rather_than_all_steps_succeeded(app, runner):
    job, view = finished(app, enqueue(app, "test.nothing"))
    assert job.state == "succeeded" and [s.state for s in view.steps] == ["skipped"]
    assert job.result == "Succeeded: nothing to do — nothing older than 1 h."
    job, view = finished(app, enqueue(app, "test.partly"))
    assert [s.state for s in view.steps] == ["succeeded", "skipped"]
    assert job.result == "All steps succeeded or were skipped (“Tidy up” skipped: nothing older than 1 h)."
    job, _ = finished(app, enqueue(app, "test.count", lines=1))
    assert job.result == "counted 1 lines", "a result the runbook set stands"


def test_events_are_numbered_without_gaps(app, runner):
    job_id = enqueue(app, "test.count", lines=30)
    finished(app, job_id)
    with app.app_context():
        from app.jobs.models import JobEvent

        seqs = db.session.scalars(select(JobEvent.seq).filter_by(job_id=job_id).order_by(JobEvent.seq)).all()
    assert seqs == list(range(1, len(seqs) + 1))


def test_failed_command_fails_the_job_with_its_step_named(app, runner):
    job_id = enqueue(app, "test.fail")
    job, view = finished(app, job_id)
    assert job.state == "failed"
    assert "“Exit 3” failed" in job.result and "exited with status 3; it said: about to fail" in job.result
    assert [s.state for s in view.steps] == ["failed", "not_run"]
    assert ("err", "about to fail") in [(stream, line) for _, stream, line in view.lines]
    assert audit_actions(app, job_id)[-1] == ("job.failed", "failed")


def test_a_command_that_fails_without_a_word_is_told_with_the_command_to_run_masked(app, runner):
    job_id = enqueue(app, "test.mute")
    job, view = finished(app, job_id)
    assert job.state == "failed"
    assert job.result == (
        "“Exit 1 silently” failed: sh exited with status 1 and it printed nothing — run it by hand as Rewind's user, "
        "with the target's environment, to see why: `sh -c 'exit 1' sh --password •••`"
    ), job.result
    assert "mute-pw-77" not in job.result and "mute-pw-77" not in "\n".join(line for _, _, line in view.lines)


def test_secrets_never_reach_the_log(app, runner):
    job_id = enqueue(app, "test.secret")
    job, view = finished(app, job_id)
    text = "\n".join(line for _, _, line in view.lines)
    assert job.state == "succeeded"
    for secret in ("hunter2-pw", "open-sesame-42", "s3cr3t-env", "s3cr", "et-pw"):
        assert secret not in text
    assert "postgresql://app:•••@db.internal" in text


def test_busy_target_is_refused_naming_the_running_job(app, runner):
    first = enqueue(app, "test.sleep", target="staging", seconds=30)
    wait_for(lambda: job_state(app, first) == "running")
    try:
        enqueue(app, "test.sleep", target="staging", seconds=1)
    except service.BusyTarget as exc:
        assert f"job #{first}" in str(exc) and "staging is busy" in str(exc)
    else:
        raise AssertionError("a second job on a busy target was queued")
    other = enqueue(app, "test.sleep", target="production", seconds=0)  # another target is free
    read_only = enqueue(app, "test.count", lines=1)  # read-only runbooks run beside it
    assert finished(app, other)[0].state == "succeeded"
    assert finished(app, read_only)[0].state == "succeeded"
    with app.app_context():
        denied = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "job.queued", AuditEvent.outcome == "denied")
        ).all()
        assert len(denied) == 1 and f'"busy_job":{first}' in denied[0].details
        service.cancel(db.session.get(Job, first), OPERATOR)
    assert finished(app, first)[0].state == "cancelled"


def test_cancel_mid_step_terminates_the_child(app, runner):
    job_id = enqueue(app, "test.sleep", target="staging", seconds=60)

    def child_pid():
        with app.app_context():
            lines = [line for _, _, line in load_view(db.session.get(Job, job_id)).lines]
        return next((int(line.split()[-1]) for line in lines if line.startswith("child up")), None)

    pid = wait_for(child_pid)
    assert _alive(pid), "the step's child process should be running"
    with app.app_context():
        assert service.cancel(db.session.get(Job, job_id), Actor(None, "carol")) is False  # asked, not ended here
    job, view = finished(app, job_id)
    assert job.state == "cancelled"  # what the state says next cannot tell the two kinds of cancel apart
    assert job.result == "Cancelled by carol during “Sleep”."
    assert view.steps[0].state == "cancelled"
    wait_for(lambda: not _alive(pid), timeout=10)
    actions = audit_actions(app, job_id)
    assert ("job.cancel_requested", "ok") in actions and actions[-1] == ("job.cancelled", "ok")


def test_a_step_that_handles_a_cancel_runs_its_recovery_and_the_job_says_where_things_stand(app, runner):
    """A cancel that comes while a change cannot be cut short: the next step still runs, puts it right with a
    command the cancel does not stop, and the job ends cancelled saying what it did."""
    job_id = enqueue(app, "test.put_back")

    def changing():
        with app.app_context():
            return "changing, not cancellable" in [line for _, _, line in load_view(db.session.get(Job, job_id)).lines]

    wait_for(changing)
    with app.app_context():
        service.cancel(db.session.get(Job, job_id), Actor(None, "carol"))
    job, view = finished(app, job_id)
    assert job.state == "cancelled"
    assert job.result == (
        "Cancelled by carol during “Put back”. The change was put back."
        " Already done before that: half-changed the target."
    )
    assert [s.state for s in view.steps] == ["succeeded", "cancelled", "not_run"]
    assert "put back" in [line for _, _, line in view.lines]


@both_databases
def test_a_cancel_asked_of_a_running_job_is_an_event_every_watcher_is_shown(app, runner):
    """QA: the admin cancelled from their browser; the starter's page went on saying "running" and offering Cancel
    until the step stopped. The request is an event: every page watching (and `jobs show --follow`) says it."""
    from app.jobs.models import JobEvent
    from app.jobs.render import render_event, render_snapshot

    job_id = enqueue(app, "test.stubborn", target="staging", seconds=3)

    def child_up():
        with app.app_context():
            return any(line.startswith("child up") for _, _, line in load_view(db.session.get(Job, job_id)).lines)

    wait_for(child_up)
    with app.app_context():
        assert service.cancel(db.session.get(Job, job_id), Actor(None, "carol")) is False
        view = load_view(db.session.get(Job, job_id))
        event = db.session.scalars(select(JobEvent).filter_by(job_id=job_id, kind="cancel")).one()
        assert view.state == "running" and view.cancel_requested_by == "carol"
        live = render_event(load_view(db.session.get(Job, job_id), upto=event.seq), event)
        assert '<div id="job-actions" hx-swap-oob="outerHTML">' in live and "Cancelling: asked by carol" in live
        assert "Cancelling: asked by carol" in render_snapshot(view), "a page that reconnects says it too"
    job, view = finished(app, job_id)  # its shielded command runs out; the page then says the job has ended
    assert job.job_state.is_final
    with app.app_context():
        seqs = db.session.scalars(select(JobEvent.seq).filter_by(job_id=job_id).order_by(JobEvent.seq)).all()
    assert seqs == list(range(1, len(seqs) + 1)), "the job's own events after it go on from the cancel's number"


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_cancelling_a_queued_job_ends_it_at_once(app):
    job_id = enqueue(app, "test.count", lines=1)  # no runner: it stays queued
    with app.app_context():
        assert service.cancel(db.session.get(Job, job_id), OPERATOR) is True
        job = db.session.get(Job, job_id)
        assert job.state == "cancelled" and "before it started" in job.result
        try:
            service.cancel(job, OPERATOR)
        except service.NotCancellable as exc:
            assert re.search(r"already ended \(cancelled\)", str(exc))
        else:
            raise AssertionError("cancelling twice should be refused")


def found_running_at_start(app, worker: str, **columns):
    """A test.count job left `running` by `worker` (with these columns too), and what a runner starting up makes
    of it: (job, view)."""
    job_id = enqueue(app, "test.count", lines=1)
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.state, job.current_step, job.worker = "running", "Count", worker
        for name, value in columns.items():
            setattr(job, name, value)
        db.session.commit()
    from app.jobs.engine import engine

    runner = engine(app).start_runner()
    try:
        return finished(app, job_id)
    finally:
        runner.stop()


def test_running_job_found_at_start_is_interrupted_not_rerun(app):
    job, view = found_running_at_start(app, "gone:1")
    assert job.state == "interrupted"
    assert "during “Count”" in job.result and "not re-run" in job.result
    assert view.lines == [], "an interrupted job is never run again by itself"
    assert audit_actions(app, job.id)[-1] == ("job.interrupted", "failed")


def test_a_job_found_dead_says_what_it_had_already_changed(app):
    """A job whose process was killed after it changed its target (a deploy's merge) says so, not only its step."""
    job, _ = found_running_at_start(app, "gone:1", done="deployed qa/1 (0123abcd) to staging")
    assert job.state == "interrupted"
    assert "during “Count”. Already done before that: deployed qa/1 (0123abcd) to staging. It was not" in job.result


def test_a_job_that_cannot_be_finished_is_failed_not_left_running(app):
    from app.jobs.execution import fail_unfinished, mark_interrupted

    job_id = enqueue(app, "test.sleep", target="staging", seconds=1)
    with app.app_context():
        job = db.session.get(Job, job_id)
        job.state = "running"
        db.session.commit()
        fail_unfinished(job_id, "OperationalError: the database went away")
        job = db.session.get(Job, job_id)
        assert job.state == "failed" and "database went away" in job.result
        assert not mark_interrupted(job), "a finished job keeps its real outcome"
        assert service.busy_job("staging") is None, "the target is free again"
    assert audit_actions(app, job_id)[-1] == ("job.failed", "failed")


@both_databases
def test_a_queued_job_wakes_the_runner_instead_of_waiting_for_its_poll(app):
    """On PostgreSQL the wake-up is a NOTIFY, so it reaches runners in other processes too."""
    from app.jobs.runner import Runner

    runner = Runner(app, workers=1, poll_s=120).start()
    try:
        # A job queued before LISTEN is set up is found by the re-read that follows it, so the
        # first job only proves the runner listens; the second can then only be woken by its notice.
        first = enqueue(app, "test.count", lines=1)
        assert finished(app, first)[0].state == "succeeded"
        second = enqueue(app, "test.count", lines=2)
        job, _ = finished(app, second)
        assert job.state == "succeeded" and job.result == "counted 2 lines"
    finally:
        runner.stop()


@both_databases
def test_a_running_runner_marks_a_job_whose_process_died_interrupted_without_a_restart(app):
    """A sibling worker killed outright: its job read running on its page until some runner started again."""
    from app.jobs.runner import Runner

    runner = Runner(app, workers=1, poll_s=0.1, sweep_s=0.5).start()
    try:
        job_id = enqueue(app, "test.count", lines=1)
        assert finished(app, job_id)[0].state == "succeeded"
        with app.app_context():  # as a dead process leaves its job: running, and no lock behind it
            job = db.session.get(Job, job_id)
            job.state, job.current_step, job.worker, job.finished_at = "running", "Count", "gone:1", None
            db.session.commit()
        job, _ = finished(app, job_id, timeout=30)
    finally:
        runner.stop()
    assert job.state == "interrupted" and "during “Count”" in job.result
    assert ("job.interrupted", "failed") in audit_actions(app, job_id)


@both_databases
def test_a_job_of_this_very_process_that_no_thread_runs_is_still_marked_interrupted(app):
    """A live process is no proof for its own jobs: one whose thread ended without finishing it (the ops database
    down even for fail_unfinished) must not keep its target busy for as long as the process lives."""
    import os
    import socket

    from app.clock import utcnow
    from app.jobs.runner import Runner

    runner = Runner(app, workers=1, poll_s=0.1, sweep_s=0.5).start()
    try:
        job_id = enqueue(app, "test.count", lines=1)
        assert finished(app, job_id)[0].state == "succeeded"
        with app.app_context():  # as such a thread leaves its job: running, claimed by this process, no lock
            job = db.session.get(Job, job_id)
            job.state, job.current_step, job.finished_at = "running", "Count", None
            job.worker, job.started_at = f"{socket.gethostname()}:{os.getpid()}", utcnow()
            db.session.commit()
        job, _ = finished(app, job_id, timeout=30)
    finally:
        runner.stop()
    assert job.state == "interrupted" and "during “Count”" in job.result


@both_databases
def test_a_dead_job_of_another_host_signals_nothing_here_and_says_its_command_may_run_there(app):
    """Its process group's number was signalled on this host, where it names another process or none, and the log
    said the command "had already ended" while it may still run on the other host."""
    import subprocess
    import sys

    from app.targets.command import start_ticks

    local = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        job, view = found_running_at_start(
            app, "elsewhere:1", command_group=local.pid, command_started=start_ticks(local.pid)
        )
        assert job.state == "interrupted"
        assert local.poll() is None, "a process of this host was signalled"
        (line,) = [text for _, _, text in view.lines]
        assert f"process group {local.pid} on elsewhere" in line and "cannot be checked" in line, line
        assert "had already ended" not in line
    finally:
        local.kill()
        local.wait()


@both_databases
def test_a_dead_job_s_command_is_read_under_its_lock_not_from_an_earlier_look(app):
    """The job was looked at (a sweep's list, a busy check), then its process began its next command and died:
    that command, the one the row names once the job's lock is held, is the one stopped. The group read before
    the lock was stopped instead (or none), and the row's record of the live one was cleared, leaving it running."""
    import subprocess
    import sys

    from sqlalchemy import update

    from app.jobs.runner import interrupt_if_dead
    from app.targets.command import start_ticks

    job_id = enqueue(app, "test.count", lines=1)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        with app.app_context():
            from app.clock import utcnow

            job = db.session.get(Job, job_id)
            job.state, job.current_step, job.started_at = "running", "Count", utcnow()
            job.worker = f"{__import__('socket').gethostname()}:{gone.pid}"
            db.session.commit()
            job = db.session.get(Job, job_id)
            assert job.command_group is None  # the earlier look: no command yet
            with db.engine.begin() as other:  # its process, elsewhere: the next command starts, then it dies
                other.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(command_group=later.pid, command_started=start_ticks(later.pid))
                )
            # Reaped the moment it dies, as init reaps a dead Rewind's orphan: a zombie child of the test would
            # count as alive to the stop, which then waits out the whole grace and the SIGKILL's.
            reaper = threading.Thread(target=later.wait, daemon=True)
            reaper.start()
            assert interrupt_if_dead(app, job)
            db.session.commit()
        reaper.join(timeout=30)
        assert later.poll() is not None, "its command was stopped"
        with app.app_context():
            lines = [text for _, _, text in load_view(db.session.get(Job, job_id)).lines]
        assert f"stopped the command (process group {later.pid}) that the stopped Rewind process left running" in (
            lines
        )
    finally:
        later.kill()
        later.wait()
