"""Swaps are read from `Job.swapped_at`, whatever state the job ended in; migration 0011 fills it for old rows."""

from datetime import datetime, timedelta

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from app.extensions import db
from app.jobs import swaps
from app.jobs.models import Job
from app.migrating import enable
from tests.support.apps import build_app

T0 = datetime(2026, 11, 1, 12, 0, 0)


def _job(target: str, state: str, swapped: datetime | None, runbook: str = "restore_backup") -> int:
    job = Job(runbook=runbook, target=target, mutates=True, actor_name="admin", state=state)
    job.started_at = (swapped or T0) - timedelta(minutes=5)
    job.swapped_at = swapped
    job.finished_at = (swapped or T0) + timedelta(minutes=1)
    db.session.add(job)
    db.session.commit()
    return job.id


def test_a_swap_counts_whatever_state_its_job_ended_in_and_only_when_it_renamed(app):
    with app.app_context():
        ok = _job("shop", "succeeded", T0)
        killed = _job("shop", "interrupted", T0 + timedelta(hours=1))  # killed after the rename: live is the copy
        failed = _job("shop", "failed", T0 + timedelta(hours=2))  # swap back failed too: counted, to be safe
        _job("shop", "failed", None)  # failed before the rename, or swapped back: live is what it was
        _job("shop", "succeeded", None, runbook="backup")
        _job("other", "succeeded", T0 + timedelta(hours=3))
        assert [s.job_id for s in swaps.since("shop")] == [ok, killed, failed]
        assert [s.job_id for s in swaps.since("shop", newest_only=True)] == [failed]
        assert [s.job_id for s in swaps.since("shop", T0 + timedelta(minutes=30))] == [killed, failed]
        (last,) = swaps.since("shop", T0 + timedelta(hours=1, minutes=30))
        assert last.at == T0 + timedelta(hours=2) and last.started == T0 + timedelta(hours=1, minutes=55)
        assert swaps.since("shop", T0 + timedelta(hours=2)) == []  # a swap at the moment itself is not after it
        assert swaps.since("nowhere") == []


def test_a_copy_is_older_than_a_swap_unless_that_swap_made_it_to_the_second():
    """A copy's name keeps whole seconds of its job's check step, before that job swaps: the swap that kept live
    under that very name is not "after" it; another is when made later. Swaps recorded without the name (before
    migration 0011) are told by their job's start, in whole seconds."""
    made = datetime(2026, 11, 27, 16, 15, 22)
    own = swaps.Swap(
        2, made.replace(microsecond=500_000), made + timedelta(seconds=3), "shop_pre_restore_20261127161522"
    )
    assert not own.after("shop_pre_restore_20261127161522", made)
    later = swaps.Swap(3, made + timedelta(seconds=30), made + timedelta(seconds=40), "shop_pre_restore_20261127161552")
    assert later.after("shop_pre_restore_20261127161522", made)
    assert not later.after("shop_pre_restore_20261127161622", made + timedelta(minutes=1))  # a copy made after it
    legacy = swaps.Swap(4, made.replace(microsecond=500_000), made + timedelta(seconds=3), None)
    assert not legacy.after("shop_pre_restore_20261127161522", made)  # the started second is the copy's
    assert legacy.after("shop_pre_restore_20261127161521", made - timedelta(seconds=1))


def test_migration_0011_marks_restores_and_undos_that_ended_well_as_swapped_at_their_end(tmp_path):
    """Their swap came somewhere in their run: a moment inside it must still count the swap as after it."""
    app = build_app(tmp_path / "instance", f"sqlite:///{tmp_path / 'ops.db'}")
    enable(app)
    with app.app_context():
        upgrade(revision="0010_job_standing")
        rows = [
            (1, "restore_backup", "succeeded"),
            (2, "undo_restore", "warning"),
            (3, "restore_backup", "failed"),
            (4, "backup", "succeeded"),
            (5, "undo_restore", "queued"),
        ]
        for job_id, runbook, state in rows:
            started = None if state == "queued" else f"2026-11-0{job_id} 10:00:00.000000"
            ended = None if state == "queued" else f"2026-11-0{job_id} 10:05:00.000000"
            db.session.execute(
                text(
                    "INSERT INTO job (id, runbook, target, params, mutates, actor_name, state, created_at, started_at, "
                    "finished_at, verification) "
                    "VALUES (:id, :rb, 'shop', '{}', 1, 'admin', :st, '2026-11-01 09:00:00', :s, :e, 'none')"
                ),
                {"id": job_id, "rb": runbook, "st": state, "s": started, "e": ended},
            )
        db.session.commit()
        upgrade()
        marked = db.session.execute(text("SELECT id, swapped_at FROM job WHERE swapped_at IS NOT NULL ORDER BY id"))
        assert [(r[0], str(r[1])[:19]) for r in marked] == [(1, "2026-11-01 10:05:00"), (2, "2026-11-02 10:05:00")]
        assert [s.job_id for s in swaps.since("shop")] == [1, 2]
        inside = datetime(2026, 11, 1, 10, 2)  # during job 1's run: its swap may have come after
        assert [s.job_id for s in swaps.since("shop", inside)] == [1, 2]
        downgrade(revision="0010_job_standing")
        assert "swapped_at" not in {c["name"] for c in inspect(db.engine).get_columns("job")}
        db.session.remove()
        db.engine.dispose()


def test_a_swap_mark_that_cannot_be_written_never_stops_the_job_and_its_log_says_so(app):
    """The mark is written with the application stopped mid-swap: a failure of Rewind's own database there (here
    its job table gone for a moment) must not keep the swap or the start after it from happening."""
    from app.jobs.context import JobContext
    from app.jobs.engine import engine
    from app.jobs.events import EventWriter
    from app.jobs.redact import Redactor

    with app.app_context():
        job_id = _job("shop", "running", None)
        job = db.session.get(Job, job_id)
        writer = EventWriter(job_id, engine().bus)
        ctx = JobContext(job, writer, Redactor(), "Restore a backup")
        db.session.execute(text("ALTER TABLE job RENAME TO job_away"))
        db.session.commit()
        try:
            ctx.swapped("shop_pre_restore_20261127120000")  # returns: nothing raised
            ctx.standing("shop is stopped and its database was being swapped")
        finally:
            db.session.execute(text("ALTER TABLE job_away RENAME TO job"))
            db.session.commit()
        lines = [line for _, line in writer._lines]
        assert lines == [
            "! Rewind could not record that live is now the database it swapped in (kept "
            "shop_pre_restore_20261127120000) in its own database (OperationalError)",
            "! Rewind could not record where things stand in its own database (OperationalError)",
        ]
        assert db.session.get(Job, job_id).swapped_at is None  # nothing half-written
        ctx.swapped("shop_pre_restore_20261127120000")  # and once it can be written, it is
        assert db.session.get(Job, job_id).swapped_out == "shop_pre_restore_20261127120000"
