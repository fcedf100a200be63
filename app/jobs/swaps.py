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
    """A job that put another database in the target's live one's place (times in naive UTC, as the job table);
    `kept_as`: the name it kept the replaced database under (None for swaps recorded before Rewind kept it)."""

    job_id: int
    started: datetime
    at: datetime
    kept_as: str | None

    def after(self, copy_name: str, copy_time: datetime) -> bool:
        """Whether this swap came after the copy was made (naive UTC, whole seconds as copy names keep it).

        A copy is named at its job's check step, before that job swaps: its own swap is told by the name it kept
        live under; for a swap recorded without it, by its job's start, in whole seconds as the name's stamp."""
        if self.kept_as is not None:
            return self.kept_as != copy_name and self.at > copy_time
        return self.started.replace(microsecond=0) > copy_time


def since(target: str, moment: datetime | None = None, *, newest_only: bool = False) -> list[Swap]:
    """Swaps made after the moment, oldest first; `newest_only`: the last one alone."""
    columns = (Job.id, Job.started_at, Job.swapped_at, Job.swapped_out)
    query = select(*columns).where(Job.target == target, Job.swapped_at.is_not(None))
    if moment is not None:
        query = query.where(Job.swapped_at > moment)
    query = query.order_by(Job.swapped_at.desc()).limit(1) if newest_only else query.order_by(Job.swapped_at)
    return [Swap(*row) for row in db.session.execute(query).all()]
