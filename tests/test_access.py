"""Every route against every role: a table, so a new route must say who may use it.

A route added without a row here fails test_every_route_is_in_the_table.
"""

import re

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from tests.support.apps import csrf_token

PUBLIC = "public"

# endpoint: (method, role needed, url with placeholders filled by `fill`)
ROUTES = {
    "dashboard.index": ("GET", Role.VIEWER),
    "dashboard.healthz": ("GET", PUBLIC),
    "auth.login": ("GET", PUBLIC),
    "auth.logout": ("POST", Role.VIEWER),
    "auth.users": ("GET", Role.ADMIN),
    "auth.create_user": ("POST", Role.ADMIN),
    "auth.set_role": ("POST", Role.ADMIN),
    "auth.disable_user": ("POST", Role.ADMIN),
    "auth.enable_user": ("POST", Role.ADMIN),
    "auth.reset_password": ("POST", Role.ADMIN),
    "audit.index": ("GET", Role.VIEWER),
    "audit.chain_status": ("GET", Role.VIEWER),
    "audit.export_csv": ("GET", Role.VIEWER),
    "audit.export_jsonl": ("GET", Role.VIEWER),
    "jobs.index": ("GET", Role.VIEWER),
    "jobs.rows": ("GET", Role.VIEWER),
    "jobs.new": ("GET", Role.OPERATOR),
    "jobs.start": ("POST", Role.OPERATOR),
    "jobs.show": ("GET", Role.VIEWER),
    "jobs.cancel": ("POST", Role.OPERATOR),
    "jobs.websocket": ("WS", Role.VIEWER),
    "dashboard.cards": ("GET", Role.VIEWER),
    "deployments.index": ("GET", Role.VIEWER),
    "deployments.history": ("GET", Role.VIEWER),
    "targetpage.overview": ("GET", Role.VIEWER),
    "targetpage.timeline": ("GET", Role.VIEWER),
    "deployments.commit": ("GET", Role.VIEWER),  # handshakes are covered in tests/jobs/test_websocket.py
}

CALLERS = [None, Role.VIEWER, Role.OPERATOR, Role.ADMIN]


def test_every_route_is_in_the_table(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert endpoints == set(ROUTES), "add new routes to ROUTES with the role they need"


def test_table_matches_the_declared_roles(app):
    for endpoint, (_, role) in ROUTES.items():
        assert app.view_functions[endpoint].required_role == role, endpoint


def test_a_view_without_a_role_stops_start_up():
    from flask import Flask

    from app.auth.guards import ensure_every_view_is_guarded

    bare = Flask(__name__)
    bare.add_url_rule("/oops", "oops", lambda: "hi")
    with pytest.raises(RuntimeError, match="'oops' declares no role"):
        ensure_every_view_is_guarded(bare)


QUERY = {"jobs.new": "?runbook=selfcheck"}


def url_for_rule(app, endpoint: str, victim_id: int, job_id: int) -> str:
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    url = re.sub(r"<(?:int:)?user_id>", str(victim_id), rule.rule)
    url = re.sub(r"<(?:int:)?job_id>", str(job_id), url)
    url = url.replace("<name>", "staging").replace("<sha>", "abcdef1")
    return url + QUERY.get(endpoint, "")


# Allowed callers may still be told "not found" where the table's sample ids do not exist.
ANSWERS = {"deployments.commit": (404,)}


def queued_job(app, starter_id: int) -> int:
    """A job started by the operator, for the job routes."""
    from app.audit.store import Actor
    from app.jobs import runbook, service

    with app.app_context():
        return service.enqueue(runbook.get("selfcheck"), None, {}, Actor(starter_id, "operator")).id


@pytest.mark.parametrize("caller", CALLERS, ids=lambda r: r.label if r else "anonymous")
@pytest.mark.parametrize("endpoint", sorted(e for e, (method, _) in ROUTES.items() if method != "WS"))
def test_route_access(app, users, as_role, endpoint, caller):
    from tests.support.apps import add_user

    method, needed = ROUTES[endpoint]
    victim = add_user(app, "victim", Role.VIEWER)
    job_id = queued_job(app, users[Role.OPERATOR])
    if endpoint == "auth.enable_user":
        with app.app_context():
            from app.auth.models import User

            db.session.get(User, victim).disabled = True
            db.session.commit()
    client = as_role(caller) if caller else app.test_client()
    url = url_for_rule(app, endpoint, victim, job_id)
    if method == "GET":
        response = client.get(url)
    else:
        data = {"csrf_token": csrf_token(client), "version": "", "name": "newcomer", "role": "operator"}
        data["runbook"] = "selfcheck"
        response = client.post(url, data=data)

    if needed == PUBLIC:
        assert response.status_code in (200, 302)
    elif caller is None:
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    elif caller < needed:
        assert response.status_code == 403
        assert "You may not do this" in response.get_data(as_text=True)
        with app.app_context():
            denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied")).all()
        assert [(e.actor_name, e.outcome) for e in denied] == [(caller.label, "denied")]
    else:
        allowed = ANSWERS.get(endpoint, (200, 201, 302, 303))
        assert response.status_code in allowed, response.get_data(as_text=True)[:500]
