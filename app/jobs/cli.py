"""`flask rewind worker`, `flask rewind run` and `flask rewind jobs …`: jobs without a browser.

`run` takes the web form's path: the user's role, the runbook's parameters
checked against what exists, then `service.enqueue`, audited as that user
with `via=cli`. When no runner is up, it claims and runs the job itself with
the runner's own locks, so a job is never run twice.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from app.audit.store import Actor, record_and_commit
from app.auth import accounts
from app.auth.models import User
from app.auth.roles import Role
from app.clierrors import CliError, Refused
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.engine import current_targets
from app.jobs.follow import EventPrinter, follow, replay
from app.jobs.models import Job
from app.jobs.runner import Runner, runners_alive
from app.pagination import keyset_page
from app.rowids import ROW_ID_MAX
from app.signalrelay import signals_set
from app.statuses import ExitStatus, JobState, Outcome
from app.targets import registry

VIA = "cli"
CLAIM_RETRY_S = 0.2
NO_TARGET = "-"


@click.command("worker")
@with_appcontext
def worker() -> None:
    """Claim and run queued jobs until stopped (SIGTERM or Ctrl-C)."""
    from app.jobs.engine import engine

    app = current_app._get_current_object()
    settings = app.config["REWIND_SETTINGS"]
    if not settings.is_postgres:
        raise CliError(
            "separate workers need a PostgreSQL ops database (REWIND_DATABASE_URL); "
            "with SQLite, jobs run inside the web process"
        )
    runner = engine(app).start_runner()
    stop = threading.Event()
    with signals_set((signal.SIGTERM, signal.SIGINT), stop):
        click.echo(f"rewind worker {runner.identity}: running up to {runner.workers} jobs at once")
        stop.wait()
        grace = settings.graceful_timeout_s
        click.echo(f"stopping: claiming no more jobs; running jobs have {grace} s to finish")
        interrupted = runner.drain(grace)
        if interrupted:
            click.echo(f"marked interrupted (Rewind was stopped): {', '.join(f'#{i}' for i in interrupted)}")
        runner.stop(wait=False)


# --- who, what, where --------------------------------------------------------------------


def _user(name: str) -> User:
    try:
        user = accounts.find_user(name)
    except accounts.UnknownUser:
        raise Refused(f"there is no user {name!r}; see them with: flask rewind users list") from None
    if user.disabled:
        _deny(user, "comes from a disabled account", fix=f"an admin can enable it: flask rewind users enable {name}")
    return user


def _deny(user: User, reason: str, *, target: str | None = None, fix: str = "run it --as a user who may") -> None:
    """Audit the refusal as the web guards do, then stop with it."""
    record_and_commit(
        "auth.denied",
        outcome=Outcome.DENIED,
        actor=Actor.of(user),
        target=target,
        details={"via": VIA, "reason": reason, "role": user.role.label},
    )
    raise Refused(f"{user.name} ({user.role.label}) may not do this: it {reason}; {fix}")


def _runbook(name: str) -> runbooks.Runbook:
    try:
        return runbooks.get(name)
    except runbooks.UnknownRunbook as exc:
        known = ", ".join(b.name for b in sorted(runbooks.all_runbooks(), key=lambda b: b.name))
        raise Refused(f"{exc} (runbooks: {known})") from None


def _target(book: runbooks.Runbook, name: str) -> str | None:
    if not book.needs_target:
        if name != NO_TARGET:
            raise Refused(f"{book.name} runs on Rewind itself, not on a target: pass {NO_TARGET} as TARGET")
        return None
    if name == NO_TARGET:
        raise Refused(f"{book.name} runs on a target: name one (flask rewind targets list)")
    try:
        return current_targets().config(name).name
    except registry.UnknownTarget as exc:
        raise Refused(str(exc)) from None


def _raw_params(book: runbooks.Runbook, pairs: tuple[str, ...]) -> dict[str, str]:
    raw: dict[str, str] = {}
    names = ", ".join(p.name for p in book.params) or "none"
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Refused(f"parameters are KEY=VALUE, got {pair!r} ({book.name} takes: {names})")
        if key in raw:
            raise Refused(f"{key} is given twice; give each parameter once")
        raw[key] = value
    return raw


def _confirm(book: runbooks.Runbook, target: str | None, raw: dict[str, str], yes: bool) -> None:
    """A destructive runbook on a protected target: the target's name typed, or --yes."""
    if target is None or not book.asks_confirmation or raw.get("confirm"):
        return
    if not current_targets().config(target).protected:
        return
    if yes:
        raw["confirm"] = target
    elif sys.stdin.isatty():
        raw["confirm"] = click.prompt(
            f"{target} is protected and {book.name} is destructive. Type {target} to go on",
            default="",
            show_default=False,
        )
    else:
        raise runbooks.ParamError(
            "confirm", f"{target} is protected and there is no terminal to ask: pass --yes or confirm={target}"
        )


