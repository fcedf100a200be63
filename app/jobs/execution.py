"""Running one claimed job from its first step to its final state."""

from __future__ import annotations

import logging
import socket

from flask import current_app
from sqlalchemy import update

from app.audit.store import Actor, record, serialise
from app.clock import utcnow
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs.context import JobCancelled, JobContext
from app.jobs.engine import current_targets, engine
from app.jobs.events import EventWriter
from app.jobs.models import Job
from app.jobs.redact import Redactor
from app.statuses import JobState, Outcome, StepState, Verification
from app.targets.ansi import strip_ansi
from app.targets.command import stop_orphaned_group

log = logging.getLogger(__name__)


def execute(job_id: int) -> JobState:
    job = db.session.get(Job, job_id)
    bus = engine().bus
    writer = EventWriter(job.id, bus)
    redactor = Redactor(current_app.config.get("REWIND_REDACT", []))
    # The targets file as it is now: every env: value of every target, since a command may reach any of them.
    for config in current_targets().all():
        for secret in config.secrets:
            redactor.add(secret)
    actor = Actor(job.actor_id, job.actor_name)
    try:
        book = runbooks.get(job.runbook)
    except runbooks.UnknownRunbook as exc:
        ctx = JobContext(job, writer, redactor, job.runbook)
        return _finish(job, writer, ctx, actor, JobState.FAILED, f"{exc}; it may have been removed since queueing")

    ctx = JobContext(job, writer, redactor, book.title)
    record("job.start", actor=actor, target=job.target, details={"job_id": job.id, "runbook": job.runbook})
    writer.emit("job", {"state": JobState.RUNNING.value, "steps": [s.title for s in book.steps]})

    skipped: list[tuple[str, str]] = []  # (step title, why): a job that did nothing must not read as if it did
    for index, step in enumerate(book.steps):
        ctx.step = index
        job.current_step = step.title
        try:
            if not step.handles_cancel:
                ctx.check_cancelled()
            writer.emit("step", {"state": StepState.RUNNING.value}, index)
            step.run(ctx)
            writer.flush()
            writer.emit("step", {"state": StepState.SUCCEEDED.value}, index)
        except runbooks.StepSkipped as exc:
            ctx.log(f"skipped: {exc}")
            writer.emit("step", {"state": StepState.SKIPPED.value, "note": redactor(str(exc))}, index)
            skipped.append((step.title, redactor(str(exc))))
        except JobCancelled as exc:
            writer.emit("step", {"state": StepState.CANCELLED.value}, index)
            message = f"Cancelled by {exc.by} during “{step.title}”." + (f" {exc.outcome}" if exc.outcome else "")
            return _finish(job, writer, ctx, actor, JobState.CANCELLED, _after_changes(ctx, message))
        except runbooks.StepFailed as exc:
            error = redactor(strip_ansi(str(exc)))
            writer.emit("step", {"state": StepState.FAILED.value, "error": error}, index)
            if step.follow_up:
                ctx.warnings.append(f"“{step.title}” failed: {error}")
                continue
            message = f"“{step.title}” failed: {error}"
            return _finish(job, writer, ctx, actor, JobState.FAILED, _after_changes(ctx, message))
        except Exception as exc:
            log.exception("job %s step %s crashed", job.id, step.name)
            db.session.rollback()
            error = redactor(f"{type(exc).__name__}: {exc}")
            writer.emit("step", {"state": StepState.FAILED.value, "error": error}, index)
            message = f"“{step.title}” hit an internal error: {error}"
            return _finish(job, writer, ctx, actor, JobState.FAILED, _after_changes(ctx, message))
    done = ctx.result or all_done(len(book.steps), skipped)
    if ctx.warnings:
        return _finish(job, writer, ctx, actor, JobState.WARNING, f"{done} But: {' '.join(ctx.warnings)}")
    return _finish(job, writer, ctx, actor, JobState.SUCCEEDED, done)


def all_done(steps: int, skipped: list[tuple[str, str]]) -> str:
    """The result of a job that ended well and said none of its own: skipped steps are said with their reasons, so a
    job with nothing to do never claims that everything succeeded."""
    if not skipped:
        return "All steps succeeded."
    if len(skipped) == steps == 1:
        return f"Succeeded: nothing to do — {skipped[0][1]}."
    said = "; ".join(f"“{title}” skipped: {why}" for title, why in skipped)
    if len(skipped) == steps:
        return f"Succeeded: nothing to do — {said}."
    return f"All steps succeeded or were skipped ({said})."


def _after_changes(ctx: JobContext, message: str) -> str:
    """A failure after the target was changed must say what was already done, not read as "nothing happened"."""
    if not ctx.changed:
        return message
    return f"{message} Already done before that: {'; '.join(ctx.changed)}."


def _finish(job: Job, writer: EventWriter, ctx: JobContext, actor: Actor, state: JobState, message: str) -> JobState:
    writer.flush()
    serialise()  # the audit head first, then the job row: the order cancel() takes them in
    db.session.refresh(job)
    if job.job_state.is_final:  # a stopping Rewind marked it interrupted meanwhile: that stands
        _say_what_followed(job, writer, ctx)
        db.session.commit()
        return job.job_state
    job.state = state.value
    job.finished_at = utcnow()
    job.result = message
    if ctx.verification is not None:
        passed, detail = ctx.verification
        job.verification = (Verification.PASSED if passed else Verification.FAILED).value
        job.verification_detail = detail
    outcome = {JobState.SUCCEEDED: Outcome.OK, JobState.WARNING: Outcome.OK, JobState.CANCELLED: Outcome.OK}.get(
        state, Outcome.FAILED
    )
    details = {"job_id": job.id, "runbook": job.runbook, "result": job.result}
    if state == JobState.CANCELLED:
        details["cancelled_by"] = job.cancel_requested_by
        details["step"] = job.current_step
    record(f"job.{state.value}", actor=actor, outcome=outcome, target=job.target, details=details)
    bus = engine().bus
    bus.job_finished_in_transaction(db.session, job.id)
    writer.emit(
        "job",
        {
            "state": state.value,
            "result": job.result,
            "verification": job.verification,
            "verification_detail": job.verification_detail or "",
        },
    )
    bus.finished(job.id)  # the dashboard should show what the job left behind, not wait 30 s
    return state


