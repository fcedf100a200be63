"""Restore copies past backups.keep_copies_hours: backed up when no backup holds them, then dropped, by the system."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.backups import expiry
from app.backups.catalog import now_utc
from app.extensions import db
from app.jobs.engine import engine
from app.jobs.models import Job
from app.jobs.scheduler import Scheduler
from tests.backups.test_runbooks import copies, copy_url
from tests.backups.test_schedule import finish
from tests.conftest import both_databases
from tests.deployments.test_runbooks import log_text, run
from tests.support.threads import all_at_once


def tick(app) -> None:
    Scheduler(app, only=[expiry.TASK]).tick()


def make_copy(target, kind: str, hours_old: float, pg_server=None) -> str:
    """A restore copy of the live database, as a restore `hours_old` hours ago would have left it."""
    stamp = (now_utc() - timedelta(hours=hours_old)).strftime("%Y%m%d%H%M%S")
    if target.engine == "sqlite":
        live = Path(target.url.removeprefix("sqlite:///"))
        name = f"{live.name}.{kind}_{stamp}"
        shutil.copy(live, live.with_name(name))
        return name
    live = target.url.rsplit("/", 1)[1]
    name = f"{live}_{kind}_{stamp}"
    pg_server.create_database(name, template=live)
    return name


def jobs(app, runbook: str) -> list[Job]:
    with app.app_context():
        found = db.session.scalars(select(Job).where(Job.runbook == runbook).order_by(Job.id)).all()
        for job in found:
            db.session.expunge(job)
        return found


def copy_server(request, target):
    return request.getfixturevalue("pg_server") if target.engine == "postgresql" else None


def test_an_expired_backed_up_copy_gets_one_cleanup_by_the_system_audited(app, runner, data_target, request):
    server = copy_server(request, data_target)
    old = make_copy(data_target, "pre_restore", 30, server)
    saved, view = run(app, "backup_copy", data_target.name, copy=old)
    assert saved.state == "succeeded", log_text(view)
    fresh = make_copy(data_target, "undone", 1, server)  # within its 24 h: untouched, saved or not
    live = data_target.snapshot()
    runner.stop(wait=True)  # the job stays queued while the scheduler ticks again

    tick(app)
    tick(app)  # a minute later, or another process: the queued job is enough

    (job,) = jobs(app, "cleanup_restores")
    assert (job.actor_name, job.actor_id, job.state) == ("system", None, "queued")
    assert job.params == {"older_than_hours": 24, "spare_unsaved": "yes", "confirm": data_target.name}
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "job.queued")).all()
        (row,) = [r for r in rows if json.loads(r.details).get("job_id") == job.id]
        assert (row.actor_name, row.target, json.loads(row.details)["via"]) == ("system", data_target.name, "schedule")
    again = engine(app).start_runner()
    try:
        done = finish(app, job.id)
    finally:
        again.stop(wait=True)
    assert done.state == "succeeded", done.result
    assert copies(data_target) == [fresh]
    assert data_target.snapshot() == live
    tick(app)  # nothing expired any more
    assert len(jobs(app, "cleanup_restores")) == 1


def test_fresh_copies_get_no_job(app, runner, data_target, request):
    make_copy(data_target, "pre_restore", 23, copy_server(request, data_target))
    make_copy(data_target, "restore", 0, copy_server(request, data_target))
    tick(app)
    assert jobs(app, "cleanup_restores") == [] and jobs(app, "backup_copy") == []
    with app.app_context():
        (decision,) = [d for d in expiry.queue_expired() if d.target == data_target.name]
    assert decision.action == expiry.NOTHING


def test_an_expired_pre_restore_copy_no_backup_holds_is_backed_up_before_it_is_dropped(
    app, runner, data_target, request
):
    """Its rows may be in no backup: the system backs it up first, then the next tick drops it."""
    server = copy_server(request, data_target)
    data_target.execute('INSERT INTO "user" VALUES (?, ?, ?)', (100, "late", "2099-01-01 00:00:00+00"))
    old = make_copy(data_target, "pre_restore", 48, server)
    scratch = make_copy(data_target, "restore", 48, server)  # a scratch copy holds only a backup's rows
    tick(app)
    (backup,) = jobs(app, "backup_copy")
    assert (backup.actor_name, backup.params) == ("system", {"copy": old})
    assert jobs(app, "cleanup_restores") == []
    assert finish(app, backup.id).state == "succeeded"
    (made,) = [json.loads(p.read_text()) for p in data_target.backup_dir.glob("*.json")]
    assert made["copy"] == old and made["counts"]["user"] == 21

    tick(app)
    (cleanup,) = jobs(app, "cleanup_restores")
    assert finish(app, cleanup.id).state == "succeeded"
    assert copies(data_target) == []
    assert scratch not in copies(data_target)


def test_a_failed_automatic_backup_keeps_the_copy_and_is_not_retried_every_minute(app, runner, data_target, request):
    from tests.support.targets import write_targets_file

    old = make_copy(data_target, "pre_restore", 48, copy_server(request, data_target))
    write_targets_file(app, data_target.toml().replace('recipients = ["', 'recipients = ["nobody-'))
    tick(app)
    (job,) = jobs(app, "backup_copy")
    assert finish(app, job.id).state == "failed"
    tick(app)
    assert len(jobs(app, "backup_copy")) == 1 and jobs(app, "cleanup_restores") == []
    with app.app_context():
        (decision,) = [d for d in expiry.queue_expired() if d.target == data_target.name]
        assert decision.action == expiry.ALREADY and f"job #{job.id}" in decision.why
    assert copies(data_target) == [old]  # never dropped while no backup holds it


def test_the_cleanup_keeps_copies_no_backup_holds_unless_told_to_drop_them(app, runner, data_target, request):
    """The button asks only for an age: a pre-restore copy no backup holds (rows written after the backup) stays."""
    server = copy_server(request, data_target)
    unsaved = make_copy(data_target, "pre_restore", 2, server)
    scratch = make_copy(data_target, "restore", 2, server)
    job, view = run(app, "cleanup_restores", data_target.name, older_than_hours=1)
    assert job.state == "succeeded", log_text(view)
    assert f"kept {unsaved}: no backup holds it yet" in log_text(view)
    # the dropped copies named, not only counted (QA: "Dropped 2 restore copies older than 0 h; kept a, b, c, d: no
    # backup holds it yet" left a person to read the log to know whether the copy an undo needs was gone)
    assert f"Dropped 1 restore copy older than 1 h ({scratch}); kept {unsaved}: no backup holds it yet" in job.result
    assert copies(data_target) == [unsaved] and scratch not in copies(data_target)
    assert data_target.snapshot(copy_url(data_target, unsaved)) == data_target.snapshot()

    dropped, view = run(app, "cleanup_restores", data_target.name, older_than_hours=1, spare_unsaved="no")
    assert dropped.state == "succeeded" and f"dropped {unsaved}" in log_text(view), log_text(view)
    assert copies(data_target) == []

    spared = sorted(make_copy(data_target, kind, 2, server) for kind in ("pre_restore", "undone"))
    kept, _ = run(app, "cleanup_restores", data_target.name, older_than_hours=1)
    assert sorted(copies(data_target)) == spared
    assert "no backup holds them yet" in kept.result and "holds it" not in kept.result, kept.result


@both_databases
def test_two_schedulers_racing_queue_one_job(app, data_target, request):
    make_copy(data_target, "restore", 30, copy_server(request, data_target))
    assert all_at_once(lambda _: tick(app), 2) == []
    assert len(jobs(app, "cleanup_restores")) == 1


def test_a_copy_whose_backup_fails_does_not_hold_up_the_cleanup_of_the_others(app, runner, data_target, request):
    """A damaged copy cannot be backed up; every hour its backup was planned first, failed, and no other expired
    copy was ever dropped. The others now go; it is kept, and tried again once only it is left."""
    server = copy_server(request, data_target)
    stuck = make_copy(data_target, "pre_restore", 50, server)
    scratch = make_copy(data_target, "restore", 49, server)
    with app.app_context():  # its backup failed (on SQLite, as a file that is no database fails)
        job = Job(runbook="backup_copy", target=data_target.name, mutates=False, actor_name="system", state="failed")
        job.params_json = json.dumps({"copy": stuck})
        db.session.add(job)
        db.session.commit()
        config = registry_config(data_target.name)
        assert expiry.plan(config, now_utc())[0] == "cleanup_restores"
    tick(app)
    (cleanup,) = jobs(app, "cleanup_restores")
    assert finish(app, cleanup.id).state == "succeeded"
    assert copies(data_target) == [stuck]  # the scratch went; the copy no backup holds stays
    with app.app_context():
        assert expiry.plan(registry_config(data_target.name), now_utc())[:2] == ("backup_copy", {"copy": stuck})
    assert scratch not in copies(data_target)


def registry_config(name: str):
    from app.jobs.engine import current_targets

    return current_targets().config(name)
