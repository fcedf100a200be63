"""A target's backups at a glance: the newest verified backup's age against the RPO, the last restore test."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.backups.catalog import Backup, now_utc
from app.extensions import db
from app.jobs.models import Job

FUTURE_SLACK = timedelta(minutes=1)  # clocks a few seconds apart are not worth a word


def ahead_of(when: datetime, now: datetime) -> timedelta | None:
    """How far a backup's time is after now (past FUTURE_SLACK): a clock is wrong here or where it was made."""
    ahead = when - now
    return ahead if ahead > FUTURE_SLACK else None


def future_words(ahead: timedelta) -> str:
    """'dated 61 min in the future: check the clocks …': what a future time means and what to do."""
    minutes = -(-int(ahead.total_seconds()) // 60)
    span = f"{minutes} min" if minutes < 120 else ago(ahead)
    return f"dated {span} in the future: check the clocks of this host and the one that made it"


@dataclass(frozen=True)
class Freshness:
    # The newest verified backup not dated in the future: the age and the RPO's verdict are its. One dated in the
    # future (a clock skew) is of unknown age, proves no recent backup, and must not hide a real recent one.
    newest_verified: Backup | None
    rpo: timedelta | None
    last_restore_tested: Backup | None
    now: datetime
    # The newest verified backup dated in the future, if any: said apart, as a warning about the clocks.
    future_verified: Backup | None = None

    @property
    def ahead(self) -> timedelta | None:
        """How far the future-dated verified backup is dated after now (a clock skew), or None when there is none."""
        return None if self.future_verified is None else ahead_of(self.future_verified.time, self.now)

    @property
    def age(self) -> timedelta | None:
        """The newest verified backup's age (not one dated in the future: its age is unknown, not 0 min); None when
        there is none."""
        return None if self.newest_verified is None else self.now - self.newest_verified.time

    @property
    def future_note(self) -> str | None:
        ahead = self.ahead
        return future_words(ahead) if ahead is not None else None

    @property
    def age_unknown(self) -> bool:
        """The only verified backups are dated in the future: one exists, of an age nobody knows."""
        return self.newest_verified is None and self.future_verified is not None

    @property
    def late(self) -> bool:
        """True when the RPO is set and no verified backup is known to be recent enough (one dated in the future
        is of unknown age: no proof of a recent backup)."""
        if self.rpo is None:
            return False
        return self.age is None or self.age > self.rpo


def freshness(backups: list[Backup], rpo_minutes: int | None) -> Freshness:
    """From a listing already read (Catalog.backups() or .listing().backups): a page reads its folder once."""
    # Its latest restore test passed, and nothing checked since failed (a corrupted file fails a quick verify).
    tested = [b for b in backups if (b.restore_tested or {}).get("ok") is True and b.state.is_verified]
    now = now_utc()
    # As catalog.newest_verified (newest first; a restore copy's backup is not "known good"), apart by the clock.
    verified = [b for b in backups if b.state.is_verified and not b.of_copy]
    return Freshness(
        newest_verified=next((b for b in verified if ahead_of(b.time, now) is None), None),
        rpo=timedelta(minutes=rpo_minutes) if rpo_minutes else None,
        last_restore_tested=max(tested, key=lambda b: b.restore_tested["at"]) if tested else None,
        now=now,
        future_verified=next((b for b in verified if ahead_of(b.time, now) is not None), None),
    )


def ago(delta: timedelta | None) -> str:
    """An age in the words a page shows: "4 min", "3 h", "2 d"."""
    if delta is None:
        return "never"
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def jobs_on_record(target: str, ids: Iterable[int]) -> set[int]:
    """Which of the jobs the manifests name are jobs of this target in Rewind's records (one query for a page).

    A manifest's job may be gone (a new ops database), or be another Rewind's (a folder copied from another host):
    the page links only the jobs it can show.
    """
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return set()
    return set(db.session.scalars(select(Job.id).where(Job.id.in_(wanted), Job.target == target)))