def _refuse_param(book: runbooks.Runbook, target: str | None, actor: Actor, exc: runbooks.ParamError) -> NoReturn:
    """Audit a parameter's refusal as the web form does, then stop with it: nothing was queued."""
    service.not_queued(book.name, str(exc), target=target, actor=actor, via=VIA)
    typed = f": {exc.param}=…" if exc.label else ""  # "Down to revision is required": say what to type
    shell = f"; from the shell, {exc.from_shell}" if exc.from_shell else ""
    # The runbook's parameters help with one missing or misspelt. Beside a value refused for what it is ("green
    # already serves staging's traffic") they read as if the command were wrong (QA).
    takes = f" ({book.name} takes: {', '.join(p.name for p in book.params) or 'none'})" if exc.misnamed else ""
    raise Refused(f"{exc}{typed}{shell}{takes}") from None


# --- running -------------------------------------------------------------------------


def _run_here(job_id: int, pressed: threading.Event) -> threading.Thread | None:
    """With no runner up, claim this one job and run it in this process; None if a runner has it.

    A claim can miss while the target's lock is still let go by the job before (in another process, its end
    already committed): then it tries again, for no runner is up to start the job, and following it would wait
    for ever. Ctrl-C (`pressed`) is looked at between tries, and raised as KeyboardInterrupt there only: raised
    wherever the main thread was (inside a claim's query, a pool's lock), it could leave the cancel that follows
    waiting on what it broke.
    """
    app = current_app._get_current_object()
    local = Runner(app, workers=1, identity=f"{socket.gethostname()}:{os.getpid()}/cli")
    told = False
    while not runners_alive(app):
        if pressed.is_set():
            raise KeyboardInterrupt
        held = local.claim(job_id)
        if held is not None:
            thread = threading.Thread(target=local.run_claimed, args=(job_id, held), name=f"rewind-cli-job-{job_id}")
            thread.daemon = True  # a second Ctrl-C may leave it: the next runner marks it interrupted
            thread.start()
            return thread
        if not _still_queued(job_id):
            return None  # another runner claimed it first
        if not told:
            click.echo("waiting for the job before it to let go of the target ...")
            told = True
        pressed.wait(CLAIM_RETRY_S)
    if pressed.is_set():  # pressed while it was being queued, with a runner up: a cancel still, which it honours
        raise KeyboardInterrupt
    return None


def _run_here_or_cancel(job_id: int, actor: Actor, pressed: threading.Event) -> threading.Thread | None:
    """_run_here(); Ctrl-C while it waits cancels the job, which would otherwise run whenever a runner next starts."""
    try:
        return _run_here(job_id, pressed)
    except KeyboardInterrupt:
        job = db.session.get(Job, job_id)
        try:
            before_start = service.cancel(job, actor, via=VIA)
        except service.NotCancellable as exc:
            db.session.rollback()
            raise CliError(f"stopped waiting, but {exc}: flask rewind jobs show {job_id}") from None
        if not before_start:  # a runner took it meanwhile: it stops after its current command
            click.echo(f"\nasked job #{job_id} to stop: flask rewind jobs show {job_id}", err=True)
            click.get_current_context().exit(int(ExitStatus.DETACHED))
        click.echo(f"\ncancelled job #{job_id} before it started", err=True)
        click.get_current_context().exit(int(ExitStatus.CANCELLED))


def _still_queued(job_id: int) -> bool:
    state = db.session.scalar(select(Job.state).where(Job.id == job_id))
    db.session.commit()  # end the read, so the next one sees other processes' commits
    return state == JobState.QUEUED


def _cancel_on_interrupt(job_id: int, actor: Actor) -> None:
    click.echo(f"\ncancelling job #{job_id} (Ctrl-C again to stop waiting; the job is then interrupted)", err=True)
    job = db.session.get(Job, job_id)
    try:
        service.cancel(job, actor, via=VIA)
    except service.NotCancellable as exc:
        db.session.rollback()
        click.echo(f"rewind: {exc}", err=True)


