"""Restore copies past `backups.keep_copies_hours`: backed up if they hold rows no backup has, then dropped.

Rewind's scheduler calls `queue_expired` every minute (beside `queue_due`);
`flask rewind backups due` calls it too, for cron. A target with expired
copies gets one job as the system actor, audited and locked like any job:

- a pre-restore or undone copy that no backup holds is backed up first
  (`backup_copy`): it has the rows written before the restore (or between
  the restore and its undo), which no other backup may have. The configured
  time bounds how long undo is offered, never whether those rows survive;
- once every expired copy of those kinds is backed up, `cleanup_restores`
  drops the expired copies, told to spare any copy still without a backup
  (one that expired between this decision and the job's run).

So the newest pre-restore copy is treated like the others: undo is offered
for `keep_copies_hours`, as configured, and after that the copy's rows live
on in its backup (restorable from the Backups tab) rather than on disk.

The decision is taken under the audit chain-head lock every enqueue takes,
as `queue_due` does, so several processes ticking at once queue one job. A
job of this kind that did not succeed is tried again an hour after it was
queued, not every minute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.audit.store import Actor, serialise
from app.backups.catalog import Catalog, now_utc
from app.backups.restore import Copy, copies
from app.backups.setup import setup_of
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import scheduler, service
from app.jobs.models import Job
from app.statuses import JobState
from app.targets import registry
from app.targets.config import TargetConfig
from app.targets.errors import TargetError

log = logging.getLogger(__name__)

QUEUED, NOTHING, BUSY, ALREADY, UNREADABLE = "queued", "nothing expired", "busy", "already queued", "unreadable"
SAVED_KINDS = ("pre_restore", "undone")  # copies that may hold rows no backup has
RETRY = timedelta(hours=1)
RUNBOOKS = ("backup_copy", "cleanup_restores")


@dataclass(frozen=True)
class Decision:
    target: str
    action: str
    why: str
    job_id: int | None = None
    runbook: str | None = None

    def __str__(self) -> str:
        if self.action == QUEUED:
            return f"{self.target}: queued {self.runbook} job #{self.job_id} — {self.why}"
        return f"{self.target}: {self.action} — {self.why}"


def saved(catalog: Catalog) -> set[str]:
    """The copies a verified backup holds (made by `backup_copy`)."""
    return {b.manifest["copy"] for b in catalog.backups() if b.of_copy and b.state == "verified"}


def plan(config: TargetConfig, now: datetime) -> tuple[str, dict, str] | None:
    """The one job the target's expired copies need now (runbook, params, why), or None when none expired."""
    setup = setup_of(registry.current().open(config.name))
    hours = config.backups.keep_copies_hours
    expired = [c for c in copies(setup) if c.time < now - timedelta(hours=hours)]
    if not expired:
        return None
    kept = saved(setup.catalog)
    unsaved: list[Copy] = [c for c in expired if c.kind in SAVED_KINDS and c.name not in kept]
    if unsaved:
        oldest = unsaved[-1]  # copies() is newest first
        why = f"{oldest.name} is older than {hours} h (backups.keep_copies_hours) and no backup holds it yet"
        return "backup_copy", {"copy": oldest.name}, why
    names = ", ".join(c.name for c in expired)
    return "cleanup_restores", {"older_than_hours": hours, "spare_unsaved": "yes"}, f"older than {hours} h: {names}"


def queue_expired(now: datetime | None = None, *, via: str = "schedule") -> list[Decision]:
    """For each target with expired restore copies, one job as the system actor (see the module's docstring)."""
    now = now or now_utc()
    decisions = []
    for config in registry.current().all():
        if config.backups is None or config.database is None:
            continue
        try:
            decisions.append(_queue(config, now, via))
        except (TargetError, OSError) as exc:
            db.session.rollback()
            decisions.append(Decision(config.name, UNREADABLE, getattr(exc, "message", str(exc))))
    return decisions


def _queue(config: TargetConfig, now: datetime, via: str) -> Decision:
    if plan(config, now) is None:  # the common case, read without the lock
        return Decision(config.name, NOTHING, f"no restore copy older than {config.backups.keep_copies_hours} h")
    db.session.rollback()  # a fresh transaction: the lock below then sees every other process's commits
    serialise()  # held until the enqueue commits (or a rollback below): one decision at a time, in every process
    running = service.busy_job(config.name)
    if running is not None:
        db.session.rollback()
        return Decision(
            config.name, BUSY, f"{config.name} is busy: job #{running.id} ({running.runbook}) is {running.state}"
        )
    found = plan(config, now)  # again, under the lock: another process's job may have just ended
    if found is None:
        db.session.rollback()
        return Decision(config.name, NOTHING, "the expired copies are gone")
    name, params, why = found
    earlier = db.session.scalar(
        select(Job)
        .where(
            Job.target == config.name,
            Job.runbook == name,
            Job.actor_name == Actor.system().name,
            Job.actor_id.is_(None),
            Job.created_at >= (now - RETRY).replace(tzinfo=None),  # the job table keeps naive UTC
            Job.state != JobState.SUCCEEDED.value,
        )
        .order_by(Job.id.desc())
        .limit(1)
    )
    if earlier is not None:
        db.session.rollback()
        return Decision(
            config.name,
            ALREADY,
            f"{name} job #{earlier.id} was queued for this within the hour ({earlier.state}); "
            f"one that did not succeed is tried again an hour after it was queued",
        )
    book = runbooks.get(name)
    try:
        checked = book.parse_params({k: str(v) for k, v in params.items()}, config.name)
    except runbooks.ParamError as exc:  # e.g. the copy was dropped by hand since the plan was read
        db.session.rollback()
        return Decision(config.name, NOTHING, str(exc))
    job = service.enqueue(book, config.name, checked, Actor.system(), via=via)
    return Decision(config.name, QUEUED, why, job.id, name)


def run_scheduled() -> None:
    """The scheduler's task: queue what expired copies need; log what was done or held back."""
    for decision in queue_expired():
        if decision.action == QUEUED:
            log.info("expired restore copies: %s", decision)
        elif decision.action in (BUSY, ALREADY, UNREADABLE):
            log.info("expired restore copies, nothing queued: %s", decision)


TASK = scheduler.register(scheduler.Task("backups.expired_copies", run_scheduled))
