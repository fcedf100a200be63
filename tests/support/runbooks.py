"""Runbooks for exercising the job engine; loaded with REWIND_RUNBOOKS=tests.support.runbooks."""

from __future__ import annotations

import os
import sys
import time

from app.auth.roles import Role
from app.jobs.context import JobCancelled, JobContext
from app.jobs.runbook import Param, Runbook, Step, StepFailed, register


def count(ctx: JobContext) -> None:
    lines = ctx.params["lines"]
    for i in range(1, lines + 1):
        ctx.log(f"line {i}")
        ctx.progress(i / lines, f"{i}/{lines}")
        if ctx.params["delay"]:
            ctx.sleep(ctx.params["delay"])


def count_plain(ctx: JobContext) -> None:
    for i in range(1, ctx.params["lines"] + 1):
        ctx.log(f"line {i}")


def finish(ctx: JobContext) -> None:
    ctx.verified(True, "counted every line")
    ctx.set_result(f"counted {ctx.params['lines']} lines")


def sleep(ctx: JobContext) -> None:
    ctx.log("about to sleep")
    ctx.progress(0.1, "sleeping")
    script = f"import os, time; print('child up', os.getpid(), flush=True); time.sleep({ctx.params['seconds']})"
    ctx.run([sys.executable, "-c", script])


def stubborn(ctx: JobContext) -> None:
    """Sleep in a command a cancel does not stop, as a swap's renames must not be: the job outlives a cancel."""
    script = f"import os, time; print('child up', os.getpid(), flush=True); time.sleep({ctx.params['seconds']})"
    with ctx.shielded():
        ctx.run([sys.executable, "-c", script])


def change_then_sleep(ctx: JobContext) -> None:
    """A change made, then a command still running when the process stops: the interrupted job must say the change."""
    ctx.did(f"changed {ctx.target}")
    sleep(ctx)


def secret(ctx: JobContext) -> None:
    ctx.add_secret("open-sesame-42")
    ctx.add_secret("s3cr'et-pw")
    ctx.log("connecting to postgresql://app:hunter2-pw@db.internal:5432/app")
    ctx.run([sys.executable, "-c", "print('gpg passphrase open-sesame-42 accepted'); print('PGPASSWORD=s3cr3t-env')"])
    ctx.run([sys.executable, "-c", "import sys; print(len(sys.argv))", "--password", "s3cr'et-pw"])


def half_change(ctx: JobContext) -> None:
    """A change that cannot be cut short, still running when the cancel comes (as a stop for a swap may be)."""
    ctx.log("changing, not cancellable")
    ctx.writer.flush()  # seen at once: the test cancels when it reads this line
    deadline = time.monotonic() + 60
    while ctx.cancel_requested() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    ctx.did("half-changed the target")


def put_back(ctx: JobContext) -> None:
    """Entered though a cancel was asked: puts the change right with a command the cancel does not stop."""
    by = ctx.cancel_requested()
    with ctx.shielded():
        ctx.run([sys.executable, "-c", "print('put back')"])
    if by:
        raise JobCancelled(by, "The change was put back.")


def echo(ctx: JobContext) -> None:
    ctx.log(f"echo: {ctx.params['text']}")


def fail(ctx: JobContext) -> None:
    ctx.run([sys.executable, "-c", "import sys; print('about to fail', file=sys.stderr); sys.exit(3)"])


def mute(ctx: JobContext) -> None:
    """A command that fails without a word, with a secret among its arguments."""
    ctx.add_secret("mute-pw-77")
    ctx.run(["sh", "-c", "exit 1", "sh", "--password", "mute-pw-77"])


def crash(ctx: JobContext) -> None:
    raise StepFailed("the target said no")


register(
    Runbook(
        name="test.count",
        title="Count lines",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        params=(
            Param("lines", "Lines", kind=int, default=20, required=False),
            Param("delay", "Delay", kind=float, default=0.0, required=False),
        ),
        steps=(Step("count", "Count", count), Step("finish", "Finish", finish)),
    )
)


def _sleeper(name: str, title: str, step, *more: Param, replaces_database: bool = False) -> None:
    """A target-holding runbook of one step that sleeps `seconds` in a command."""
    seconds = Param("seconds", "Seconds", kind=int, default=30, required=False)
    register(
        Runbook(
            name=name,
            title=title,
            role=Role.OPERATOR,
            mutates=True,
            replaces_database=replaces_database,
            params=(seconds, *more),
            steps=(Step("sleep", "Sleep", step),),
        )
    )


def deaf(ctx: JobContext) -> None:
    """Sleep in a command that shrugs off SIGTERM (noting it in the file `heard`): only the SIGKILL after the grace
    stops it, so stopping it takes seconds."""
    script = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1], 'a').write('TERM\\n'))\n"
        "print('child up', os.getpid(), flush=True)\n"
        f"time.sleep({ctx.params['seconds']})\n"
    )
    ctx.run([sys.executable, "-c", script, str(ctx.params.get("heard") or os.devnull)])


_sleeper("test.sleep", "Sleep on a target", sleep)
_sleeper("test.stubborn", "Sleep through a cancel", stubborn)
_sleeper("test.change_then_sleep", "Change, then sleep", change_then_sleep)
_sleeper("test.replace", "Sleep as a restore would fill", sleep, replaces_database=True)
_sleeper("test.deaf", "Sleep deaf to SIGTERM", deaf, Param("heard", "File noting SIGTERM", required=False))
register(
    Runbook(
        name="test.put_back",
        title="Change, then put it back if cancelled",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        steps=(
            Step("change", "Change", half_change),
            Step("put_back", "Put back", put_back, handles_cancel=True),
            Step("after", "After", lambda ctx: ctx.log("after")),
        ),
    )
)
register(
    Runbook(
        name="test.secret",
        title="Print secrets",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        steps=(Step("secret", "Say secrets", secret),),
    )
)
register(
    Runbook(
        name="test.fail",
        title="Fail",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        steps=(Step("fail", "Exit 3", fail), Step("never", "Never reached", crash)),
    )
)
register(
    Runbook(
        name="test.mute",
        title="Fail without a word",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        steps=(Step("mute", "Exit 1 silently", mute),),
    )
)
register(
    Runbook(
        name="test.admin",
        title="Admins only",
        role=Role.ADMIN,
        mutates=True,
        steps=(Step("crash", "Refuse", crash),),
    )
)
register(
    Runbook(
        name="test.echo",
        title="Echo on a target",
        role=Role.OPERATOR,
        mutates=False,
        params=(Param("text", "Text"),),
        steps=(Step("echo", "Echo", echo),),
    )
)


def _checkpoint(ctx: JobContext) -> None:
    from app.jobs import steps

    steps.checkpoint(ctx)


register(
    Runbook(
        name="test.checkpoint",
        title="Record a checkpoint",
        role=Role.OPERATOR,
        mutates=True,
        steps=(Step("checkpoint", "Record a checkpoint", _checkpoint),),
    )
)


def nothing_to_do(ctx: JobContext) -> None:
    ctx.skip("nothing older than 1 h")


register(
    Runbook(
        name="test.nothing",
        title="Nothing to do",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        steps=(Step("look", "Look for work", nothing_to_do),),
    )
)
register(
    Runbook(
        name="test.partly",
        title="Count, then nothing to tidy",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        params=(Param("lines", "Lines", kind=int, default=2, required=False),),
        steps=(Step("count", "Count", count_plain), Step("tidy", "Tidy up", nothing_to_do)),
    )
)
