"""Jobs that put another database in a target's live one's place (Runbook.replaces_database: a restore, its undo).

After such a swap the live rows carry the stamps of the database swapped in, and a copy of the database kept from
before it is no longer what live was just before: the flags' restore plans and the Backups tab's undo both ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs.models import Job
from app.statuses import JobState


@dataclass(frozen=True)
class Swap:
    """A job that put another database in the target's live one's place (Runbook.replaces_database)."""

    job_id: int
    started: datetime
    finished: datetime


def since(target: str, moment: datetime | None = None, *, newest_only: bool = False) -> list[Swap]:
    """Such jobs that ended after the moment (one running across it counts: it may have swapped after), oldest
    first; `newest_only`: the last one alone."""
    names = [b.name for b in runbooks.all_runbooks() if b.replaces_database]
    if not names:
        return []
    # Succeeded, or succeeded with warnings (its swap made and verified, a follow-up such as the record after it
    # failed: just when no checkpoint says what the swap brought).
    done = [JobState.SUCCEEDED.value, JobState.WARNING.value]
    query = select(Job.id, Job.started_at, Job.finished_at).where(
        Job.target == target, Job.runbook.in_(names), Job.state.in_(done)
    )
    if moment is not None:
        query = query.where(Job.finished_at > moment)
    query = query.order_by(Job.finished_at.desc()).limit(1) if newest_only else query.order_by(Job.started_at)
    return [Swap(*row) for row in db.session.execute(query).all() if row[1] is not None and row[2] is not None]
