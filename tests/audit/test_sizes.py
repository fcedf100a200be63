"""Audit rows stay small: oversized job parameters are refused, big details are cut before they are stored."""

from sqlalchemy import func, select

from app.audit import store
from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from app.jobs.models import Job
from app.jobs.runbook import MAX_PARAM_CHARS
from tests.support.apps import post


def audit_rows(app) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def test_oversized_parameter_is_refused_with_400_and_nothing_stored(app, as_role):
    client = as_role(Role.OPERATOR)
    before = {row.id for row in audit_rows(app)}
    huge = "Q" * 900_000
    response = post(client, "/jobs", {"runbook": "test.echo", "target": "staging", "text": huge})
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"Text is too long: 900,000 characters, at most {MAX_PARAM_CHARS:,}" in body
    assert "Q" * 100 not in body, "the value must not be echoed back"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    new = [row for row in audit_rows(app) if row.id not in before]
    assert [(row.action, row.outcome) for row in new] == [("job.queued", "denied")]
    assert "Q" * 100 not in new[0].details and "too long" in new[0].details


def test_parameter_at_the_cap_is_accepted(app, as_role):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "test.echo", "target": "staging", "text": "q" * MAX_PARAM_CHARS})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Job)).params["text"] == "q" * MAX_PARAM_CHARS


def test_oversized_target_name_is_refused_without_echo(app, as_role):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "test.echo", "target": "m" * 5000, "text": "hi"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "Target is too long" in body
    assert "m" * 200 not in body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 0


def test_big_details_are_cut_before_they_are_stored_and_the_chain_holds(app):
    with app.app_context():
        event = store.record("test.big", details={"job_id": 3, "note": "x" * 900_000, "small": "kept"})
        db.session.commit()
        stored = db.session.get(AuditEvent, event.id)
        assert len(stored.details) <= store.MAX_DETAILS_CHARS
        assert '"small":"kept"' in stored.details and '"details_cut":true' in stored.details
        assert "900000 characters, cut" in stored.details
        assert stored.job_id == 3
        many = store.record("test.many", details={f"k{i}": "y" * 400 for i in range(200)})
        db.session.commit()
        assert len(db.session.get(AuditEvent, many.id).details) <= store.MAX_DETAILS_CHARS
        assert store.verify().intact