def _say_what_followed(job: Job, writer: EventWriter, ctx: JobContext) -> None:
    """A stopping Rewind marked the job interrupted, saying what it had changed by then, and its thread went on
    winding down: what the thread changed after that (a deploy putting its code back) is added to the result."""
    later = [change for change in ctx.changed if change not in (job.result or "")]
    if job.job_state != JobState.INTERRUPTED or not later:
        return
    job.result = f"{job.result} Then, as it stopped: {'; '.join(later)}."
    writer.emit("job", {"state": job.state, "result": job.result})


def settle_orphan(job: Job) -> tuple[str, dict] | None:
    """Stop the command a dead job's process left running in its own group; the log line and audit details saying
    what became of it, or None when it recorded no command.

    Call it while holding the job's lock and before serialise(): stopping a group can take seconds, and every
    audited write in every process waits for serialise's lock.
    """
    pgid = job.command_group
    if not pgid:
        return None
    elsewhere = (job.worker or "").rpartition(":")[0]
    if elsewhere and elsewhere != socket.gethostname():
        # Another host's process group: its number names nothing here, so nothing here is signalled or vouched for.
        line = (
            f"the command it was running (process group {pgid} on {elsewhere}) cannot be checked from "
            f"{socket.gethostname()}: if it still runs there, stop it before changing {job.target or 'Rewind'} again"
        )
        return line, {"orphaned_group": pgid, "orphan_host": elsewhere}
    # The dead process's command may live on in its own group: stop that very group, and say so.
    if stop_orphaned_group(pgid, job.command_started):
        return f"stopped the command (process group {pgid}) that the stopped Rewind process left running", {
            "orphaned_group": pgid
        }
    return f"the command it was running (process group {pgid}) had already ended", {"orphaned_group": pgid}


def mark_interrupted(
    job: Job, stopped: str | None = None, *, orphan: tuple[str, dict] | None = None, settled: bool = False
) -> bool:
    """A job whose process died (or, with `stopped`, is stopping): say so plainly and never re-run it by itself.

    Conditional on the job still running, so a job that finished a moment
    ago keeps its real outcome. Returns whether the job was marked. A stopping
    process also asks the job's thread to stop its command, as a cancel does.
    `settled`: the caller, holding the job's lock, already ran settle_orphan (outside serialise), and `orphan` is
    what it said; otherwise the leftover command is stopped here, once the job is known to have been running.
    """
    serialise()
    where = f" during “{job.current_step}”" if job.current_step else " before its first step"
    # Which process: with workers, one of them may die while the web (and every page) stays up.
    running = f"The Rewind process running this job ({job.worker}) stopped" if job.worker else "Rewind stopped"
    first = f"Rewind was stopped{where}: {stopped}." if stopped else f"{running} while the job was running{where}."
    stood = f" Where things stood: {job.standing}." if job.standing else ""
    done = f" Already done before that: {job.done}." if job.done else ""
    result = (
        f"{first}{done}{stood} It was not re-run: check the target's state, then start the job again if it is still "
        "needed."
    )
    values = {"state": JobState.INTERRUPTED.value, "finished_at": utcnow(), "result": result}
    if stopped:
        values["cancel_requested_by"] = "Rewind (stopping)"
    changed = db.session.execute(
        update(Job).where(Job.id == job.id, Job.state == JobState.RUNNING.value).values(**values)
    )
    if changed.rowcount != 1:
        db.session.rollback()
        return False
    db.session.refresh(job)
    if not stopped and not settled:  # only once the job is known to have been running: never a finished job's group
        orphan = settle_orphan(job)
    details = {"job_id": job.id, "runbook": job.runbook, "step": job.current_step, "worker": job.worker}
    writer = EventWriter(job.id, engine().bus)
    if orphan is not None:
        line, said = orphan
        details.update(said)
        writer.emit("log", {"lines": [["err", line]]})
        job.command_group = job.command_started = None
    record("job.interrupted", actor=Actor.system(), outcome=Outcome.FAILED, target=job.target, details=details)
    writer.emit("job", {"state": JobState.INTERRUPTED.value, "result": job.result})
    return True


def fail_unfinished(job_id: int, error: str) -> None:
    """Last resort when a job could not even be finished: never leave it running with its target locked."""
    db.session.rollback()
    serialise()
    result = f"Rewind could not finish this job: {error}"
    changed = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value)
        .values(state=JobState.FAILED.value, finished_at=utcnow(), result=result)
    )
    if changed.rowcount != 1:
        db.session.rollback()
        return
    job = db.session.get(Job, job_id)
    record(
        "job.failed",
        actor=Actor(job.actor_id, job.actor_name),
        outcome=Outcome.FAILED,
        target=job.target,
        details={"job_id": job_id, "runbook": job.runbook, "result": result},
    )
    EventWriter(job_id, engine().bus).emit("job", {"state": JobState.FAILED.value, "result": result})
