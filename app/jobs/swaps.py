"""Jobs that put another database in a target's live one's place (a restore, its undo): `Job.swapped_at`.

After such a swap the live rows carry the stamps of the database swapped in, and a copy of the database kept from
before it is no longer what live was just before: the flags' restore plans and the Backups tab's undo both ask.
The mark is made at the rename and cleared only by a swap back, so a job that failed or was killed after renaming
still counts, whatever state it ended in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.jobs.models import Job


@dataclass(frozen=True)
class Swap:
    """A job that put another database in the target's live one's place (times in naive UTC, as the job table).

    `at` is the swap itself; `started`, the job's start, comes before every copy the job made (they are named at
    its check step), so a copy is older than a swap only when older than its job.
    """

    job_id: int
    started: datetime
    at: datetime


def since(target: str, moment: datetime | None = None, *, newest_only: bool = False) -> list[Swap]:
    """Swaps made after the moment, oldest first; `newest_only`: the last one alone."""
    query = select(Job.id, Job.started_at, Job.swapped_at).where(Job.target == target, Job.swapped_at.is_not(None))
    if moment is not None:
        query = query.where(Job.swapped_at > moment)
    query = query.order_by(Job.swapped_at.desc()).limit(1) if newest_only else query.order_by(Job.swapped_at)
    return [Swap(*row) for row in db.session.execute(query).all()]
