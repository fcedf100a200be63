"""One card per target: what runs, whether it is healthy, what was good, what is happening."""

from __future__ import annotations

from dataclasses import dataclass

from app.checkpoints import store
from app.jobs import service
from app.jobs.models import Job
from app.targets import registry
from app.targets.git import GitError
from app.targets.monitor import Reading


@dataclass(frozen=True)
class TargetCard:
    name: str
    protected: bool
    head: str | None
    subject: str | None
    problem: str | None  # why the repository could not be read
    health: Reading | None
    known_good: str | None
    busy: Job | None


def build_cards(health_of) -> list[TargetCard]:
    targets = registry.current()
    return [build_card(targets.open(name), health_of) for name in targets.names()]


def build_card(target, health_of) -> TargetCard:
    """What one target is now: its code, health, last known good and running job."""
    name = target.name
    head = subject = problem = good = None
    try:
        repo = target.git()
        latest = repo.history(limit=1)[0]
        head, subject = latest.sha, latest.subject
        good = store.last_known_good(name, repo.contains)
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
        busy=service.busy_job(name),
    )
