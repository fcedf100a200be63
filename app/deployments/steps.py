"""Steps only the code runbooks need: the repository, and pushing what changed."""

from __future__ import annotations

from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.runbook import StepFailed
from app.targets.git import GitRepo


def git_of(ctx: JobContext) -> GitRepo:
    with steps.adapter_errors(ctx):
        repo = steps.target_of(ctx).git()
        repo.check()
    return repo


def start_commit(ctx: JobContext) -> str:
    """The commit the target ran when the job began, from its checkpoint."""
    code = ctx.state.get("checkpoint", {}).get("code") or {}
    if "commit" not in code:
        raise StepFailed(f"the checkpoint could not read {ctx.target}'s commit: {code.get('error', 'no repository')}")
    return code["commit"]


def push(ctx: JobContext, force: bool = False) -> None:
    target = steps.target_of(ctx)
    if not target.config.repo.remote:
        ctx.skip("no remote is configured (repo.remote): nothing to push")
    if force and not target.config.repo.force_push:
        ctx.skip("force push is not enabled for this target (repo.force_push): the remote was left as it was")
    with steps.adapter_errors(ctx):
        git_of(ctx).push(force=force, sink=ctx)