@contextlib.contextmanager
def _ctrl_c_noted() -> Iterator[tuple[threading.Event, threading.Event]]:
    """(pressed, news): Ctrl-C sets both, pressed first, instead of raising KeyboardInterrupt wherever the main
    thread is. Raised inside a lock's release (an Event's wait), it left the lock broken: a RuntimeError, no cancel."""
    pressed, news = threading.Event(), threading.Event()
    with signals_set((signal.SIGINT,), pressed, news):
        yield pressed, news


def _wait(
    job_id: int,
    echo,
    here: threading.Thread | None,
    actor: Actor | None,
    said: str = "",
    noted: tuple[threading.Event, threading.Event] | None = None,
) -> JobState:
    """Follow the job to its end; `said` is echoed first, once Ctrl-C is noted (it may invite the press).

    `noted`: the caller's (pressed, news) from _ctrl_c_noted, when it noted Ctrl-C since before the job was queued.
    """
    printer = EventPrinter(job_id, echo)  # one for both follows: after a cancel, it goes on where it was
    with contextlib.nullcontext(noted) if noted else _ctrl_c_noted() as (pressed, news):
        if said:
            echo(said)
        try:
            return follow(job_id, echo, news=news, stop=pressed, printer=printer)
        except KeyboardInterrupt:
            if here is None:
                click.echo(
                    f"\nstopped following; job #{job_id} goes on: flask rewind jobs show {job_id} --follow", err=True
                )
                click.get_current_context().exit(int(ExitStatus.DETACHED))
            # This press is spent before the cancel is asked: once anyone can see the cancel, a press is the second.
            pressed.clear()
            _cancel_on_interrupt(job_id, actor)
            return follow(job_id, echo, news=news, stop=pressed, printer=printer)  # a second Ctrl-C stops waiting


