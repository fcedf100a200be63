"""What a person can do after a failed deploy: the buttons its job page offers, prefilled.

A failed deploy either left the new commits on the branch (automatic rollback
off, or the rollback itself failed) — then "Revert this deploy" undoes exactly
those commits — or was already put back. Either way an admin may reset to the
commit the deploy started from, as long as the branch still has it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs.models import Job
from app.statuses import JobState
from app.targets import registry
from app.targets.errors import TargetError


@dataclass(frozen=True)
class AfterDeploy:
    target: str
    protected: bool
    started_from: str | None  # the commit the target ran before the deploy
    revert: tuple[str, ...]  # commits the deploy brought that the branch still has; empty: nothing to revert
    head: str | None
    note: str = ""  # why a button is missing, in words

    @property
    def can_reset(self) -> bool:
        return bool(self.started_from) and self.head != self.started_from


def after_failed_deploy(job: Job) -> AfterDeploy | None:
    """The next steps for a failed deploy job, or None when the job is not one."""
    if job.runbook != "deploy" or job.job_state not in (JobState.FAILED, JobState.INTERRUPTED) or not job.target:
        return None
    try:
        target = registry.current().open(job.target)
    except registry.UnknownTarget:
        return None
    started = db.session.scalar(
        select(Checkpoint.commit).where(Checkpoint.job_id == job.id).order_by(Checkpoint.id).limit(1)
    )
    deployed = job.params.get("ref")
    protected = target.config.protected
    if not started:
        return AfterDeploy(job.target, protected, None, (), None, "the deploy recorded no checkpoint before it failed")
    try:
        repo = target.git()
        head = repo.head()
        brought = repo.between(started, deployed) if deployed else []
        still = tuple(sha for sha in brought if repo.contains(sha))
        if not repo.contains(started):
            return AfterDeploy(job.target, protected, None, still, head, f"{started[:12]} is no longer on the branch")
    except TargetError as exc:
        return AfterDeploy(job.target, protected, None, (), None, f"the repository could not be read: {exc.in_words()}")
    reverted = _reverted_since(job)
    left = tuple(sha for sha in still if sha not in reverted)
    if left:
        note = ""
    elif still:
        note = f"job #{max(reverted[sha] for sha in still)} already reverted this deploy"
    else:
        note = "the deployed commits are no longer on the branch: the deploy was already undone"
    return AfterDeploy(job.target, protected, started, left, head, note)


def _reverted_since(job: Job) -> dict[str, int]:
    """Commits that a later successful revert on the same target undid, with that job's id."""
    later = db.session.scalars(
        select(Job).where(
            Job.target == job.target,
            Job.id > job.id,
            Job.runbook == "revert",
            Job.state.in_([JobState.SUCCEEDED.value, JobState.WARNING.value]),
        )
    )
    return {sha: revert.id for revert in later for sha in revert.params.get("commits") or []}
