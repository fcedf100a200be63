"""A job's audit rows are found by the indexed job_id column, and the job page's panel follows the job's end."""

import re

from sqlalchemy import text

from app.audit import store
from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from tests.conftest import both_databases, wait_for
from tests.support.apps import post


@both_databases
def test_record_fills_job_id_from_the_details_and_rows_are_found_by_it(app):
    with app.app_context():
        store.record("job.queued", details={"job_id": 5, "runbook": "x"})
        store.record("job.queued", details={"job_id": 55, "runbook": "x"})
        store.record("deploy.start", details={"job_id": 5})
        store.record("auth.login", details={"note": '"job_id":5,'})
        store.record("job.odd", details={"job_id": "5"})
        db.session.commit()
        assert [(e.action, e.job_id) for e in store.job_rows(5)] == [("job.queued", 5), ("deploy.start", 5)]
        assert db.session.get(AuditEvent, 4).job_id is None and db.session.get(AuditEvent, 5).job_id is None
        plan = " ".join(
            str(row)
            for row in db.session.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM audit_event WHERE job_id = 5 ORDER BY id"
                    if db.engine.dialect.name == "sqlite"
                    else "EXPLAIN SELECT id FROM audit_event WHERE job_id = 5 ORDER BY id"
                )
            )
        )
    assert "ix_audit_event_job_id" in plan or "Seq Scan" in plan  # PostgreSQL may scan a five-row table
    if "sqlite" in str(app.config["SQLALCHEMY_DATABASE_URI"]):
        assert "ix_audit_event_job_id" in plan


def test_a_column_edited_in_the_database_does_not_move_rows_between_jobs(app):
    with app.app_context():
        store.record("job.queued", details={"job_id": 7})
        store.record("job.queued", details={"job_id": 8})
        db.session.commit()
        db.session.execute(text("UPDATE audit_event SET job_id = 7 WHERE id = 2"))
        db.session.commit()
        assert [e.id for e in store.job_rows(7)] == [1]


def test_job_page_panel_shows_the_jobs_rows_and_is_refetched_when_it_ends(app, as_role, runner):
    client = as_role(Role.OPERATOR)
    url = post(client, "/jobs", {"runbook": "test.count", "lines": "2"}).headers["Location"]
    job_id = int(url.rsplit("/", 1)[1])
    wait_for(lambda: "job.succeeded" in client.get(f"{url}/audit").get_data(as_text=True))
    panel = client.get(f"{url}/audit").get_data(as_text=True)
    actions = re.findall(r"<code>([a-z_.]+)</code>", panel)
    assert actions == ["job.queued", "job.start", "job.succeeded"]
    assert "hx-trigger" not in panel, "an ended job's panel needs no refresh"
    with app.app_context():
        assert [e.job_id for e in store.job_rows(job_id)] == [job_id] * 3


def test_running_job_panel_waits_for_the_final_event(app, as_role):
    """The panel refetches on content swapped into #job-ended; the final event (and a final snapshot) puts it there."""
    from app.jobs.events import JobView
    from app.jobs.models import JobEvent
    from app.jobs.render import render_event, render_snapshot
    from app.statuses import JobState

    client = as_role(Role.OPERATOR)
    url = post(client, "/jobs", {"runbook": "test.count"}).headers["Location"]
    page = client.get(url).get_data(as_text=True)
    assert f'hx-get="{url}/audit" hx-trigger="htmx:load from:#job-ended"' in page
    assert '<div id="job-ended" hidden></div>' in page
    with app.test_request_context():
        ended = JobView(job_id=1, state=JobState.SUCCEEDED)
        event = JobEvent(job_id=1, seq=9, kind="job", payload_json='{"state": "succeeded"}')
        from app.clock import utcnow

        event.ts = utcnow()
        final = render_event(ended, event)
        snapshot = render_snapshot(ended)
        running = render_event(JobView(job_id=1, state=JobState.RUNNING), event)
    assert '<div id="job-ended" hx-swap-oob="innerHTML">' in final
    assert '<div id="job-ended" hx-swap-oob="innerHTML">' in snapshot
    assert "job-ended" not in running
