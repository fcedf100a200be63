"""Jobs and their events: the persisted truth that pages and websockets are rebuilt from."""

from __future__ import annotations

import json

from app.clock import utcnow
from app.extensions import db
from app.statuses import JobState, Verification


class Job(db.Model):
    __tablename__ = "job"
    __table_args__ = (
        db.Index("ix_job_state_id", "state", "id"),
        db.Index("ix_job_target_id", "target", "id"),
        db.Index("ix_job_runbook_id", "runbook", "id"),
    )

    id = db.Column(db.Integer, primary_key=True)
    runbook = db.Column(db.String(64), nullable=False)
    target = db.Column(db.String(64), nullable=True)  # None: Rewind itself
    params_json = db.Column("params", db.Text, nullable=False, default="{}")
    mutates = db.Column(db.Boolean, nullable=False)
    actor_id = db.Column(db.Integer, nullable=True)
    actor_name = db.Column(db.String(64), nullable=False)
    state = db.Column(db.String(16), nullable=False, default=JobState.QUEUED.value)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    started_at = db.Column(db.DateTime, nullable=True)
    finished_at = db.Column(db.DateTime, nullable=True)
    current_step = db.Column(db.String(128), nullable=True)
    result = db.Column(db.Text, nullable=True)
    verification = db.Column(db.String(16), nullable=False, default=Verification.NONE.value)
    verification_detail = db.Column(db.Text, nullable=True)
    cancel_requested_by = db.Column(db.String(64), nullable=True)
    worker = db.Column(db.String(128), nullable=True)
    # The process group of the command running now, and its leader's start time: a runner that finds this
    # job orphaned stops that very group, so a dead worker's command never runs on beside a new job.
    command_group = db.Column(db.Integer, nullable=True)
    command_started = db.Column(db.BigInteger, nullable=True)
    standing = db.Column(db.Text, nullable=True)  # where the target stands while the job runs (JobContext.standing)
    done = db.Column(db.Text, nullable=True)  # what the job changed on its target so far (JobContext.did)
    # When the job put another database in the target's live one's place; cleared if it swapped back. Set at the
    # rename, so a job that failed or was killed after it still counts as a swap (app/jobs/swaps.py).
    swapped_at = db.Column(db.DateTime, nullable=True)
    swapped_out = db.Column(db.String(255), nullable=True)  # the name that swap kept the replaced database under

    @property
    def params(self) -> dict:
        return json.loads(self.params_json)

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or utcnow()) - self.started_at).total_seconds()


class JobEvent(db.Model):
    """One fact about a job, numbered 1, 2, 3… within it so watchers can tell what they have seen."""

    __tablename__ = "job_event"
    __table_args__ = (db.UniqueConstraint("job_id", "seq", name="uq_job_event_job_seq"),)

    id = db.Column(db.Integer, primary_key=True)
    job_id = db.Column(db.Integer, db.ForeignKey("job.id", ondelete="CASCADE"), nullable=False)
    seq = db.Column(db.Integer, nullable=False)
    kind = db.Column(db.String(16), nullable=False)  # job | step | progress | log
    step = db.Column(db.Integer, nullable=True)
    payload_json = db.Column("payload", db.Text, nullable=False, default="{}")
    ts = db.Column(db.DateTime, nullable=False, default=utcnow)

    @property
    def payload(self) -> dict:
        return json.loads(self.payload_json)
