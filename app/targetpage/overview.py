"""What a target is right now, gathered for its overview page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.dashboard.cards import TargetCard, build_card
from app.extensions import db
from app.jobs.models import Job
from app.statuses import ACTIVE_JOB_STATES, FINAL_JOB_STATES
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


def newest_job(target: str, states) -> Job | None:
    return db.session.scalar(
        select(Job)
        .where(Job.target == target, Job.state.in_([s.value for s in states]))
        .order_by(Job.id.desc())
        .limit(1)
    )


def build_overview(target, health_of) -> Overview:
    process = problem = None
    control = target.process()
    if control is not None:
        try:
            process = control.status()
        except TargetError as exc:
            problem = str(exc)
    return Overview(
        card=build_card(target, health_of),
        process=process,
        process_problem=problem,
        running=newest_job(target.name, ACTIVE_JOB_STATES),
        last_finished=newest_job(target.name, FINAL_JOB_STATES),
        lines=summaries(target),
    )
