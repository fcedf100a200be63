"""One card per target: what runs, whether it is healthy, what was good, what is happening."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.checkpoints import store
from app.dashboard.monitor import Reading
from app.extensions import db
from app.jobs import service
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.statuses import ACTIVE_JOB_STATES, FINAL_JOB_STATES, JobState
from app.targetpage.summaries import Summary, summaries
from app.targets.git import GitError


@dataclass(frozen=True)
class TargetCard:
    name: str
    protected: bool
    head: str | None
    subject: str | None
    problem: str | None  # why the repository could not be read
    health: Reading | None
    known_good: str | None
    busy: Job | None  # the job changing the target now
    running: Job | None = None  # any job running on it (a verify does not make it busy)
    last_job: Job | None = None  # the newest job that has ended
    lines: tuple[Summary, ...] = ()  # one per area: schema, flags, backups, config
    # no mark on the branch, but one was verified: the newest, which a reset (or a force push) removed from it
    known_good_gone: str | None = None
    # why the checkout is not the branch tip (a detached HEAD, another branch, a hot-fix): then "Deployed" is not
    # what the files on the server are, nor what the application runs after its next start
    drift: str | None = None

    @property
    def last_failed(self) -> bool:
        return self.last_job is not None and self.last_job.job_state in (JobState.FAILED, JobState.INTERRUPTED)


def newest_job(target: str, states) -> Job | None:
    return db.session.scalar(
        select(Job)
        .where(Job.target == target, Job.state.in_([s.value for s in states]))
        .order_by(Job.id.desc())
        .limit(1)
    )


def build_cards(health_of) -> list[TargetCard]:
    targets = current_targets()
    return [build_card(targets.open(name), health_of) for name in targets.names()]


def build_card(target, health_of) -> TargetCard:
    """What one target is now: its code, health, last known good and running job."""
    name = target.name
    head = subject = problem = good = gone = drift = None
    try:
        repo = target.git()
        latest = repo.history(limit=1)[0]
        head, subject = latest.sha, latest.subject
        drift = repo.checkout_drift()
        good = store.last_known_good(name, repo.contains)
        if good is None and (newest := store.newest_known_good(name)) is not None:
            gone = newest.commit
    except GitError as exc:
        problem = exc.message
    return TargetCard(
        name=name,
        protected=target.config.protected,
        head=head,
        subject=subject,
        problem=problem,
        health=health_of(name),
        known_good=good.commit if good else None,
        known_good_gone=gone,
        drift=drift,
        busy=service.busy_job(name),
        running=newest_job(name, ACTIVE_JOB_STATES),
        last_job=newest_job(name, FINAL_JOB_STATES),
        lines=tuple(summaries(target)),
    )
