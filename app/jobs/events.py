"""Job events: written once, in order, then published; and the job's state rebuilt from them.

The page, the websocket snapshot and every live update are derived from the
same persisted events, which is why a reconnect can neither lose nor repeat
a line.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.extensions import db
from app.jobs.models import Job, JobEvent
from app.statuses import JobState, StepState

LOG_FLUSH_LINES = 200
LOG_FLUSH_S = 0.1
MAX_LINE = 4000


class EventWriter:
    """Appends a job's events. One writer per running job, used from the job's own thread."""

    def __init__(self, job_id: int, bus) -> None:
        self.job_id = job_id
        self.bus = bus
        self.seq = db.session.scalar(select(func.coalesce(func.max(JobEvent.seq), 0)).filter_by(job_id=job_id))
        self._lines: list[list[str]] = []
        self._lines_step: int | None = None
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def emit(self, kind: str, payload: dict, step: int | None = None, *, commit: bool = True) -> JobEvent:
        if kind != "log":
            self.flush()
        event = JobEvent(
            job_id=self.job_id,
            seq=self.seq + 1,
            kind=kind,
            step=step,
            payload_json=json.dumps(payload, separators=(",", ":"), default=str),
            ts=utcnow(),
        )
        self._insert(event)
        self.bus.notify_in_transaction(db.session, self.job_id, self.seq)
        if commit:
            db.session.commit()
            self.bus.published(self.job_id, self.seq)
        return event

    def _insert(self, event: JobEvent) -> None:
        """Add the event under the next free number. Another writer may have taken it meanwhile: a stopping Rewind
        marks a job interrupted while the job's thread still runs, and what that thread does next (a deploy putting
        its code back) must be kept, not lost with its whole transaction. Only the savepoint is rolled back."""
        while True:
            try:
                with db.session.begin_nested():
                    db.session.add(event)
            except IntegrityError:
                taken = db.session.scalar(
                    select(func.coalesce(func.max(JobEvent.seq), 0)).filter_by(job_id=self.job_id)
                )
                if taken < event.seq:  # not the number: something else is wrong with the row
                    raise
                event.seq = taken + 1
                continue
            self.seq = event.seq
            return

    def add_line(self, step: int | None, stream: str, line: str) -> None:
        """Buffer one log line; safe from any thread (the job thread flushes)."""
        with self._lock:  # step changes only after a flush: emit() flushes before step events
            self._lines_step = step
            self._lines.append([stream, line[:MAX_LINE]])

    def flush_due(self) -> bool:
        with self._lock:
            pending = len(self._lines)
        return pending >= LOG_FLUSH_LINES or (pending and time.monotonic() - self._last_flush >= LOG_FLUSH_S)

    def flush(self) -> None:
        with self._lock:
            lines, step = self._lines, self._lines_step
            self._lines = []
        self._last_flush = time.monotonic()
        if lines:
            self.emit("log", {"lines": lines}, step)


@dataclass
class StepView:
    index: int
    title: str
    state: StepState = StepState.PENDING
    fraction: float = 0.0
    message: str = ""
    error: str = ""
    started: datetime | None = None
    finished: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if not self.started:
            return None
        return ((self.finished or utcnow()) - self.started).total_seconds()


@dataclass
class JobView:
    """Everything the job page shows, folded from events in seq order."""

    job_id: int
    state: JobState = JobState.QUEUED
    steps: list[StepView] = field(default_factory=list)
    lines: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, stream, text)
    result: str = ""
    verification: str = "none"
    verification_detail: str = ""
    last_seq: int = 0
    message: str = ""
    cancel_requested_by: str = ""  # asked to stop, not yet stopped: every watcher says by whom

    @property
    def fraction(self) -> float:
        if self.state in (JobState.SUCCEEDED, JobState.WARNING):
            return 1.0  # it ran to its end (a failed follow-up step does not stop the bar short)
        # Running, or ended short of its end (failed, cancelled, interrupted): the bar shows where it stopped.
        if not self.steps:
            return 0.0
        done = sum(1.0 if s.state in (StepState.SUCCEEDED, StepState.SKIPPED) else s.fraction for s in self.steps)
        return min(1.0, done / len(self.steps))

    def apply(self, event: JobEvent) -> None:
        payload = event.payload
        self.last_seq = event.seq
        if event.kind == "job":
            self.state = JobState(payload["state"])
            if "steps" in payload:
                self.steps = [StepView(i, title) for i, title in enumerate(payload["steps"])]
            self.message = payload.get("message", self.message)
            self.result = payload.get("result", self.result)
            self.verification = payload.get("verification", self.verification)
            self.verification_detail = payload.get("verification_detail", self.verification_detail)
            if self.state.is_final:
                for step in self.steps:
                    if step.state == StepState.PENDING:
                        step.state = StepState.NOT_RUN
                    elif step.state == StepState.RUNNING:
                        # The job ended under it (its process died: interrupted): it no longer runs, and its time
                        # stops with the job's. The job's result says what happened.
                        step.state = StepState.FAILED
                        step.error = step.error or f"stopped with the job ({self.state.label})"
                        step.finished = step.finished or event.ts
        elif event.kind == "step" and event.step is not None and event.step < len(self.steps):
            step = self.steps[event.step]
            step.state = StepState(payload["state"])
            step.error = payload.get("error", "")  # a step's own event says all: no word left from the job's end
            step.message = payload.get("note", step.message)
            if step.state == StepState.RUNNING:
                step.started = event.ts
            elif step.state != StepState.PENDING:
                step.finished = event.ts
                if step.state == StepState.SUCCEEDED:
                    step.fraction = 1.0
        elif event.kind == "progress" and event.step is not None and event.step < len(self.steps):
            step = self.steps[event.step]
            step.fraction = max(0.0, min(1.0, float(payload.get("fraction", 0.0))))
            step.message = payload.get("message", step.message)
        elif event.kind == "cancel":
            self.cancel_requested_by = payload.get("by", "")
        elif event.kind == "log":
            self.lines.extend((event.seq, stream, line) for stream, line in payload["lines"])


def load_view(job: Job, upto: int | None = None) -> JobView:
    view = JobView(job.id)
    stmt = select(JobEvent).filter_by(job_id=job.id).order_by(JobEvent.seq)
    if upto is not None:
        stmt = stmt.where(JobEvent.seq <= upto)
    for event in db.session.scalars(stmt):
        view.apply(event)
    return view


def events_after(job_id: int, after: int) -> list[JobEvent]:
    return list(
        db.session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after).order_by(JobEvent.seq)
        )
    )
