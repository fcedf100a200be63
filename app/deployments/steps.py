"""Steps only the code runbooks need: the repository, fetching, release commands, and pushing what changed."""

from __future__ import annotations

from app.jobs import steps
from app.jobs.context import JobCancelled, JobContext
from app.jobs.runbook import StepFailed
from app.jobs.steps import ReleaseFailed, run_release_commands
from app.targets.errors import TargetError
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


def fetch(ctx: JobContext) -> None:
    """Bring the remote's branches in; the deployed branch does not move, so a failure changes nothing."""
    target = steps.target_of(ctx)
    remote = target.config.repo.remote
    if not remote:
        ctx.skip("no remote is configured (repo.remote): nothing to fetch")
    with steps.adapter_errors(ctx):
        repo = git_of(ctx)
        fetched = repo.fetch_changes(sink=ctx)
        for name, (old, new) in fetched.rewritten.items():
            ctx.log(f"{name} was force-pushed: {old[:12]} -> {new[:12]}, which does not contain it", "err")
        if "ref" in ctx.params:  # a deploy: what it merges must still be what the remote offers
            repo.check_upstream(fetched)
            _still_chosen(ctx, repo)
    names = fetched.branches
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    ctx.log(f"{remote} has {len(names)} branch(es): {shown or 'none'}")
    ctx.set_result(f"Fetched from {remote}: {len(names)} branch(es); {target.config.repo.branch} was not changed.")
    ctx.progress(1.0, f"fetched {remote}")


def _still_chosen(ctx: JobContext, repo: GitRepo) -> None:
    """A deploy of `origin/x` merges the commit it named when queued: refuse it if the fetch shows it gone."""
    typed, sha = (ctx.params.get("ref_typed") or "").strip(), ctx.params["ref"]
    # What resolve_ref_for_deploy took for a remote branch: a local branch of that name comes first.
    if not typed.startswith(f"{repo.remote}/") or typed in repo.branches():
        return
    now = repo.check_still_on(sha, typed)
    if now != sha:
        ctx.log(f"{typed} has moved on to {now[:12]} since this deploy was chosen; deploying {sha[:12]} as chosen")


def put_code_back(ctx: JobContext, start: str, *, cancelled: bool = False) -> str:
    """Return the branch to `start` after a failed release; the failed head is kept as a tag. Says what it did.

    After a cancel, git's output is not streamed through the job (whose sink
    now reads as cancelled and would stop git at once).
    """
    repo = git_of(ctx)
    with steps.adapter_errors(ctx):
        head = repo.head()
        tag = None
        if head != start:
            tag = repo.tag_safety(
                prefix="rewind/failed-release",
                message=f"Rewind safety tag: {repo.branch} was at {head} when its release commands failed",
            )
        discarded = repo.put_back(start, sink=None if cancelled else ctx)
    if discarded:
        ctx.log(f"discarded what the release commands changed in tracked files: {', '.join(discarded[:10])}")
    kept = f" (the failed code is kept as tag {tag})" if tag else ""
    ctx.did(f"put the code back at {start[:12]}{kept}")
    return f"the code was put back at {start[:12]}{kept}"


def release(ctx: JobContext, *, schema_at: str | None = None) -> None:
    """After the code changed, before the restart: run the release commands, or put the code back.

    `schema_at`: the revision a downgrade took the database to before this code change. Then a failure leaves the
    code where the change put it, which matches that revision: put back, it would want the revisions the downgrade
    removed, and the next restart would start it against a schema behind it.
    """
    target = steps.target_of(ctx)
    if target.config.release is None:
        ctx.skip(f"no release commands are configured ([targets.{ctx.target}.release])")
    start = start_commit(ctx)
    try:
        count = run_release_commands(ctx, target)
    except (JobCancelled, ReleaseFailed) as exc:
        if schema_at is not None:
            raise _left_matching_the_schema(ctx, exc, start, schema_at) from None
        if isinstance(exc, JobCancelled):
            # Stopped half-way: the new code must not be left for the next restart to pick up.
            ctx.log(f"cancelled during the release commands: {put_code_back(ctx, start, cancelled=True)}", "err")
            raise
        ctx.log(str(exc), "err")
        try:
            put_back = put_code_back(ctx, start)
        except StepFailed as again:
            raise StepFailed(
                f"{exc}; putting the code back at {start[:12]} failed too: {again}. {ctx.target} was not restarted"
            ) from None
        raise StepFailed(
            f"{exc}. Nothing was restarted: {put_back}, and {ctx.target} still runs the process it ran before."
        ) from None
    ctx.log(f"{count} release command(s) passed")


def _left_matching_the_schema(ctx: JobContext, exc: Exception, start: str, schema_at: str) -> Exception:
    """What a release that failed (or was cancelled) after a downgrade and a code change says: where each stands."""
    try:
        code = f"The code stays at {git_of(ctx).head()[:12]}"
    except TargetError:  # the message must still be said: where the code is matters less than what to do
        code = "The code stays where the change put it"
    where = (
        f"{code}, which matches the database, downgraded to {schema_at} before; {ctx.target} was not restarted, "
        f"and its process, started on {start[:12]}, runs against that database. Mend the release commands and run "
        f"them, then restart (the restart runbook); or upgrade the schema back and reset the code to {start[:12]}"
    )
    if isinstance(exc, JobCancelled):
        ctx.log(f"cancelled during the release commands: {where}", "err")
        return JobCancelled(exc.by, f"{where}.")
    ctx.log(str(exc), "err")
    return StepFailed(f"{exc}. {where}.")
