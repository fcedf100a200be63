"""Queueing and cancelling jobs: the only doors into the job table from views and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select, update

from app.audit.store import Actor, record, record_and_commit, serialise
from app.auth.models import User
from app.auth.roles import Role
from app.clock import utcnow
from app.extensions import db
from app.jobs.engine import engine
from app.jobs.events import EventWriter
from app.jobs.models import Job
from app.jobs.runbook import Runbook, title_of
from app.jobs.runner import interrupt_if_dead
from app.statuses import ACTIVE_JOB_STATES, JobState, Outcome


class JobRefused(Exception):
    """A job cannot be queued or cancelled now (a conflict with the state of things, answered 409)."""


class BusyTarget(JobRefused):
    def __init__(self, target: str, running: Job) -> None:
        super().__init__(
            f"{target} is busy: job #{running.id} ({title_of(running.runbook)}, started by {running.actor_name}) "
            f"is {running.state}. Wait for it to finish or cancel it first."
        )
        self.target = target
        self.running = running


class NotCancellable(JobRefused):
    pass


def busy_job(target: str) -> Job | None:
    return db.session.scalar(
        select(Job)
        .where(Job.target == target, Job.mutates.is_(True), Job.state.in_([s.value for s in ACTIVE_JOB_STATES]))
        .order_by(Job.id)
        .limit(1)
    )


def live_busy_job(target: str) -> Job | None:
    """busy_job() for deciding whether to queue: a running job whose process died is marked interrupted instead.

    Call it under serialise(), with nothing else in the transaction: a
    running job is looked at with that lock let go (stopping a dead job's
    leftover command can take seconds, and every audited write in every
    process waits for the lock), then the lock is taken again and the target
    read again. A SIGKILLed process's job thus frees its target at the next
    attempt rather than when some runner next starts.
    """
    while (running := busy_job(target)) is not None:
        if running.job_state != JobState.RUNNING:
            return running
        job_id = running.id
        db.session.rollback()  # lets go of serialise()
        job = db.session.get(Job, job_id)
        dead = job is not None and interrupt_if_dead(current_app._get_current_object(), job)
        if dead:
            db.session.commit()
        serialise()
        if not dead:
            return busy_job(target)  # read again under the lock: it may have ended, or another job been queued
    return None


def _via(details: dict, via: str | None) -> dict:
    return {**details, "via": via} if via else details


def _can(actor: Actor) -> Callable[[Role], bool]:
    """Whether the actor holds a role: Rewind itself (a schedule, no person) holds every one; a person, their own
    (their account read only when a parameter asks)."""

    def can(role: Role) -> bool:
        if actor.id is None:
            return True
        user = db.session.get(User, actor.id)
        return user is not None and user.can(role)

    return can


def not_queued(
    runbook: str, reason: str, *, target: str | None = None, actor: Actor | None = None, via: str | None = None, **more
) -> None:
    """Audit a job that was not queued, and why, in the one row every door writes (nothing else in the transaction:
    what the refused request had begun is rolled back first). `actor` None: the signed-in person."""
    db.session.rollback()
    details = _via({"runbook": runbook, "reason": reason, **more}, via)
    record_and_commit("job.queued", outcome=Outcome.DENIED, actor=actor, target=target, details=details)


def _refuse_busy(runbook: Runbook, target: str, running: Job, actor: Actor, via: str | None) -> None:
    """Audit the refusal of a job for a target another job holds, then raise BusyTarget naming that job."""
    not_queued(runbook.name, "target busy", target=target, actor=actor, via=via, busy_job=running.id)
    raise BusyTarget(target, running)


def refuse_if_busy(runbook: Runbook, target: str | None, raw: dict, actor: Actor, *, via: str | None = None) -> None:
    """BusyTarget (audited) when a job holds the target this runbook would hold: asked before its parameters are
    checked, for those checks read the target (git, the schema: the gate) and would speak for a target another
    job is changing. An early answer only: enqueue() decides, under its lock, as it always has.

    `raw`: the parameters as typed (Runbook.holds_target_as_typed reads them)."""
    if not target or not runbook.holds_target_as_typed(raw):
        return
    serialise()  # live_busy_job() is read under the lock, as enqueue() reads it
    running = live_busy_job(target)
    if running is not None:
        _refuse_busy(runbook, target, running, actor, via)
    db.session.rollback()  # lets go of the lock: the checks that follow may take seconds


def enqueue(runbook: Runbook, target: str | None, params: dict, actor: Actor, *, via: str | None = None) -> Job:
    """Queue a job; it and its `job.queued` audit row commit together. Params are already checked, but for
    those only some roles may give (Param.role): checked here against the actor, so every door refuses them,
    with a ParamError, before anything is queued.

    `via` names the door other than the web pages (e.g. "cli"); the audit rows carry it.
    """
    runbook.check_role(params, _can(actor))
    serialise()  # from here to commit, no other enqueue can slip past the busy check
    holds = runbook.holds_target(params)
    if holds and target:
        running = live_busy_job(target)
        if running is not None:
            _refuse_busy(runbook, target, running, actor, via)
    job = Job(
        runbook=runbook.name,
        target=target,
        params_json=json.dumps(params, sort_keys=True, default=str),
        mutates=holds,  # the runner takes the target's lock for it
        actor_id=actor.id,
        actor_name=actor.name,
        state=JobState.QUEUED.value,
    )
    db.session.add(job)
    db.session.flush()
    details = _via({"job_id": job.id, "runbook": runbook.name, "params": params}, via)
    record("job.queued", actor=actor, target=target, details=details)
    bus = engine().bus
    bus.job_queued_in_transaction(db.session)
    db.session.commit()
    bus.queued()  # wakes the runners: this process's directly, other processes' through NOTIFY
    return job


def cancel(job: Job, actor: Actor, *, via: str | None = None) -> bool:
    """Cancel a queued job at once; ask a running one to stop (its runner ends it as cancelled).

    True when the job was cancelled before it started. Read it here, not from the job's state afterwards: a
    running job asked to stop may already have ended as cancelled by then."""
    serialise()
    db.session.refresh(job)
    state = job.job_state
    if state.is_final:
        raise NotCancellable(f"job #{job.id} has already ended ({state}); there is nothing to cancel")
    if state == JobState.QUEUED:
        result = f"Cancelled by {actor.name} before it started."
        # Conditional, because a runner may claim the job at this very moment.
        claimed = db.session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == JobState.QUEUED.value)
            .values(state=JobState.CANCELLED.value, finished_at=utcnow(), result=result)
        )
        if claimed.rowcount == 1:
            details = _via({"job_id": job.id, "before_start": True}, via)
            record("job.cancelled", actor=actor, target=job.target, details=details)
            EventWriter(job.id, engine().bus).emit("job", {"state": JobState.CANCELLED.value, "result": result})
            db.session.refresh(job)
            return True
        db.session.refresh(job)
    if interrupt_if_dead(current_app._get_current_object(), job):
        raise NotCancellable(
            f"job #{job.id} was no longer running: the Rewind process running it had stopped, so it is now marked "
            f"interrupted and its command stopped; check {job.target or 'Rewind'}, then start it again if still needed"
        )
    if job.cancel_requested_by:
        raise NotCancellable(f"job #{job.id} is already being cancelled (asked by {job.cancel_requested_by})")
    job.cancel_requested_by = actor.name
    record("job.cancel_requested", actor=actor, target=job.target, details=_via({"job_id": job.id}, via))
    # Committed with the request: every page watching the job says it is being cancelled, and by whom, rather
    # than offer a Cancel that would be refused while the step stops.
    EventWriter(job.id, engine().bus).emit("cancel", {"by": actor.name})
    return False
