"""Running a job on parameters parsed earlier: what a person sees when the target moved while it was queued."""

from __future__ import annotations

from app.audit.store import Actor
from app.jobs import runbook as runbooks
from app.jobs import service
from tests.support.jobs import finished


def queue(app, name: str, params: dict, target: str = "shop"):
    """Queue already-parsed params (as a view did a while ago), wait for the job's end; (job, view)."""
    with app.app_context():
        job_id = service.enqueue(runbooks.get(name), target, params, Actor(None, "rewind")).id
    return finished(app, job_id)
