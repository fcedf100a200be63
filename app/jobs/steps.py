"""Steps every area's runbooks share: the target, adapter errors, checkpoint, restart, verify.

Plain functions of a JobContext. Adapters do the work with the context as
their sink, and every adapter error (all share TargetError as root) becomes
a StepFailed whose message says what to do next.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.audit.store import Actor
from app.checkpoints import captures, store
from app.extensions import db
from app.jobs.context import JobCancelled, JobContext
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.runbook import StepFailed
from app.targets.ansi import strip_ansi
from app.targets.command import CommandCancelled, CommandTimedOut, Tee, ended, printed, run_command, said_nothing
from app.targets.errors import TargetError
from app.targets.git import DirtyFiles, GitRepo
from app.targets.health import Verdict, run_smoke
from app.targets.process import AppLog, ProcessControl
from app.targets.target import Target

log = logging.getLogger(__name__)

SMOKE_TIMEOUT_S = 300
ANSWER_EXCERPT = 160  # characters of a failing health answer quoted in the message (all of it is in the log)
APP_LOG_LINES = "app_log_lines"  # ctx.state: how many of the application's log lines the last failed check logged
# What to do after a failed verification, unless the runbook knows better (a deploy: its automatic rollback).
ROLL_BACK = "Next: roll back to a known-good commit (revert or reset), or fix the cause and verify again"

# What else must hold for "verified" beyond health and the smoke test (the schema area adds: the database
# at a head of the deployed code's migrations). check(target) -> (matches, words); words may be "". matches is None
# when the state cannot be read at all (its database gone or unreachable): not a mismatch, and no code rollback helps.
StateCheck = Callable[[Target], tuple[bool | None, str]]
UNREADABLE = "unreadable_state"  # ctx.state: the name of a state check the last check could not read
STARTING = "still_starting"  # ctx.state: the last check saw the process run without accepting a connection
_state_checks: dict[str, StateCheck] = {}


def register_state_check(name: str, check: StateCheck) -> StateCheck:
    """An area's condition of "verified"; registering the same name again replaces it."""
    _state_checks[name] = check
    return check


# What an area knows that may explain a failed verification (the env file changed outside Rewind), said with the
# failure: suspect(target) -> words, or None when it has nothing to say.
Suspect = Callable[[Target], str | None]
_suspects: dict[str, Suspect] = {}


def register_suspect(name: str, suspect: Suspect) -> Suspect:
    """An area's word on a failed verification; registering the same name again replaces it."""
    _suspects[name] = suspect
    return suspect


def suspects_of(target: Target) -> list[str]:
    """Every area's word on why the target may fail, in registration order; one that cannot tell says nothing."""
    said = []
    for suspect in _suspects.values():
        try:
            words = suspect(target)
        except Exception:  # a hint must never hide the failure it is added to
            log.exception("a suspect of %s could not be read", target.name)
            continue
        if words:
            said.append(words)
    return said


def target_of(ctx: JobContext) -> Target:
    return current_targets().open(ctx.target)


@contextmanager
def adapter_errors(ctx: JobContext) -> Iterator[None]:
    """An adapter's error becomes the step's failure, in its own words, secrets masked; a cancel stays a cancel."""
    try:
        yield
    except CommandCancelled as exc:
        raise JobCancelled(ctx.cancel_requested() or "someone", exc.outcome) from None
    except TargetError as exc:
        raise StepFailed(ctx.redact(exc.in_words())) from None


def known_stopped(ctx: JobContext) -> bool:
    """The app is known not to run now: its status says so (stopped on purpose, or it died). Unknown (no process
    control, no status command, a broken env file) is not stopped: the health check is the witness then."""
    try:
        control = target_of(ctx).process()
        return control is not None and control.status().running is False
    except TargetError:
        return False


def control_of(ctx: JobContext, *, stopping: bool = False) -> ProcessControl:
    """The target's process control; stopping=True when it will only stop (see Target.process)."""
    with adapter_errors(ctx):  # its environment is read from the env file, which may be missing or broken
        control = target_of(ctx).process(stopping=stopping)
    if control is None:
        raise StepFailed(f"{ctx.target} has no process control: add [targets.{ctx.target}.process] to the targets file")
    return control


def job_actor(ctx: JobContext) -> Actor | None:
    """Who started the job: what Rewind records on its behalf is audited as theirs."""
    job = db.session.get(Job, ctx.job_id)
    return Actor(job.actor_id, job.actor_name) if job else None


