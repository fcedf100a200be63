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

The job is queued through app.jobs.system_jobs.queue_once, as `queue_due`
does, so several processes ticking at once queue one job. A job of this
kind that did not succeed is tried again an hour after it was queued, not
every minute.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.backups.catalog import Backup, Catalog, now_utc
from app.backups.restore import Copy, copies
from app.backups.setup import setup_of
from app.extensions import db
from app.jobs import scheduler, system_jobs
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.statuses import JobState
from app.targets.config import TargetConfig
from app.targets.errors import TargetError

log = logging.getLogger(__name__)

QUEUED, BUSY, ALREADY = system_jobs.QUEUED, system_jobs.BUSY, system_jobs.ALREADY
NOTHING, UNREADABLE = "nothing expired", "unreadable"
SAVED_KINDS = ("pre_restore", "undone")  # copies that may hold rows no backup has
RETRY = timedelta(hours=1)
RUNBOOKS = ("backup_copy", "cleanup_restores")
FAILED_STATES = {JobState.FAILED.value, JobState.INTERRUPTED.value, JobState.CANCELLED.value}


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
    return {name for name, backup in backups_of_copies(catalog.backups()).items() if backup.state.is_verified}


def backups_of_copies(backups: Iterable[Backup]) -> dict[str, Backup]:
    """Each copy a backup was made of, with that backup: the newest verified one, else the newest, so a page can
    say which backup holds a copy or why none does yet (only a verified one counts, as in `saved`)."""
    made = sorted((b for b in backups if b.of_copy), key=lambda b: (b.state.is_verified, b.key))
    return {b.manifest["copy"]: b for b in made}  # the last of each copy wins: verified, then newest


def plan(config: TargetConfig, now: datetime) -> tuple[str, dict, str] | None:
    """The one job the target's expired copies need now (runbook, params, why), or None when none expired."""
    setup = setup_of(current_targets().open(config.name))
    hours = config.backups.keep_copies_hours
    expired = [c for c in copies(setup) if c.time < now - timedelta(hours=hours)]
    if not expired:
        return None
    kept = saved(setup.catalog)
    unsaved: list[Copy] = [c for c in expired if c.kind in SAVED_KINDS and c.name not in kept]
    # A copy whose own backup failed last time (a damaged file, say) must not hold up the others: they go first,
    # and it is tried again (hourly, as ever) once only it is left.
    failing = _backup_failed(config.name, {c.name for c in unsaved})
    tryable = [c for c in unsaved if c.name not in failing]
    others = [c for c in expired if c not in unsaved]
    if tryable or (unsaved and not others):
        oldest = (tryable or unsaved)[-1]  # copies() is newest first
        why = f"{oldest.name} is older than {hours} h (backups.keep_copies_hours) and no backup holds it yet"
        return "backup_copy", {"copy": oldest.name}, why
    names = ", ".join(c.name for c in expired)
    # The target's own setting drops them (keep_copies_hours), so the scheduler confirms by its name.
    params = {"older_than_hours": hours, "spare_unsaved": "yes", "confirm": config.name}
    return "cleanup_restores", params, f"older than {hours} h: {names}"


def _backup_failed(target: str, names: set[str]) -> set[str]:
    """The copies among `names` whose newest backup_copy job did not succeed."""
    if not names:
        return set()
    rows = db.session.execute(
        select(Job.params_json, Job.state)
        .where(Job.target == target, Job.runbook == "backup_copy")
        .order_by(Job.id.desc())
    ).all()
    seen: dict[str, str] = {}
    for params, state in rows:
        copy = json.loads(params or "{}").get("copy")
        if copy in names:
            seen.setdefault(copy, state)
    return {copy for copy, state in seen.items() if state in FAILED_STATES}


def queue_expired(now: datetime | None = None, *, via: str = "schedule") -> list[Decision]:
    """For each target with expired restore copies, one job as the system actor (see the module's docstring)."""
    now = now or now_utc()
    decisions = []
    for config in current_targets().all():
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

    def need() -> system_jobs.Need | str:
        found = plan(config, now)  # again, under the lock: another process's job may have just ended
        if found is None:
            return "the expired copies are gone"
        name, params, why = found
        return system_jobs.Need(
            name,
            params,
            why,
            since=(now - RETRY).replace(tzinfo=None),  # the job table keeps naive UTC
            occasion="this within the hour",
            retry="one that did not succeed is tried again an hour after it was queued",
            system_only=True,
        )

    outcome = system_jobs.queue_once(config.name, need, via=via)
    action = {system_jobs.GONE: NOTHING}.get(outcome.action, outcome.action)
    return Decision(config.name, action, outcome.why, outcome.job_id, outcome.runbook)


def run_scheduled() -> None:
    """The scheduler's task: queue what expired copies need; log what was done or held back."""
    for decision in queue_expired():
        if decision.action == QUEUED:
            log.info("expired restore copies: %s", decision)
        elif decision.action in (BUSY, ALREADY, UNREADABLE):
            log.info("expired restore copies, nothing queued: %s", decision)


TASK = scheduler.register(scheduler.Task("backups.expired_copies", run_scheduled))
