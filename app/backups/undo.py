"""Whether a finished restore can still be undone, so its own job page can offer the undo the Backups tab has.

A restore's result names the pre-restore copy it kept. The offer stands while
that copy is still there as a pre-restore copy: an undo renames it back to
live and the cleanup drops it, and either way the name leaves the copy list.
Once an undo has put it back, the page says so, with that job: its result
("… now runs on …, undo puts it back") is no longer how the target stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.backups.expiry import saved
from app.backups.restore import Copy, copies
from app.backups.setup import setup_of
from app.extensions import db
from app.jobs import swaps
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.swaps import Swap
from app.statuses import JobState
from app.targets.errors import TargetError
from app.targets.registry import UnknownTarget
from app.targets.target import Target


@dataclass(frozen=True)
class UndoOffer:
    target: Target
    pre_restore: str  # the name of the copy undo puts back
    until: datetime  # when it expires (backups.keep_copies_hours): then the scheduler backs it up and drops it
    hours: int
    saved: bool  # a verified backup holds its rows already
    later: Swap | None = None  # a swap made since (a later restore or undo): the undo goes back past it too


@dataclass(frozen=True)
class Undone:
    """A restore an undo has taken back: the undo job put the pre-restore copy back as live (its mark is on it)."""

    target: str
    pre_restore: str
    job_id: int
    at: datetime  # when the undo renamed it back (naive UTC, as the job table keeps it)
    kept_as: str | None  # the name the undo kept the restored database under


def undo_offer(job: Job) -> UndoOffer | Undone | None:
    """The undo a succeeded restore job still allows; the undo that already took it back; or None (not a
    restore, or its copy is gone)."""
    if job.runbook != "restore_backup" or job.job_state is not JobState.SUCCEEDED or not job.target or not job.result:
        return None
    try:
        target = current_targets().open(job.target)
        kept = copies(setup_of(target))
    except (TargetError, UnknownTarget, OSError):
        return None  # the Backups tab says what is wrong; the job page just offers nothing
    for copy in kept:
        if copy.kind == "pre_restore" and copy.name in job.result:
            return _offer(target, copy)
    return undone_by(job)


def undone_by(job: Job) -> Undone | None:
    """The undo that put this restore's pre-restore copy back as live, if one did."""
    undo = undo_of(job.target, job.swapped_out) if job.swapped_out else None
    if undo is None:
        return None
    return Undone(job.target, job.swapped_out, undo.id, undo.swapped_at, undo.swapped_out)


def undo_of(target: str | None, copy: str) -> Job | None:
    """The undo job that put this pre-restore copy back as live (it swapped it in: its mark is on the job), if any.
    A copy's name carries the second it was made, so one undo at most can have put it back."""
    undos = db.session.scalars(
        select(Job)
        .where(Job.target == target, Job.runbook == "undo_restore", Job.swapped_at.is_not(None))
        .order_by(Job.id.desc())
        .limit(50)
    )
    return next((undo for undo in undos if undo.params.get("pre_restore") == copy), None)


def _offer(target: Target, copy: Copy) -> UndoOffer | None:
    """How long undo stays possible, and whether the copy's rows would outlive it: what to decide next."""
    hours = target.config.backups.keep_copies_hours
    try:
        held = copy.name in saved(setup_of(target).catalog)
    except (TargetError, OSError):
        return None
    later = swapped_since(target.name, [copy]).get(copy.name)
    return UndoOffer(target, copy.name, copy.time + timedelta(hours=hours), hours, held, later)


def unseen_swap(target: str, copy: Copy, seen: int | None) -> Swap | None:
    """The swap an undo of `copy` would go back past without the person having been told of it: the newest swap
    whose job began after the copy was made, unless it is the one they saw (`seen`, its job id, as the Backups tab
    drew it into the undo form and its question)."""
    later = swapped_since(target, [copy]).get(copy.name)
    return later if later is not None and later.job_id != seen else None


def swapped_since(target: str, kept: list[Copy]) -> dict[str, Swap]:
    """For each pre-restore copy, the newest swap whose job began after it was made (a later restore or undo), if
    any: undo of such a copy takes live back past that swap too, which the Backups tab says before it is asked. From
    the jobs, so a swap whose own copy is gone (dropped, or an empty one made in place of a missing live), or whose
    job failed or was killed after renaming, still counts."""
    newest = swaps.since(target, newest_only=True)
    last = newest[0] if newest else None
    if last is None:
        return {}
    # the job table keeps naive UTC
    return {c.name: last for c in kept if c.kind == "pre_restore" and last.after(c.name, c.time.replace(tzinfo=None))}
