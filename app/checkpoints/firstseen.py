"""The first known-good mark of a target Rewind has never verified: its deployed commit, once seen healthy.

Without it, a target that has run fine since before Rewind was installed reads
"Last known good: none recorded yet" until someone happens to run a job.
Marks only when the target has no mark at all and no job is changing it, so
a later verification (health, smoke and schema) stays the only way to move it.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.audit.store import serialise
from app.checkpoints import store
from app.checkpoints.models import KnownGood
from app.extensions import db
from app.targets.errors import TargetError

log = logging.getLogger(__name__)


def mark_first_healthy(target, reading) -> bool:
    """A health-monitor listener; returns whether it marked a commit."""
    if reading.probe is None or not reading.probe.ok:
        return False
    from app.jobs.service import busy_job  # the monitor starts before the job machinery is imported

    try:
        if _has_mark(target.name):
            return False
        db.session.rollback()  # a fresh transaction that takes the lock first (SQLite cannot upgrade a stale read)
        serialise()  # held until commit: two checkers at once (several workers) mark once
        if _has_mark(target.name) or busy_job(target.name) is not None:
            return False  # a deploy may be half-way: what answered is not necessarily what is checked out
        try:
            repo = target.git()
            head, drift = repo.head(), repo.checkout_drift()
        except TargetError as exc:
            log.info("not marking %s known good: %s", target.name, exc)
            return False
        if drift:
            log.info("not marking %s known good: %s", target.name, drift)
            return False
        store.mark_known_good(target.name, head, None, why="healthy when Rewind first checked it")
        return True
    finally:
        db.session.remove()  # the monitor's thread keeps no transaction open between passes


def _has_mark(target: str) -> bool:
    return db.session.scalar(select(KnownGood.id).filter_by(target=target).limit(1)) is not None
