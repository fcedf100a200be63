"""Running a job on parameters parsed earlier: what a person sees when the target moved while it was queued."""

from __future__ import annotations

from app.audit.store import Actor
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.events import load_view
from app.jobs.models import Job
from tests.conftest import wait_for


def queue(app, name: str, params: dict, target: str = "shop"):
    """Queue already-parsed params (as a view did a while ago), wait for the job's end; (job, view)."""
    with app.app_context():
        job_id = service.enqueue(runbooks.get(name), target, params, Actor(None, "rewind")).id

    def done() -> bool:
        with app.app_context():
            return db.session.get(Job, job_id).job_state.is_final

    wait_for(done, timeout=60)
    with app.app_context():
        job = db.session.get(Job, job_id)
        view = load_view(job)
        db.session.expunge(job)
        return job, view
