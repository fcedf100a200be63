"""The append-only audit table and the one-row lock that serialises its chain head."""

from __future__ import annotations

from sqlalchemy import event

from app.audit import chain
from app.extensions import db


class AuditEvent(db.Model):
    __tablename__ = "audit_event"
    __table_args__ = (
        db.Index("ix_audit_event_action_id", "action", "id"),
        db.Index("ix_audit_event_actor_id", "actor_name", "id"),
        db.Index("ix_audit_event_target_id", "target", "id"),
        db.Index("ix_audit_event_outcome_id", "outcome", "id"),
        db.Index("ix_audit_event_ts", "ts"),
        db.Index("ix_audit_event_job_id", "job_id", "id"),
    )

    # Ids are handed out under the head lock, one after another, so a gap means a removed row.
    id = db.Column(db.Integer, primary_key=True, autoincrement=False)
    ts = db.Column(db.DateTime, nullable=False)
    actor_id = db.Column(db.Integer, nullable=True)
    actor_name = db.Column(db.String(64), nullable=False)
    action = db.Column(db.String(64), nullable=False)
    target = db.Column(db.String(128), nullable=True)
    details = db.Column(db.Text, nullable=False, default="{}")
    outcome = db.Column(db.String(16), nullable=False)
    address = db.Column(db.String(64), nullable=True)
    user_agent = db.Column(db.String(256), nullable=True)
    prev_hash = db.Column(db.String(64), nullable=False)
    hash = db.Column(db.String(64), nullable=False)
    # The job a row is about, copied from its details by record(): the job page finds its rows by index.
    # Outside the hash (details already carry it), so rows written before the column still verify.
    job_id = db.Column(db.Integer, nullable=True)

    def chain_values(self) -> tuple:
        return tuple(getattr(self, name) for name in chain.FIELDS)


class AuditHead(db.Model):
    """Row 1 is locked by every writer (UPDATE first), which orders writers on SQLite and PostgreSQL alike."""

    __tablename__ = "audit_head"

    id = db.Column(db.Integer, primary_key=True, autoincrement=False)
    last_id = db.Column(db.Integer, nullable=False, default=0)
    last_hash = db.Column(db.String(64), nullable=False, default=chain.GENESIS)


class AuditMark(db.Model):
    """Row 1: the newest row a check found intact, sealed with the audit key, so the next check starts there.

    Someone with only database access can delete or roll back the mark (the next check then walks more),
    but cannot move it forward: the seal would not match.
    """

    __tablename__ = "audit_mark"

    id = db.Column(db.Integer, primary_key=True, autoincrement=False)
    row_id = db.Column(db.Integer, nullable=False, default=0)
    row_hash = db.Column(db.String(64), nullable=False, default=chain.GENESIS)
    sealed_at = db.Column(db.DateTime, nullable=True)
    seal = db.Column(db.String(64), nullable=False, default="")
    # The last full walk: the row it found intact up to and when, sealed apart from the mark (the mark also moves on
    # the web's checks, which read only new rows). When it found a break, the break's row and words too: the badge
    # says so until a later full walk finds the chain intact, whatever the rows read since.
    full_row_id = db.Column(db.Integer, nullable=True)
    full_at = db.Column(db.DateTime, nullable=True)
    full_seal = db.Column(db.String(64), nullable=True)
    full_break_row = db.Column(db.Integer, nullable=True)
    full_break = db.Column(db.String(512), nullable=True)


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _refuse_rewrite(mapper, connection, target) -> None:
    raise RuntimeError(f"audit rows are append-only; refused to rewrite row {target.id}")
