"""Waiting for a job the runner took: the one helper the job tests share."""

from __future__ import annotations

from app.extensions import db
from app.jobs.events import JobView, load_view
from app.jobs.models import Job
from tests.conftest import wait_for


def finished(app, job_id: int, timeout: float = 60) -> tuple[Job, JobView]:
    """Wait until the job has ended; the job (detached, readable outside the app context) and its view."""

    def done() -> bool:
        with app.app_context():
            return db.session.get(Job, job_id).job_state.is_final

    wait_for(done, timeout=timeout)
    with app.app_context():
        job = db.session.get(Job, job_id)
        view = load_view(job)
        db.session.expunge(job)
        return job, view