def checkpoint(ctx: JobContext) -> None:
    """Record what the target is before anything changes (every area's part), so it can be put back as one unit."""
    ctx.state["checkpoint"] = _record_checkpoint(ctx, ctx.runbook_title)


def checkpoint_after(ctx: JobContext) -> None:
    """Record what the target is once a job has replaced something wholesale (a database swapped in or back).

    Nothing audits such a change area by area, so without this Rewind's newest record of, say, the flags would be
    the one from before the swap, and every flag the swap moved would read as changed outside Rewind."""
    _record_checkpoint(ctx, store.AFTER + ctx.runbook_title)


def _record_checkpoint(ctx: JobContext, reason: str) -> dict:
    target = target_of(ctx)
    taken = captures.take_all(target)
    row = store.record(ctx.target, ctx.job_id, reason, taken, actor=job_actor(ctx))
    ctx.log(f"checkpoint #{row.id} of {ctx.target}:")
    for name, value in taken.items():
        ctx.log(f"  {captures.line(name, value)}")
    ctx.progress(1.0, f"checkpoint #{row.id}")
    return taken


BEFORE_START = "before_start"  # ctx.state: the parts an application's start may change, read before the restart


def restart(ctx: JobContext) -> None:
    control = control_of(ctx)
    ctx.check_cancelled()
    ctx.state[BEFORE_START] = captures.take_all(target_of(ctx), moved_by_start=True)
    with adapter_errors(ctx):
        control.restart(ctx)
    if control.forced:
        ctx.log(f"the old process was stopped by force: {control.forced}")
    ctx.did(f"restarted {ctx.target}")
    ctx.progress(1.0, "restarted")


def verify(ctx: JobContext, next_step: str = ROLL_BACK) -> None:
    """Healthy within the timeout, then the smoke command; the result is the job's verification.

    `next_step`: what to do when it fails, said after the reason."""
    passed, detail = check_health(ctx)
    if not passed:
        ctx.verified(False, detail)
        raise unhealthy(ctx, detail, next_step)
    verify_passed(ctx, detail)


def unhealthy(ctx: JobContext, detail: str, next_step: str = ROLL_BACK) -> StepFailed:
    """A failed verification as a step's failure: what failed, what to do next, then where the app's log went.

    `detail` is check_health's one-line reason; the application's log lines
    are in the job's log, never in this message.
    """
    message = f"{detail}."
    if unread := ctx.state.get(UNREADABLE):  # a database gone or unreachable: rolling the code back would not help
        next_step = (
            f"Next: make the {unread} readable again (its database reachable; one that is gone can be restored from "
            "the Backups tab), then verify again"
        )
    elif ctx.state.get(STARTING) and next_step == ROLL_BACK:  # slow to start is not broken code
        next_step = (
            "Next: verify again once it has started (and raise health.timeout if it always starts this slowly); "
            "roll back only if its log shows it failing"
        )
    with contextlib.suppress(TargetError, LookupError):  # a target gone from the file: the failure still stands
        for words in suspects_of(target_of(ctx)):
            message += f" Look first: {words}."  # what Rewind already knows may be the cause, before the remedy
    message += f" {next_step}"
    if lines := ctx.state.get(APP_LOG_LINES):
        message += f"; the application's last {lines} log lines are in this job's log"
    return StepFailed(ctx.redact(message) + ".")


def verify_passed(ctx: JobContext, detail: str) -> None:
    """Record the verification, and the deployed commit as known good."""
    ctx.verified(True, detail)
    with adapter_errors(ctx):
        repo = target_of(ctx).git()
        head, drift = repo.head(), repo.checkout_drift()
    if drift:
        ctx.log(f"{head[:12]} not marked known-good: {drift}, so what answered may not be {head[:12]}")
        return
    store.mark_known_good(ctx.target, head, ctx.job_id, why=f"verified by job #{ctx.job_id}", actor=job_actor(ctx))
    ctx.log(f"{head[:12]} marked known-good on {ctx.target}")


