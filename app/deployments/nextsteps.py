"""What a person can do after a failed deploy: the buttons its job page offers, prefilled.

A failed deploy either left the new commits on the branch (automatic rollback
off, or the rollback itself failed) — then "Revert this deploy" undoes exactly
those commits — or was already put back. Either way an admin may reset to the
commit the deploy started from, as long as the branch still has it.

Each button is first put to the schema gate, as the job would be: a deploy
that upgraded the schema cannot be reverted or reset past its revisions, so
where the gate has a plan the page offers the runbook that downgrades first
(downgrade_then_revert, downgrade_then_reset) instead, and where it has none
it offers nothing and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select

from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs import formstate
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.runbook import ParamError
from app.schema.refusal import COMBINED, GateRefusal, planned, verdict_on
from app.statuses import JobState
from app.targets import registry
from app.targets.errors import TargetError
from app.targets.target import Target


@dataclass(frozen=True)
class Gated:
    """The schema gate on one button: allowed (refused == ""), or refused, with the combined runbook's plan or not."""

    refused: str = ""  # why the plain runbook would be refused, with the plan, in words
    plan: GateRefusal | None = None  # the combined runbook to offer instead


@dataclass(frozen=True)
class AfterDeploy:
    target: str
    protected: bool
    started_from: str | None  # the commit the target ran before the deploy
    revert: tuple[str, ...]  # commits the deploy brought that the branch still has; empty: nothing to revert
    head: str | None
    note: str = ""  # why a button is missing, in words
    revert_gate: Gated = Gated()
    reset_gate: Gated = Gated()

    @property
    def can_reset(self) -> bool:
        return bool(self.started_from) and self.head != self.started_from


def after_failed_deploy(job: Job) -> AfterDeploy | None:
    """The next steps for a failed deploy job, or None when the job is not one."""
    if job.runbook != "deploy" or job.job_state not in (JobState.FAILED, JobState.INTERRUPTED) or not job.target:
        return None
    try:
        target = current_targets().open(job.target)
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
    after = AfterDeploy(job.target, protected, started, left, head, note)
    return replace(
        after,
        revert_gate=gated(target, "revert", " ".join(left)) if left else Gated(),
        reset_gate=gated(target, "reset", started) if after.can_reset else Gated(),
    )


def gated(target: Target, verb: str, value: str) -> Gated:
    """What the schema gate says of a revert or reset the page would offer: a button it refuses is not offered."""
    try:
        verdict = verdict_on(target, verb, value)
    except ParamError as exc:
        return Gated(refused=exc.problem)
    except TargetError as exc:
        return Gated(refused=f"the schema gate cannot compare the code with the database: {exc.in_words()}")
    if verdict is None or not verdict.refused:
        return Gated()
    refused = verdict.said
    return Gated(refused, planned(target, verb, value, verdict, formstate.form_for(COMBINED[verb], target.name)))


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
