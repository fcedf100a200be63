"""Jobs Rewind queues by itself (its scheduler's tasks, cron's `backups due`): one per need, however many processes.

Every process that runs jobs ticks its scheduler, so the decision is taken
under the audit chain-head lock that every enqueue takes: whether the target
is busy, whether the need still stands, and whether a job for it was already
queued are read, and the job written, in one transaction, by whichever
process comes first. A job for the need that did not succeed is tried again
once its `since` has moved past it, not at every tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.audit.store import Actor, serialise
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.models import Job
from app.statuses import JobState

QUEUED, BUSY, ALREADY, GONE = "queued", "busy", "already queued", "gone"


@dataclass(frozen=True)
class Need:
    """One job a target needs now, and which earlier jobs already stand for it."""

    runbook: str
    params: Mapping[str, object]
    why: str
    since: datetime  # naive UTC, as the job table keeps it: a job queued since then that did not succeed stands
    occasion: str  # "this due time": what that earlier job was queued for, in words
    retry: str  # when one that did not succeed is tried again, in words
    system_only: bool = False  # only the system's own earlier jobs stand for it


@dataclass(frozen=True)
class Outcome:
    action: str
    why: str
    job_id: int | None = None
    runbook: str | None = None


def queue_once(target: str, need: Callable[[], Need | str], *, via: str) -> Outcome:
    """Queue the job `need()` names as the system actor, unless the target is busy or one already stands for it.

    `need` is asked under the lock (another process's job may have just ended)
    and returns the Need, or in words why nothing is needed any more.
    """
    db.session.rollback()  # a fresh transaction: the lock below then sees every other process's commits
    serialise()  # held until the enqueue commits (or a rollback below): one decision at a time, in every process
    running = service.live_busy_job(target)
    if running is not None:
        db.session.rollback()
        return Outcome(BUSY, f"{target} is busy: job #{running.id} ({running.runbook}) is {running.state}")
    found = need()
    if isinstance(found, str):
        db.session.rollback()
        return Outcome(GONE, found)
    query = select(Job).where(
        Job.target == target,
        Job.runbook == found.runbook,
        Job.created_at >= found.since,
        Job.state != JobState.SUCCEEDED.value,
    )
    if found.system_only:
        query = query.where(Job.actor_name == Actor.system().name, Job.actor_id.is_(None))
    earlier = db.session.scalar(query.order_by(Job.id.desc()).limit(1))
    if earlier is not None:
        db.session.rollback()
        return Outcome(
            ALREADY,
            f"{found.runbook} job #{earlier.id} was queued for {found.occasion} ({earlier.state}); {found.retry}",
        )
    book = runbooks.get(found.runbook)
    try:
        checked = book.parse_params({k: str(v) for k, v in found.params.items()}, target)
    except runbooks.ParamError as exc:  # e.g. a copy dropped by hand since the need was read
        db.session.rollback()
        return Outcome(GONE, str(exc))
    job = service.enqueue(book, target, checked, Actor.system(), via=via)
    return Outcome(QUEUED, found.why, job.id, found.runbook)