def check_health(ctx: JobContext, *, state_checks: bool = True) -> tuple[bool, str]:
    """Healthy, smoke test passed, and (with `state_checks`) every area's condition (e.g. schema matches code)."""
    target = target_of(ctx)
    with adapter_errors(ctx):  # the checkout's commit is read from git
        health = target.health(of_checkout=True)
    ctx.state.pop(APP_LOG_LINES, None)  # a log pointer from an earlier check of this job no longer holds
    ctx.state.pop(UNREADABLE, None)
    ctx.state.pop(STARTING, None)
    if health is None:
        return False, f"{ctx.target} has no health check: add [targets.{ctx.target}.health] to verify it"
    attempts = 0
    began = time.monotonic()

    def on_probe(probe) -> None:
        """Each attempt with when it was made: a person tells an app answering slowly from one refusing."""
        nonlocal attempts
        attempts += 1
        at = time.monotonic() - began - probe.elapsed_ms / 1000
        ctx.log(f"probe {attempts} at +{max(at, 0):.1f} s: {probe}")
        ctx.progress(min(0.9, attempts / 20), probe.reason)

    with adapter_errors(ctx):  # the process's environment is read from the env file, which may be broken
        control = target.process()
        verdict = health.wait_healthy(
            should_cancel=ctx.cancelled, on_probe=on_probe, process=control.watch() if control is not None else None
        )
    _moved_by_start(ctx, target)
    if not verdict.ok:
        return False, _not_healthy(ctx, verdict, control)
    detail = f"healthy: {verdict.reason}"
    smoke = target.config.health.smoke
    if smoke:
        tee = Tee(ctx)
        cwd = str(target.config.repo.path)
        try:
            with adapter_errors(ctx):
                code = run_smoke(list(smoke), SMOKE_TIMEOUT_S, tee, cwd=cwd, env=target.command_env())
        except StepFailed as exc:
            return False, str(exc)
        if code != 0:
            silent = "" if printed(*tee.tail()) else " and " + said_nothing(smoke, where=cwd)
            return False, ctx.redact(f"the smoke test {ended(code)}{silent}")
        detail += "; smoke test passed"
    for name, check in _state_checks.items() if state_checks else ():
        matches, words = check(target)
        if matches is None:
            ctx.log(f"{name}: {words}", "err")
            ctx.state[UNREADABLE] = name
            return False, ctx.redact(f"healthy, but the {name} cannot be checked: {words}")
        if not matches:
            ctx.log(f"{name}: {words}", "err")
            return False, ctx.redact(f"healthy, but the {name} does not match the deployed code: {words}")
        if words:
            detail += f"; {words}"
    ctx.progress(1.0, "healthy")
    return True, detail


def _moved_by_start(ctx: JobContext, target) -> None:
    """What the application's own start changed (its start script migrated the database): said once, as a warning,
    since no step of this job made that change and the job's result would otherwise not mention it (QA: a restart
    after a downgrade upgraded the schema back, and the job said only "All steps succeeded")."""
    before = ctx.state.pop(BEFORE_START, None)
    if not before:
        return
    for part, old, new in captures.moved(before, captures.take_all(target, moved_by_start=True)):
        if _migrated_as_it_does(ctx, target):
            ctx.log(f"{ctx.target}'s own start moved its {part} to the deployed code ({old} → {new}), as it does")
            continue
        said = (
            f"While {ctx.target} restarted, its {part} changed ({old} → {new}): its start command migrates, or "
            "someone else changed it meanwhile; no step of this job did"
        )
        ctx.log(said, "err")
        ctx.warn(f"{said}.")


CODE_CHANGES = ("deploy", "revert", "reset")  # runbooks that bring other migrations with the code they deploy


def _migrated_as_it_does(ctx: JobContext, target) -> bool:
    """A code change on a target whose application migrates itself (database.migrate_on_deploy off): its start
    bringing the schema to the new code is the documented way, no warning (review: every such deploy ended
    "succeeded with warnings", and the CLI exited 8)."""
    database = target.config.database
    if ctx.runbook not in CODE_CHANGES or database is None or database.migrate_on_deploy:
        return False
    check = _state_checks.get("schema")
    return check is not None and check(target)[0] is True


