"""Scheduled backups: which targets are due, queued as the system actor like any other job.

Rewind's own scheduler (app.jobs.scheduler, beside every job runner) calls
`queue_due` every minute; `flask rewind backups due` calls the same function
from cron for those who turn the scheduler off (REWIND_SCHEDULER=0). A due
target gets one `backup` job (create, verify, then retention), run by the
runner, locked and audited like any job.

Every process that runs jobs ticks, so the decision is taken under the audit
chain-head lock that every enqueue takes: whether the target is busy and
whether a backup job was already queued for this due time are read and the
job is written in one transaction, in whichever process comes first. A
backup job that failed (or was cancelled or interrupted) is tried again one
interval after it was queued, not every minute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.audit.store import Actor, serialise
from app.backups.catalog import Catalog, now_utc
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import scheduler, service
from app.jobs.models import Job
from app.statuses import JobState
from app.targets import registry
from app.targets.config import TargetConfig

log = logging.getLogger(__name__)

QUEUED, NOT_DUE, DUE, BUSY, ALREADY = "queued", "not due", "due", "busy", "already queued"


@dataclass(frozen=True)
class Decision:
    """What the schedule did about one target, and why in words."""

    target: str
    action: str
    why: str
    job_id: int | None = None

    def __str__(self) -> str:
        if self.action == QUEUED:
            return f"{self.target}: queued backup job #{self.job_id} — {self.why}"
        if self.action in (BUSY, ALREADY):
            return f"{self.target}: due, not queued — {self.why}"
        return f"{self.target}: {self.action} — {self.why}"


def _newest(config: TargetConfig) -> datetime | None:
    newest = next((b for b in Catalog(config.backups.dir).backups() if not b.foreign and not b.of_copy), None)
    return newest.time if newest is not None else None


def is_due(config: TargetConfig, now: datetime) -> tuple[bool, str]:
    """Whether the target's next scheduled backup is due, and why in words."""
    backups = config.backups
    if backups is None or backups.interval_minutes is None:
        return False, "no schedule (backups.interval_minutes)"
    newest = _newest(config)
    if newest is None:
        return True, "no backup made by Rewind yet"
    age = now - newest
    if age >= timedelta(minutes=backups.interval_minutes):
        return True, f"the newest backup is {int(age.total_seconds() // 60)} min old"
    return False, f"the newest backup is {int(age.total_seconds() // 60)} min old"


def _due_since(config: TargetConfig, now: datetime) -> datetime:
    """From when a backup job counts as this due time's: due time itself, but no longer ago than one interval."""
    interval = timedelta(minutes=config.backups.interval_minutes)
    newest = _newest(config)
    since = now - interval if newest is None else max(newest + interval, now - interval)
    return since.replace(tzinfo=None)  # the job table keeps naive UTC (app.clock)


def queue_due(now: datetime | None = None, *, dry_run: bool = False, via: str = "schedule") -> list[Decision]:
    """For each due target, one backup job as the system actor, unless it is busy or one is queued for this due time.

    `via` is what the audit rows name as the door: the in-process scheduler, or `cli` for cron's `backups due`.
    """
    now = now or now_utc()
    decisions = []
    for config in registry.current().all():
        ready, why = is_due(config, now)
        if not ready:
            decisions.append(Decision(config.name, NOT_DUE, why))
        elif dry_run:
            decisions.append(Decision(config.name, DUE, why))
        else:
            decisions.append(_queue(config, now, why, via))
    return decisions


def _queue(config: TargetConfig, now: datetime, why: str, via: str) -> Decision:
    db.session.rollback()  # a fresh transaction: the lock below then sees every other process's commits
    serialise()  # held until the enqueue commits (or the rollback below): one decision at a time, in every process
    running = service.busy_job(config.name)
    if running is not None:
        db.session.rollback()
        return Decision(
            config.name, BUSY, f"{config.name} is busy: job #{running.id} ({running.runbook}) is {running.state}"
        )
    ready, now_why = is_due(config, now)  # again, under the lock: another process's backup may have just ended
    if not ready:
        db.session.rollback()
        return Decision(config.name, NOT_DUE, now_why)
    earlier = db.session.scalar(
        select(Job)
        .where(
            Job.target == config.name,
            Job.runbook == "backup",
            Job.created_at >= _due_since(config, now),
            Job.state != JobState.SUCCEEDED.value,  # one that succeeded made a backup: not due (checked above)
        )
        .order_by(Job.id.desc())
        .limit(1)
    )
    if earlier is not None:
        db.session.rollback()
        return Decision(
            config.name,
            ALREADY,
            f"backup job #{earlier.id} was queued for this due time ({earlier.state}); "
            f"a failed one is tried again {config.backups.interval_minutes} min after it was queued",
        )
    job = service.enqueue(runbooks.get("backup"), config.name, {}, Actor.system(), via=via)
    return Decision(config.name, QUEUED, why, job.id)


def run_scheduled() -> None:
    """The scheduler's task: queue what is due and log each decision that did or would have done something."""
    for decision in queue_due():
        if decision.action == QUEUED:
            log.info("scheduled backup: %s", decision)
        elif decision.action in (BUSY, ALREADY):
            log.info("scheduled backup skipped: %s", decision)


TASK = scheduler.register(scheduler.Task("backups.due", run_scheduled))
