"""The branch head a page showed, carried by its Reset and Revert forms: refused when the head has moved since.

A Deployments tab drawn before someone deployed, reset or committed still
posts its form. A reset from it would discard commits the person never saw, a
revert would revert against a head they did not see. So the form carries the
head it showed (`seen_head`), checked when the job is queued and again when it
runs (a change may land while it waits). From the shell it is optional: the
job then logs the head it found and starts from that.
"""

from __future__ import annotations

from sqlalchemy import select

from app.checkpoints.models import Checkpoint
from app.deployments.steps import git_of
from app.extensions import db
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.runbook import Param, ParamError, StepFailed
from app.statuses import JobState
from app.targets.errors import TargetError
from app.targets.git import COMMIT_ID

# What each code-changing runbook did to the head, as the refusal says it.
MOVED = {
    "deploy": "deployed",
    "reset": "reset",
    "revert": "reverted",
    "downgrade_then_reset": "reset",
    "downgrade_then_revert": "reverted",
}
LOOK_BACK = 50  # checkpoints read to find the jobs that moved the head


def _same(one: str, other: str) -> bool:
    """Whether two commit ids (either may be short) name the same commit."""
    return bool(one and other) and (one.startswith(other) or other.startswith(one))


def moved_by(target: str, seen: str, now: str) -> str:
    """Who moved `target`'s head from `seen` to `now`, in words: the Rewind jobs that changed the code since (each
    records a checkpoint of the commit it started from), and whether it changed outside Rewind too."""
    rows = db.session.execute(
        select(Checkpoint.commit, Job)
        .join(Job, Job.id == Checkpoint.job_id)
        .where(Checkpoint.target == target)
        .order_by(Checkpoint.id.desc())
        .limit(LOOK_BACK)
    ).all()
    after, movers, by_hand, reached = now, [], False, False
    for commit, job in rows:
        if not commit:
            continue
        if not _same(commit, after):
            if job.runbook in MOVED:
                movers.append(job)
            else:  # a job that leaves the code alone (a flag, a backup) started from a commit since replaced
                by_hand = True
        if _same(commit, seen):
            reached = True
            break
        after = commit
    said = []
    for job in reversed(movers):
        state = "" if job.job_state in (JobState.SUCCEEDED, JobState.WARNING) else f", {job.job_state.label}"
        said.append(f"{MOVED[job.runbook]} by {job.actor_name} in job #{job.id}{state}")
    words = ", then ".join(said)
    if by_hand or not reached:
        outside = "changed outside Rewind: a commit, pull or reset on the server"
        words = f"{words}, and {outside}" if words else outside
    return words


def stale_words(target: str, seen: str, now: str, *, when: str = "as the page showed") -> str:
    return (
        f"{target}'s head is now {now[:12]} ({moved_by(target, seen, now)}), not {seen[:12]} {when}: "
        "nothing was changed; look at the Deployments tab again"
    )


def _check(value: str, target: str | None) -> str:
    """At queue time: the head the page showed must still be the branch's head."""
    seen = value.strip().lower()
    if not COMMIT_ID.match(seen):
        raise ParamError("seen_head", f"expected a commit id of 7-40 hex characters, got {value!r}", "Head shown")
    try:
        now = current_targets().open(target).git().head()
    except TargetError as exc:
        raise ParamError("seen_head", exc.in_words()) from None
    if not _same(now, seen):
        raise ParamError("seen_head", stale_words(target, seen, now))
    return seen


SEEN_HEAD = Param(
    "seen_head",
    "Head shown",
    required=False,
    default="",
    check=_check,
    help="the branch head the page showed: refused if it has moved since (from the shell, optional)",
)


def check_head(ctx: JobContext) -> None:
    """The first step: the head is still the one the page showed, or nothing happens. Without one, say which."""
    seen = ctx.params.get("seen_head") or ""
    repo = git_of(ctx)
    with steps.adapter_errors(ctx):
        now = repo.head()
    if not seen:
        ctx.log(
            f"{ctx.target}'s head is {now[:12]}: no head shown was given (seen_head, as the Deployments tab sends), "
            "so this job starts from the head it found"
        )
    elif not _same(now, seen):
        raise StepFailed(stale_words(ctx.target, seen, now, when="as the page showed when this job was queued"))
    else:
        ctx.log(f"{ctx.target}'s head is {now[:12]}, as the page showed")
    ctx.progress(1.0, now[:12])
