"""What Rewind remembers about a target's past states: checkpoints and known-good commits."""

from __future__ import annotations

import json

from app.clock import utcnow
from app.extensions import db


class Checkpoint(db.Model):
    """A target as it was just before Rewind changed it, so the whole can be put back as one unit.

    `captures` holds one entry per area that registered a capture (code:
    the commit; schema: the revision; flags: their states …). An area whose
    capture failed has {"error": "…"}; an area missing from the dict was not
    known when the checkpoint was taken — never read either as "none".
    """

    __tablename__ = "checkpoint"
    __table_args__ = (db.Index("ix_checkpoint_target_id", "target", "id"),)

    id = db.Column(db.Integer, primary_key=True)
    target = db.Column(db.String(64), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    job_id = db.Column(db.Integer, db.ForeignKey("job.id"), nullable=True)
    reason = db.Column(db.String(128), nullable=False)
    commit = db.Column(db.String(40), nullable=True)  # the code capture, kept as a column for listing
    captures_json = db.Column("captures", db.Text, nullable=False, default="{}")

    @property
    def captures(self) -> dict:
        return json.loads(self.captures_json or "{}")


class KnownGood(db.Model):
    """A commit that passed verification on a target; marked_at moves to the newest verification."""

    __tablename__ = "known_good"
    __table_args__ = (db.UniqueConstraint("target", "commit", name="uq_known_good_target_commit"),)

    id = db.Column(db.Integer, primary_key=True)
    target = db.Column(db.String(64), nullable=False)
    commit = db.Column(db.String(40), nullable=False)
    job_id = db.Column(db.Integer, db.ForeignKey("job.id"), nullable=True)
    marked_at = db.Column(db.DateTime, nullable=False, default=utcnow)