def _not_healthy(ctx: JobContext, verdict: Verdict, control: ProcessControl | None) -> str:
    """Why it is not healthy, in one line; the whole last answer and the application's last log lines go to the
    job's log, where an incident's reader looks for them, not into a message shown on every page."""
    detail = f"{ctx.target} did not become healthy: {verdict.reason}"
    if verdict.starting:
        ctx.state[STARTING] = True
    probe = verdict.probe
    if probe is not None and probe.status is not None:
        ctx.log(f"last answer: {verdict.answer}", "err")
        if probe.body:
            detail += f"; it answered {_excerpt(probe.body)}"
    # Only what it wrote since Rewind last started (or reloaded) it: an earlier crash's traceback, still at the
    # end of the file, would send the reader after the wrong cause.
    log = control.log_since_start() if control is not None else AppLog()
    ctx.state[APP_LOG_LINES] = len(log.lines)
    since = log.since_words()
    if log.lines:
        count = len(log.lines)
        if not since:
            heading = f"the application's last {count} log lines:"
        elif log.more:
            heading = f"the last {count} of the {count + log.more} lines the application wrote to its log {since}:"
        else:
            heading = f"what the application wrote to its log {since} ({count} line{'s' if count != 1 else ''}):"
        ctx.log(heading, "err")
        for line in log.lines:
            ctx.log(f"  {line}", "err")
    elif since:
        ctx.log(f"the application wrote nothing to its log {since}", "err")
    return ctx.redact(detail)


def _excerpt(text: str, limit: int = ANSWER_EXCERPT) -> str:
    """The start of an answer on one line: whitespace runs folded, colour codes out, cut at limit characters."""
    flat = " ".join(strip_ansi(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class ReleaseFailed(Exception):
    """One release command failed; the message names it and why."""


def run_release_commands(ctx: JobContext, target: Target) -> int:
    """Run the target's release commands in order, in its checkout and environment; the count run.

    Output streams into the job. Raises ReleaseFailed at the first failure;
    a cancel stays a cancel.
    """
    release = target.config.release
    if release is None:
        return 0
    cwd = str(target.config.repo.path)
    repo = target.git()
    before = _dirty_before(ctx, repo)
    total = len(release.commands)
    for n, argv in enumerate(release.commands, 1):
        ctx.check_cancelled()
        shown = shlex.join(argv)
        which = f"release command {n} of {total} (`{shown}`)"
        ctx.progress((n - 1) / total, shown)
        ctx.line("cmd", "$ " + shown)
        tee = Tee(ctx, keep=10)
        try:
            with adapter_errors(ctx):
                result = run_command(list(argv), tee, timeout=release.timeout, cwd=cwd, env=target.command_env())
        except CommandTimedOut:
            raise ReleaseFailed(f"{which} did not finish within {release.timeout:g} s and was stopped") from None
        except OSError as exc:
            raise ReleaseFailed(
                f"{which} could not run: {exc.strerror or exc} — check release.commands in the targets file "
                "(the program must exist on the PATH of the target's environment, or be an absolute path)"
            ) from None
        if not result.ok:
            last = tee.last_words()
            said = f"; it said: {last}" if last else " and " + said_nothing(argv, where=cwd)
            raise ReleaseFailed(f"{which} {result.ended}{said}")
    if before is not None:
        _record_release_writes(ctx, repo, before)
    ctx.progress(1.0, f"{total} release command(s) done")
    return total


def _dirty_before(ctx: JobContext, repo: GitRepo) -> DirtyFiles | None:
    """What was changed before the release ran (never recorded as its own); None when git cannot say."""
    try:
        return repo.dirty()
    except TargetError as exc:
        # The release still runs (an env file restore needs it); without a record its writes read as a person's.
        ctx.log(f"cannot record what the release commands write: {exc.in_words()}", "err")
        return None


def _record_release_writes(ctx: JobContext, repo: GitRepo, before: DirtyFiles) -> None:
    """Remember what the release commands wrote in tracked files: a later revert, reset or deploy puts it back
    instead of refusing it as a person's edit, and verification does not count it as drift.

    Best effort: a failure leaves today's safe side (those files refused as anyone's edit), never a failed release.
    """
    try:
        written = repo.record_release_writes(not_ours=before.foreign)
    except (TargetError, OSError) as exc:
        detail = exc.in_words() if isinstance(exc, TargetError) else str(exc)
        ctx.log(
            f"could not record what the release commands wrote ({detail}); a later revert, reset or deploy "
            "will take those files for a person's edit and refuse",
            "err",
        )
        return
    if written:
        ctx.log(
            f"the release commands changed tracked files: {', '.join(written[:10])}"
            + (f" and {len(written) - 10} more" if len(written) > 10 else "")
            + "; recorded as the release's own (a later code change puts them back, they are not drift)"
        )
    if before.foreign:
        ctx.log(f"not the release's own (changed before it ran, kept as they are): {', '.join(before.foreign[:10])}")