@click.command("run")
@click.argument("target")
@click.argument("runbook")
@click.argument("params", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--as", "as_user", required=True, metavar="USER", help="who runs it (role-checked, audited)")
@click.option("--follow", "follow_job", is_flag=True, help="print steps and log lines; exit with the job's outcome")
@click.option("--yes", is_flag=True, help="confirm a destructive runbook on a protected target without asking")
@with_appcontext
def run(target: str, runbook: str, params: tuple[str, ...], as_user: str, follow_job: bool, yes: bool) -> None:
    """Queue RUNBOOK on TARGET as USER, as the web form does; run it here when no runner is up.

    \b
    TARGET   a name from `flask rewind targets list`; - for runbooks that run
             on Rewind itself (selfcheck)
    RUNBOOK  e.g. restore_backup, revert, reset, deploy, verify; a wrong name
             is answered with the list of them
    KEY=VALUE  the runbook's parameters (a wrong one is answered with those it
             takes); a list is comma-separated ids

    \b
    Examples:
      flask rewind run staging verify --as oncall --follow
      flask rewind run staging revert commits=1a2b3c4 --as oncall
      flask rewind run production restore_backup --as admin --follow \\
          backup=production_20260501_100000.dump.gpg   (asks: type production)

    \b
    Exit status: 0 succeeded (or, without --follow, handed to a running
    runner), 1 Rewind hit an error, 2 bad usage, 3 failed, 4 cancelled,
    5 interrupted, 6 refused (nothing queued), 7 target busy, 8 succeeded
    with warnings, 130 stopped following (Ctrl-C) a job a runner goes on with.
    """
    user = _user(as_user)
    actor = Actor.of(user)  # the user row is not read again once the job runs
    book = _runbook(runbook)
    about = current_targets().known(target)  # a refusal names its target, for that target's timeline
    if not user.can(Role.OPERATOR):
        _deny(user, f"needs the {Role.OPERATOR.label} role", target=about)
    if not user.can(book.role):
        _deny(user, f"needs the {book.role.label} role to run “{book.title}” ({book.name})", target=about)
    target_name = _target(book, target)
    raw = _raw_params(book, params)
    try:
        # Busy first: the parameters' checks read the target (git, the schema gate), which another job is changing.
        service.refuse_if_busy(book, target_name, raw, actor, via=VIA)
    except service.BusyTarget as exc:
        raise Refused(str(exc), ExitStatus.BUSY) from None
    try:
        book.check_values(raw, target_name)  # before asking for the target's name
        _confirm(book, target_name, raw, yes)
        parsed = book.parse_params(raw, target_name)
    except runbooks.ParamError as exc:
        _refuse_param(book, target_name, actor, exc)
    # Ctrl-C is noted from before the job is queued until it is followed to its end: a press anywhere in between
    # becomes the cancel (raised as KeyboardInterrupt at any line, it left a job queued for the next runner, or
    # running here until the process died).
    with _ctrl_c_noted() as noted:
        try:
            job = service.enqueue(book, target_name, parsed, actor, via=VIA)
        except runbooks.ParamError as exc:  # a parameter the user's role may not give (Param.role)
            _refuse_param(book, target_name, actor, exc)
        except service.BusyTarget as exc:
            raise Refused(str(exc), ExitStatus.BUSY) from None
        except service.JobRefused as exc:
            raise Refused(str(exc)) from None
        job_id = job.id
        click.echo(f"queued job #{job_id}: {book.name} on {target_name or 'Rewind'} as {actor.name}")
        here = _run_here_or_cancel(job_id, actor, noted[0])
        if here is None and not follow_job:
            click.echo(f"a runner will start it; follow it with: flask rewind jobs show {job_id} --follow")
            return
        click.echo("no runner is up: running it in this process" if here else "a runner will start it")
        state = _wait(job_id, click.echo if follow_job else lambda line: None, here, actor, noted=noted)
    if here is not None:
        here.join()
    if not follow_job:
        ended = db.session.get(Job, job_id)
        click.echo(f"job #{job_id} {state.label}: {ended.result}")
    click.get_current_context().exit(int(ExitStatus.of(state)))


# --- jobs list / show / cancel ----------------------------------------------------------


@click.group("jobs", cls=AppGroup)
def jobs() -> None:
    """List, show and cancel jobs."""


LIST_WIDTH = 80  # `jobs list` stays readable on a terminal this wide
LIST_LIMIT = 50


def _job(job_id: int) -> Job:
    job = db.session.get(Job, job_id) if 0 < job_id <= ROW_ID_MAX else None
    if job is None:
        raise Refused(f"there is no job #{job_id}; see them with: flask rewind jobs list")
    return job


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


@jobs.command("list")
@click.option("--target", help="only this target's jobs")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="only jobs in this state")
@click.option("--before", type=click.IntRange(min=1), help="only jobs older than this id (the next page)")
@click.option(
    "--limit", default=LIST_LIMIT, show_default=True, type=click.IntRange(1, 1000), help="newest first, this many"
)
def list_jobs(target: str | None, state: str | None, before: int | None, limit: int) -> None:
    """The newest jobs, one a line. When there are more, the last line is the command that lists the older ones.

    Example: flask rewind jobs list --target production --before 120
    """
    stmt = select(Job)
    if target:
        stmt = stmt.where(Job.target == target)
    if state:
        stmt = stmt.where(Job.state == state)
    page = keyset_page(stmt, Job.id, before=before, limit=limit)
    rows = page.items
    if not rows and target and target not in current_targets().names():
        # a target gone from the file keeps its jobs (listed above); a name with neither is a typo
        raise Refused(str(registry.UnknownTarget(target, current_targets().names())))
    if not rows:
        click.echo(f"no jobs older than #{before}" if before else "no jobs")
        return
    click.echo(f"{'ID':>6}  {'STATE':<11} {'RUNBOOK':<21} {'TARGET':<10} {'BY':<10} QUEUED (UTC)")
    for job in rows:
        click.echo(
            f"{job.id:>6}  {job.state:<11} {_cell(job.runbook, 21)} {_cell(job.target or '-', 10)} "
            f"{_cell(job.actor_name, 10)} {job.created_at:%Y-%m-%d %H:%M}"
        )
        if job.result:
            click.echo(f"{'':8}{_cell(job.result.splitlines()[0], LIST_WIDTH - 8).rstrip()}")
    if page.next_cursor is not None:
        click.echo(f"older jobs: {_next_page(target, state, page.next_cursor, limit)}")


