"""Steps shared by the code runbooks: checkpoint, restart, verify, push.

Plain functions of a JobContext; adapters do the work, and every adapter
error becomes a StepFailed whose message says what to do next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.deployments import checkpoints
from app.jobs.context import JobCancelled, JobContext
from app.jobs.process import CommandCancelled
from app.jobs.runbook import StepFailed
from app.targets import registry
from app.targets.git import GitError, GitRepo
from app.targets.health import SmokeTestError, run_smoke
from app.targets.process import ProcessControl, ProcessError


def target_of(ctx: JobContext):
    return registry.target(ctx.target)


def say(ctx: JobContext):
    """Adapters report (stream, text); the job log takes (text, stream)."""
    return lambda stream, text: ctx.log(text, stream)


@contextmanager
def adapter_errors(ctx: JobContext) -> Iterator[None]:
    """An adapter's error becomes the step's failure, in its own words, secrets masked."""
    try:
        yield
    except (GitError, ProcessError) as exc:
        raise StepFailed(ctx.redact(getattr(exc, "message", None) or str(exc))) from None


def git_of(ctx: JobContext) -> GitRepo:
    with adapter_errors(ctx):
        repo = target_of(ctx).git()
        repo.check()
    return repo


def control_of(ctx: JobContext) -> ProcessControl:
    control = target_of(ctx).process()
    if control is None:
        raise StepFailed(f"{ctx.target} has no process control: add [targets.{ctx.target}.process] to the targets file")
    return control


def checkpoint(ctx: JobContext) -> None:
    """Remember the deployed commit before anything changes, so the whole target can be put back."""
    repo = git_of(ctx)
    head = repo.head()
    ctx.state["start_commit"] = head
    row = checkpoints.record_checkpoint(ctx.target, ctx.job_id, ctx.runbook_title, head)
    ctx.log(f"checkpoint #{row.id}: {ctx.target} runs {head[:12]}")
    ctx.progress(1.0, head[:12])


def restart(ctx: JobContext) -> None:
    control = control_of(ctx)
    ctx.check_cancelled()
    with adapter_errors(ctx):
        control.restart(on_line=say(ctx))
    ctx.progress(1.0, "restarted")


def verify(ctx: JobContext) -> None:
    """Healthy within the timeout, then the smoke command; the result is the job's verification."""
    passed, detail = check_health(ctx)
    if not passed:
        ctx.verified(False, detail)
        raise StepFailed(detail)
    verify_passed(ctx, detail)


def verify_passed(ctx: JobContext, detail: str) -> None:
    ctx.verified(True, detail)
    head = git_of(ctx).head()
    checkpoints.mark_known_good(ctx.target, head, ctx.job_id)
    ctx.log(f"{head[:12]} marked known-good on {ctx.target}")


def check_health(ctx: JobContext) -> tuple[bool, str]:
    target = target_of(ctx)
    health = target.health()
    if health is None:
        return False, f"{ctx.target} has no health check: add [targets.{ctx.target}.health] to verify it"
    attempts = 0

    def on_probe(probe) -> None:
        nonlocal attempts
        attempts += 1
        ctx.log(f"probe {attempts}: {probe}")
        ctx.progress(min(0.9, attempts / 20), probe.reason)

    control = target.process()
    try:
        verdict = health.wait_healthy(
            should_cancel=lambda: ctx.cancel_requested() is not None,
            on_probe=on_probe,
            process=control.watch() if control is not None else None,
        )
    except CommandCancelled:
        raise JobCancelled(ctx.cancel_requested() or "someone") from None
    if not verdict.ok:
        detail = f"{ctx.target} did not become healthy: {verdict.reason}"
        if verdict.probe is not None and verdict.probe.status is not None:
            detail += f"\nlast answer: {verdict.answer}"
        if tail := (control.log_tail() if control is not None else []):
            detail += f"\nlast {len(tail)} lines of its log:\n" + "\n".join(f"  {line}" for line in tail)
        for line in detail.splitlines()[1:]:
            ctx.log(line, "err")
        return False, ctx.redact(detail)
    detail = f"healthy: {verdict.reason}"
    smoke = target.config.health.smoke
    if smoke:
        try:
            code = run_smoke(
                list(smoke),
                timeout=300,
                on_line=say(ctx),
                should_cancel=lambda: ctx.cancel_requested() is not None,
            )
        except SmokeTestError as exc:
            return False, ctx.redact(str(exc))
        except CommandCancelled:
            raise JobCancelled(ctx.cancel_requested() or "someone") from None
        if code != 0:
            return False, f"the smoke test exited with status {code}"
        detail += "; smoke test passed"
    ctx.progress(1.0, "healthy")
    return True, detail


def push(ctx: JobContext, force: bool = False) -> None:
    target = target_of(ctx)
    if not target.config.repo.remote:
        ctx.log("no remote configured: nothing to push")
        return
    if force and not target.config.repo.force_push:
        ctx.log("force push is not enabled for this target (repo.force_push): the remote was left as it was")
        return
    with adapter_errors(ctx):
        git_of(ctx).push(force=force, on_line=say(ctx))
