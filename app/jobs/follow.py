"""A job in a terminal: its persisted events as plain lines, replayed and then followed live.

The same events the job page's websocket replays, so the terminal shows the
same steps and lines, in the same order, whoever runs the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.jobs.engine import engine
from app.jobs.events import JobView, events_after
from app.jobs.models import Job, JobEvent
from app.jobs.runner import interrupt_if_dead
from app.statuses import JobState, StepState, Verification

POLL_S = 0.5  # another process's events carry no in-process notice on SQLite: re-read this often
LIVENESS_S = 1.0  # how often a follower looks whether the process running the job is still there (one lock try)

Echo = Callable[[str], None]
MARKS = {"out": "|", "err": "!"}  # "cmd" lines already start with "$ "


class EventPrinter:
    """Turns a job's events into lines; keeps the folded view to know where the job stands."""

    def __init__(self, job_id: int, echo: Echo, *, outcome: bool = True) -> None:
        self.view = JobView(job_id)
        self.echo = echo
        self.outcome = outcome  # print the final state's line (off where a summary says it once, after)

    def _step_name(self, index: int) -> str:
        title = self.view.steps[index].title if index < len(self.view.steps) else "?"
        return f"[{index + 1}/{len(self.view.steps)}] {title}"

    def show(self, event: JobEvent) -> None:
        self.view.apply(event)
        payload = event.payload
        if event.kind == "log":
            for stream, line in payload["lines"]:
                self.echo(f"    {line}" if stream == "cmd" else f"    {MARKS.get(stream, '|')} {line}")
        elif event.kind == "step" and event.step is not None and event.step < len(self.view.steps):
            step = self.view.steps[event.step]
            if step.state == StepState.RUNNING:
                self.echo(f"{self._step_name(event.step)} ...")
            else:
                took = f" ({step.duration_s:.1f} s)" if step.duration_s is not None else ""
                self.echo(f"{self._step_name(event.step)}: {step.state.label}{took}")
                if step.error:
                    self.echo(f"    error: {step.error}")
        elif event.kind == "cancel":
            self.echo(f"cancelling: asked by {payload.get('by', 'someone')}; the running step is being stopped")
        elif event.kind == "job":
            state = JobState(payload["state"])
            if state == JobState.RUNNING:
                self.echo(f"job #{self.view.job_id} started: {len(self.view.steps)} step(s)")
            elif state.is_final and self.outcome:
                self.echo(f"job #{self.view.job_id} {state.label}: {self.view.result}")
                if self.view.verification != Verification.NONE:
                    detail = f" ({self.view.verification_detail})" if self.view.verification_detail else ""
                    self.echo(f"verification: {self.view.verification}{detail}")


def replay(job_id: int, echo: Echo, *, outcome: bool = True) -> JobView:
    """Print every stored event of the job once; returns the folded view."""
    printer = EventPrinter(job_id, echo, outcome=outcome)
    for event in events_after(job_id, 0):
        printer.show(event)
    return printer.view


def follow(
    job_id: int,
    echo: Echo,
    poll_s: float = POLL_S,
    *,
    news: threading.Event | None = None,
    stop: threading.Event | None = None,
    printer: EventPrinter | None = None,
) -> JobState:
    """Print the job's events as they are stored, until it ends; returns its final state.

    Woken by the event bus when the job runs in this process (or any process,
    on PostgreSQL); otherwise it re-reads every poll_s. A job whose process
    died (a worker killed outright) is marked interrupted here, so a
    follower never waits for an end that cannot come. `news`: an event that
    others may set to wake it too; `stop`: once set, KeyboardInterrupt is raised
    here, between reads (how the CLI turns Ctrl-C into a cancel). `printer`: one an earlier follow of the same job
    was stopped with, so following again goes on after the last line it printed instead of printing all again.
    """
    bus = engine().bus
    news = news or threading.Event()

    def heard(job: int | None, seq: int | None) -> None:
        if job is None or job == job_id:
            news.set()

    bus.subscribe(heard)
    printer = printer or EventPrinter(job_id, echo)
    next_look = time.monotonic() + LIVENESS_S
    try:
        while True:
            # The row first: a final state is committed with its last event, so reading events
            # after it sees them all.
            state = JobState(db.session.scalar(select(Job.state).where(Job.id == job_id)))
            for event in events_after(job_id, printer.view.last_seq):
                printer.show(event)
            db.session.commit()  # end the read, so the next one sees new commits
            if printer.view.state.is_final:
                return printer.view.state
            if state.is_final:
                return state
            # Looked at after a fresh read: a job that ended as the key was pressed ends the follow with its outcome.
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if state == JobState.RUNNING and time.monotonic() >= next_look:
                next_look = time.monotonic() + LIVENESS_S
                if interrupt_if_dead(current_app._get_current_object(), db.session.get(Job, job_id)):
                    continue  # its process died: print the interrupted end and return it
            news.wait(poll_s)
            news.clear()
    finally:
        bus.unsubscribe(heard)
        db.session.remove()
