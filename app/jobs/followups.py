"""The next steps a job's page offers once it has ended, contributed by the area that owns the runbook.

A failed deploy's page offers "Revert this deploy"; a failed restore could
offer its undo. The area registers fn(job) -> data or None and a template
that renders the data as buttons (`data` and `job` are in its context).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.jobs.models import Job


@dataclass(frozen=True)
class Followup:
    template: str
    data: Any


_providers: dict[str, tuple[Callable[[Job], Any], str]] = {}


def register(runbook: str, fn: Callable[[Job], Any], template: str) -> None:
    _providers[runbook] = (fn, template)


def for_job(job: Job) -> Followup | None:
    entry = _providers.get(job.runbook)
    if entry is None or not job.job_state.is_final:
        return None
    fn, template = entry
    data = fn(job)
    return Followup(template, data) if data is not None else None
