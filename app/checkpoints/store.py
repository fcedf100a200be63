"""Recording checkpoints, and which commits proved good, in the ops database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from app.audit import store as audit
from app.audit.store import Actor
from app.checkpoints.models import Checkpoint, KnownGood
from app.clock import utcnow
from app.extensions import db

# How many recent known-good marks to try when looking for one still on the branch.
KNOWN_GOOD_LOOKBACK = 50
# A checkpoint's reason is what it was taken before (a runbook's title), or this and what it was taken after.
AFTER = "after: "


def moment_of(reason: str) -> str:
    """When a checkpoint was taken, in words: before “Revert commits”, after “Restore a backup”."""
    if reason.startswith(AFTER):
        return f"after “{reason.removeprefix(AFTER)}”"
    return f"before “{reason}”"


def record(
    target: str, job_id: int | None, reason: str, captures: dict[str, Any], actor: Actor | None = None
) -> Checkpoint:
    """Keep the checkpoint, with its audit row (the target's timeline lists it), in one transaction."""
    code = captures.get("code")
    checkpoint = Checkpoint(
        target=target,
        job_id=job_id,
        reason=reason[:128],
        commit=code.get("commit") if isinstance(code, dict) else None,
        captures_json=json.dumps(captures, sort_keys=True, default=str),
    )
    db.session.add(checkpoint)
    db.session.flush()
    audit.record(
        "checkpoints.record",
        actor=actor or Actor.system(),
        target=target,
        details={"checkpoint_id": checkpoint.id, "job_id": job_id, "reason": reason[:128], "commit": checkpoint.commit},
    )
    db.session.commit()
    return checkpoint


def mark_known_good(
    target: str, commit: str, job_id: int | None, *, why: str | None = None, actor: Actor | None = None
) -> None:
    """Remember a verified commit; verifying it again makes it the newest.

    `why` given, the mark is audited with it (`checkpoints.known_good`), in the same commit: the target's timeline
    lists known-good marks from the audit log, so a mark without one would not be there."""
    if why is not None:
        details = {"commit": commit, "why": why, **({"job_id": job_id} if job_id is not None else {})}
        audit.record("checkpoints.known_good", actor=actor or Actor.system(), target=target, details=details)
    row = db.session.scalar(select(KnownGood).filter_by(target=target, commit=commit))
    if row is None:
        db.session.add(KnownGood(target=target, commit=commit, job_id=job_id))
    else:
        row.marked_at, row.job_id = utcnow(), job_id
    db.session.commit()


def known_good(target: str) -> dict[str, KnownGood]:
    rows = db.session.scalars(select(KnownGood).filter_by(target=target)).all()
    return {row.commit: row for row in rows}


def last_known_good(target: str, on_branch: Callable[[str], bool]) -> KnownGood | None:
    """The most recently verified commit that is still on the deployed branch.

    on_branch(commit) says whether the branch contains it: a commit a reset
    removed (kept only by its safety tag) is not a place to roll back to.
    """
    rows = db.session.scalars(
        select(KnownGood)
        .filter_by(target=target)
        .order_by(KnownGood.marked_at.desc(), KnownGood.id.desc())
        .limit(KNOWN_GOOD_LOOKBACK)
    )
    return next((row for row in rows if on_branch(row.commit)), None)


def newest_known_good(target: str) -> KnownGood | None:
    """The most recently verified commit, on the branch or not (a reset may have removed it since)."""
    return db.session.scalar(
        select(KnownGood).filter_by(target=target).order_by(KnownGood.marked_at.desc(), KnownGood.id.desc()).limit(1)
    )


def recent(target: str, limit: int = 20) -> list[Checkpoint]:
    return list(
        db.session.scalars(select(Checkpoint).filter_by(target=target).order_by(Checkpoint.id.desc()).limit(limit))
    )
