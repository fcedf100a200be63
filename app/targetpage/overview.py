"""What a target is right now, gathered for its overview page."""

from __future__ import annotations

from dataclasses import dataclass

from app.dashboard.cards import TargetCard, build_card
from app.jobs.models import Job
from app.targetpage.summaries import Summary, summaries
from app.targets.errors import TargetError
from app.targets.process import ProcessStatus


@dataclass(frozen=True)
class Overview:
    card: TargetCard
    process: ProcessStatus | None  # None: the target has no process control configured
    process_problem: str | None
    running: Job | None
    last_finished: Job | None
    lines: list[Summary]


def build_overview(target, health_of) -> Overview:
    process = problem = None
    control = target.process()
    if control is not None:
        try:
            process = control.status()
        except TargetError as exc:
            problem = str(exc)
    card = build_card(target, health_of)
    return Overview(
        card=card,
        process=process,
        process_problem=problem,
        running=card.running,
        last_finished=card.last_job,
        lines=summaries(target),
    )
