"""Anonymous refusals are audited without letting a flood of requests flood the audit log."""

import json

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.audit.store import verify
from app.extensions import db
from tests.support.apps import login


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusals(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.csrf_refused")).all()
        return [json.loads(e.details) for e in rows]


def test_fifty_tokenless_logins_from_one_address_make_one_row_then_a_count(app):
    clock = Clock()
    app.extensions["rewind.refusals"].clock = clock
    flood = app.test_client()
    flood.environ_base["REMOTE_ADDR"] = "127.0.0.9"
    for _ in range(50):
        assert flood.post("/login", data={"name": "admin", "password": "x"}).status_code == 400
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    assert other.post("/login", data={"name": "admin"}).status_code == 400
    rows = refusals(app)
    assert [r.get("path") for r in rows] == ["/login", "/login"], "one row per address in the window"

    clock.now += 61  # the window has passed; the next refusal writes what was counted
    assert flood.post("/login", data={"name": "admin"}).status_code == 400
    rows = refusals(app)
    summary = next(r for r in rows if "summary" in r)
    assert summary == {"address": "127.0.0.9", "count": 50, "summary": "refused 50 times from 127.0.0.9 in 60 s"}
    assert len(rows) == 4, "the two firsts, the count, and the new window's first"
    with app.app_context():
        assert verify().intact


def test_signed_in_refusals_are_each_audited(app, users, as_role):
    from app.auth.roles import Role

    client = as_role(Role.ADMIN)
    for _ in range(3):
        assert client.post("/users", data={"name": "eve", "role": "admin"}).status_code == 400
    assert len(refusals(app)) == 3


def test_sign_ins_while_locked_out_are_counted_not_each_audited(app, users):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.4"
    for _ in range(5):
        assert login(client, "viewer", "wrong-password").status_code == 401
    for _ in range(20):
        assert login(client, "viewer").status_code == 429
    with app.app_context():
        lockouts = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.lockout")).all()
    assert len(lockouts) == 2, "the lock itself, then the first refused try of the minute"


def test_a_flood_that_stops_is_still_counted_by_the_next_request(app):
    clock = Clock()
    app.extensions["rewind.refusals"].clock = clock
    flood = app.test_client()
    flood.environ_base["REMOTE_ADDR"] = "127.0.0.9"
    for _ in range(7):
        flood.post("/login", data={"name": "admin"})
    assert len(refusals(app)) == 1
    clock.now += 61
    assert app.test_client().get("/healthz").status_code == 200  # a load balancer's probe, say
    summary = refusals(app)[-1]
    assert summary["summary"] == "refused 7 times from 127.0.0.9 in 60 s"