def _next_page(target: str | None, state: str | None, before: int, limit: int) -> str:
    """The command for the next (older) page, same filters: an id, not an offset, so new jobs shift nothing."""
    words = ["flask rewind jobs list"]
    words += [f"--target {shlex.quote(target)}"] if target else []
    words += [f"--state {state}"] if state else []
    words += [f"--before {before}"] + ([f"--limit {limit}"] if limit != LIST_LIMIT else [])
    return " ".join(words)


def _cell(text: str, width: int) -> str:
    """TEXT in a column WIDTH wide: cut with an ellipsis rather than push the next columns off an 80-column terminal."""
    return f"{text[: width - 1]}…" if len(text) > width else f"{text:<{width}}"


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--follow", "follow_job", is_flag=True, help="print its lines as they come until it ends; exit as it did")
def show(job_id: int, follow_job: bool) -> None:
    """One job: who, what, when, its steps and log lines, its result and verification.

    JOB_ID is the number `flask rewind jobs list` and `flask rewind run` print.
    With --follow, a job that has not ended is followed as `run --follow` does
    (Ctrl-C stops following, not the job), and the exit status is its outcome's.
    """
    job = _job(job_id)
    shown = runbooks.shown_params(job.params).items()
    params = " ".join(f"{k}={runbooks.typed_value(v)}" for k, v in shown) or "-"  # as `rewind run` takes them
    click.echo(f"job #{job.id}: {job.runbook} on {job.target or 'Rewind'}")
    click.echo(f"state:    {job.state}")
    click.echo(f"by:       {job.actor_name}")
    click.echo(f"params:   {params}")
    click.echo(f"queued:   {_when(job.created_at)}")
    if job.started_at:
        click.echo(f"started:  {_when(job.started_at)} on {job.worker or '?'}")
    if job.finished_at:
        took = f" ({job.duration_s:.1f} s)" if job.started_at else " (it never started)"
        click.echo(f"finished: {_when(job.finished_at)}{took}")
    if job.cancel_requested_by and not job.job_state.is_final:
        click.echo(f"cancel asked by {job.cancel_requested_by}")
    click.echo("")
    if follow_job:
        said = ""
        if job.job_state == JobState.QUEUED and not runners_alive(current_app._get_current_object()):
            said = (
                f"no runner is up: job #{job.id} waits in the queue until one starts (flask rewind worker, or the web "
                f"process); Ctrl-C stops following, flask rewind jobs cancel {job.id} --as USER drops it"
            )
        state = _wait(job.id, click.echo, None, None, said)  # the lines so far, then the rest as they come, its end
        click.get_current_context().exit(int(ExitStatus.of(state)))
    view = replay(job.id, click.echo, outcome=False)  # the result and verification follow, once
    if view.steps:
        click.echo("")
        click.echo("steps:")
        for step in view.steps:
            said = f"  {step.index + 1}. {step.title}: {step.state.label}"
            click.echo(said + (f" - {step.error}" if step.error else ""))
    if job.result:
        click.echo(f"result:   {job.result}")
    if job.verification != "none":
        detail = f" ({job.verification_detail})" if job.verification_detail else ""
        click.echo(f"verification: {job.verification}{detail}")


@jobs.command("cancel")
@click.argument("job_id", type=int)
@click.option("--as", "as_user", required=True, metavar="USER", help="who cancels: role-checked, audited")
def cancel(job_id: int, as_user: str) -> None:
    """Cancel a queued job, or ask a running one to stop (its starter or an admin).

    JOB_ID is the number `flask rewind jobs list` prints. A running job stops
    after its current command (SIGTERM to its process group, then SIGKILL).

    Example: flask rewind jobs cancel 42 --as oncall
    """
    user = _user(as_user)
    job = _job(job_id)
    if not user.can(Role.OPERATOR):
        _deny(user, f"needs the {Role.OPERATOR.label} role", target=job.target)
    if user.id != job.actor_id and not user.can(Role.ADMIN):
        _deny(
            user,
            f"is job #{job.id}, which only its starter ({job.actor_name}) or an admin may cancel",
            target=job.target,
            fix=f"cancel it --as {job.actor_name} or an admin",
        )
    try:
        before_start = service.cancel(job, Actor.of(user), via=VIA)
    except service.NotCancellable as exc:
        db.session.rollback()
        raise Refused(str(exc)) from None
    if before_start:
        click.echo(f"cancelled job #{job.id} before it started")
    else:
        click.echo(f"asked job #{job.id} to stop; it ends as cancelled after its current command")
