"""What Rewind remembers about a target's code: checkpoints and known-good commits."""

from __future__ import annotations

import json

from app.clock import utcnow
from app.extensions import db


class Checkpoint(db.Model):
    """A target as it was just before Rewind changed it, so the whole can be put back as one unit.

    Fields other areas fill (migration revision, newest verified backup, env
    version, flag states) stay empty until those areas record them; an empty
    field means "not known", never "none".
    """

    __tablename__ = "checkpoint"
    __table_args__ = (db.Index("ix_checkpoint_target_id", "target", "id"),)

    id = db.Column(db.Integer, primary_key=True)
    target = db.Column(db.String(64), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    job_id = db.Column(db.Integer, db.ForeignKey("job.id"), nullable=True)
    reason = db.Column(db.String(128), nullable=False)
    commit = db.Column(db.String(40), nullable=True)
    migration_revision = db.Column(db.String(64), nullable=True)
    backup = db.Column(db.String(255), nullable=True)
    env_version = db.Column(db.String(64), nullable=True)
    flags_json = db.Column("flags", db.Text, nullable=True)

    @property
    def flags(self) -> dict | None:
        return json.loads(self.flags_json) if self.flags_json else None


class KnownGood(db.Model):
    """A commit that passed verification on a target after a deploy or rollback."""

    __tablename__ = "known_good"
    __table_args__ = (db.UniqueConstraint("target", "commit", name="uq_known_good_target_commit"),)

    id = db.Column(db.Integer, primary_key=True)
    target = db.Column(db.String(64), nullable=False)
    commit = db.Column(db.String(40), nullable=False)
    job_id = db.Column(db.Integer, db.ForeignKey("job.id"), nullable=True)
    marked_at = db.Column(db.DateTime, nullable=False, default=utcnow)
