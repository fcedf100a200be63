"""Scheduled backups: which targets are due, queued as the system actor like any other job.

Rewind's own scheduler (app.jobs.scheduler, beside every job runner) calls
`queue_due` every minute; `flask rewind backups due` calls the same function
from cron for those who turn the scheduler off (REWIND_SCHEDULER=0). A due
target gets one `backup` job (create, verify, then retention), run by the
runner, locked and audited like any job.

Every process that runs jobs ticks, so the job is queued through
app.jobs.system_jobs.queue_once: one per due time, whichever process comes
first. A backup job that failed (or was cancelled or interrupted) is tried
again one interval after it was queued, not every minute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.backups.catalog import now_utc
from app.backups.setup import catalog_for
from app.jobs import scheduler, system_jobs
from app.jobs.engine import current_targets
from app.targets.config import TargetConfig
from app.targets.errors import TargetError

log = logging.getLogger(__name__)

QUEUED, BUSY, ALREADY = system_jobs.QUEUED, system_jobs.BUSY, system_jobs.ALREADY
NOT_DUE, DUE = "not due", "due"
UNKNOWN = "cannot tell"  # the backup folder cannot be read: whether a backup is due is unknown, none is queued


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
    newest = next((b for b in catalog_for(config).backups() if not b.foreign and not b.of_copy), None)
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
    for config in current_targets().all():
        try:
            ready, why = is_due(config, now)
        except TargetError as exc:  # one target's unreadable folder must not stop the others' schedule
            decisions.append(Decision(config.name, UNKNOWN, exc.in_words()))
            continue
        if not ready:
            decisions.append(Decision(config.name, NOT_DUE, why))
        elif dry_run:
            decisions.append(Decision(config.name, DUE, why))
        else:
            decisions.append(_queue(config, now, why, via))
    return decisions


def _queue(config: TargetConfig, now: datetime, why: str, via: str) -> Decision:
    def need() -> system_jobs.Need | str:
        ready, now_why = is_due(config, now)  # again, under the lock: another process's backup may have just ended
        if not ready:
            return now_why
        return system_jobs.Need(
            "backup",
            {},
            why,
            since=_due_since(config, now),  # one that succeeded made a backup: not due (checked above)
            occasion="this due time",
            retry=f"a failed one is tried again {config.backups.interval_minutes} min after it was queued",
        )

    outcome = system_jobs.queue_once(config.name, need, via=via)
    action = {system_jobs.GONE: NOT_DUE}.get(outcome.action, outcome.action)
    return Decision(config.name, action, outcome.why, outcome.job_id)


def run_scheduled() -> None:
    """The scheduler's task: queue what is due and log each decision that did or would have done something."""
    for decision in queue_due():
        if decision.action == QUEUED:
            log.info("scheduled backup: %s", decision)
        elif decision.action in (BUSY, ALREADY):
            log.info("scheduled backup skipped: %s", decision)
        elif decision.action == UNKNOWN:
            log.warning("scheduled backup not checked: %s", decision)


TASK = scheduler.register(scheduler.Task("backups.due", run_scheduled))
