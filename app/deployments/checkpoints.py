"""Recording what a target was before Rewind changes it, and which commits proved good."""

from __future__ import annotations

from sqlalchemy import select

from app.deployments.models import Checkpoint, KnownGood
from app.extensions import db


def record_checkpoint(target: str, job_id: int | None, reason: str, commit: str | None) -> Checkpoint:
    checkpoint = Checkpoint(target=target, job_id=job_id, reason=reason, commit=commit)
    db.session.add(checkpoint)
    db.session.commit()
    return checkpoint


def mark_known_good(target: str, commit: str, job_id: int | None) -> None:
    exists = db.session.scalar(select(KnownGood.id).filter_by(target=target, commit=commit))
    if exists is None:
        db.session.add(KnownGood(target=target, commit=commit, job_id=job_id))
        db.session.commit()


def known_good(target: str) -> dict[str, KnownGood]:
    rows = db.session.scalars(select(KnownGood).filter_by(target=target)).all()
    return {row.commit: row for row in rows}


def last_known_good(target: str) -> KnownGood | None:
    return db.session.scalar(select(KnownGood).filter_by(target=target).order_by(KnownGood.id.desc()).limit(1))


def recent_checkpoints(target: str, limit: int = 20) -> list[Checkpoint]:
    return list(
        db.session.scalars(select(Checkpoint).filter_by(target=target).order_by(Checkpoint.id.desc()).limit(limit))
    )
