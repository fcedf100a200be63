"""Rewind's own backup schedule: due targets get one backup job as the system actor, audited, locked, pruned."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.audit.store import Actor
from app.backups import schedule
from app.backups.catalog import manifest_path, now_utc
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.engine import engine
from app.jobs.models import Job
from app.jobs.scheduler import Scheduler
from tests.backups.test_runbooks import backup_now
from tests.conftest import both_databases, wait_for
from tests.deployments.test_runbooks import log_text
from tests.jobs.test_cli import flask_env
from tests.support.jobs import finished
from tests.support.server import REPO
from tests.support.targets import write_targets_file
from tests.support.threads import all_at_once

SCHEDULE = "interval_minutes = 60\nkeep_last = 1\nkeep_daily_days = 0"


def backup_jobs(app) -> list[Job]:
    with app.app_context():
        jobs = db.session.scalars(select(Job).where(Job.runbook == "backup").order_by(Job.id)).all()
        for job in jobs:
            db.session.expunge(job)
        return jobs


def tick(app) -> None:
    Scheduler(app, only=[schedule.TASK]).tick()


def age_backup(target, name: str, hours: int) -> None:
    """Make a backup look older than it is (its manifest says when it was made)."""
    path = manifest_path(target.backup_dir / name)
    manifest = json.loads(path.read_text())
    manifest["time"] = (now_utc() - timedelta(hours=hours)).isoformat()
    path.write_text(json.dumps(manifest))


def finish(app, job_id: int) -> Job:
    return finished(app, job_id, timeout=90)[0]


def test_a_due_target_gets_one_job_as_the_system_audited_then_retention(app, runner, data_target):
    old = backup_now(app, data_target)
    age_backup(data_target, old, hours=3)
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    runner.stop(wait=True)  # the job stays queued while the scheduler ticks again
    before = len(backup_jobs(app))

    tick(app)
    tick(app)  # a minute later, or another process: the job queued for this due time is enough

    (job,) = backup_jobs(app)[before:]
    assert (job.actor_name, job.actor_id, job.state) == ("system", None, "queued")
    with app.app_context():
        queued = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "job.queued")).all()
        (row,) = [r for r in queued if json.loads(r.details).get("job_id") == job.id]
        assert (row.actor_name, row.target, json.loads(row.details)["via"]) == ("system", data_target.name, "schedule")
    again = engine(app).start_runner()
    try:
        done = finish(app, job.id)
    finally:
        again.stop(wait=True)
    assert (done.state, done.verification) == ("succeeded", "passed"), done.result
    left = [p.name for p in data_target.backup_dir.glob("*.gpg")]
    assert old not in left and len(left) == 1  # keep_last = 1: the scheduled backup's job pruned the older one
    assert f"deleted {old}" in _job_log(app, job.id)


def _job_log(app, job_id: int) -> str:
    from app.jobs.events import load_view

    with app.app_context():
        return log_text(load_view(db.session.get(Job, job_id)))


def test_a_target_not_due_gets_no_job(app, runner, data_target):
    backup_now(app, data_target)
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    before = len(backup_jobs(app))
    tick(app)
    assert len(backup_jobs(app)) == before
    with app.app_context():
        (decision,) = [d for d in schedule.queue_due() if d.target == data_target.name]
    assert decision.action == schedule.NOT_DUE and "0 min old" in decision.why


def test_a_busy_target_is_skipped_with_a_log_line(app, data_target, caplog):
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    with app.app_context():
        busy = service.enqueue(runbooks.get("test.sleep"), data_target.name, {"seconds": 1}, Actor(None, "oncall")).id
    with caplog.at_level(logging.INFO, logger="app.backups.schedule"):
        tick(app)
    assert backup_jobs(app) == []
    name = data_target.name
    assert f"scheduled backup skipped: {name}: due, not queued — {name} is busy: " in caplog.text
    assert f"job #{busy} (test.sleep) is queued" in caplog.text
    with app.app_context():
        denied = db.session.scalars(select(AuditEvent).where(AuditEvent.outcome == "denied")).all()
        assert denied == []  # a skip every minute is a log line, not an audit row


@both_databases
def test_a_job_whose_process_died_does_not_keep_the_schedule_off_its_target(app, data_target):
    """A job left running by a killed process (no lock behind it) made every tick skip the target as busy."""
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    with app.app_context():
        dead = service.enqueue(runbooks.get("test.sleep"), data_target.name, {"seconds": 1}, Actor(None, "oncall"))
        dead.state, dead.current_step, dead.worker = "running", "Sleep", "gone:1"
        dead_id = dead.id
        db.session.commit()
    tick(app)
    (job,) = backup_jobs(app)
    assert (job.actor_name, job.state) == ("system", "queued")
    with app.app_context():
        assert db.session.get(Job, dead_id).state == "interrupted"


@both_databases
def test_two_schedulers_racing_queue_one_backup(app, data_target):
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    assert all_at_once(lambda _: tick(app), 2) == []
    assert len(backup_jobs(app)) == 1


@both_databases
def test_two_processes_racing_queue_one_backup(app, data_target):
    """Two `flask rewind backups due` at once (as two workers' schedulers would be): one job, one 'busy'."""
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    env = flask_env(app)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "flask", "rewind", "backups", "due"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    (job,) = backup_jobs(app)
    said = "\n".join(outputs)
    assert said.count(f"{data_target.name}: queued backup job #{job.id}") == 1, said
    assert said.count(f"{data_target.name}: due, not queued") == 1, said


def test_a_failed_scheduled_backup_is_tried_again_one_interval_later_not_every_minute(app, runner, data_target):
    write_targets_file(app, data_target.toml(extra=SCHEDULE).replace('recipients = ["', 'recipients = ["nobody-'))
    tick(app)
    (job,) = backup_jobs(app)
    assert finish(app, job.id).state == "failed"
    tick(app)
    assert len(backup_jobs(app)) == 1
    with app.app_context():
        (decision,) = schedule.queue_due(now_utc())
        assert decision.action == schedule.ALREADY and f"job #{job.id}" in decision.why
        (later,) = schedule.queue_due(now_utc() + timedelta(minutes=61))
    assert later.action == schedule.QUEUED
    assert len(backup_jobs(app)) == 2


def test_the_engine_starts_the_scheduler_with_the_runner_and_it_ends_with_it(app, data_target):
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    rewind = engine(app)
    rewind.settings = dataclasses.replace(rewind.settings, scheduler=True)
    runner = rewind.start_runner()
    try:
        wait_for(lambda: len(backup_jobs(app)) == 1, timeout=30)  # the first tick is at start
        (job,) = backup_jobs(app)
        assert finish(app, job.id).state == "succeeded"
    finally:
        runner.stop(wait=True)
    wait_for(lambda: not rewind.scheduler.running, timeout=10)


def test_with_the_scheduler_off_the_runner_runs_none(app, data_target):
    write_targets_file(app, data_target.toml(extra=SCHEDULE))
    rewind = engine(app)
    assert rewind.settings.scheduler is False  # the test apps turn it off, as REWIND_SCHEDULER=0 does
    runner = rewind.start_runner()
    try:
        assert rewind.scheduler is None
    finally:
        runner.stop(wait=True)
