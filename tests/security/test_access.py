"""Every route, every role, every method, generated from the URL map: a new route is covered the day it lands.

The role each view declares is the contract; this checks the app keeps it:
anonymous callers go to the login page, lower roles get an audited 403, and
only a short reviewed list of routes is open to everyone.
"""

import json
import re

import pytest
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from app.jobs.runbook import all_runbooks
from app.statuses import ExitStatus, Outcome
from tests.conftest import both_databases
from tests.support.apps import add_user, csrf_token, post
from tests.support.security import CALLERS, Route, collect_routes, expectation, runbook_form

ROUTES = collect_routes()

# Reviewed: the only routes anyone may call without signing in.
PUBLIC_ROUTES = {"GET auth.login", "POST auth.login", "GET dashboard.healthz"}
# Routes whose success is to send the caller to the login page.
ENDS_AT_LOGIN = {"auth.logout"}


def test_only_reviewed_routes_are_public():
    public = {r.id for r in ROUTES if r.role == "public"}
    assert public == PUBLIC_ROUTES, "a public route must be reviewed and added to PUBLIC_ROUTES"


def test_every_mutating_route_needs_a_role():
    for route in ROUTES:
        if route.method not in ("GET", "WS") and route.id not in PUBLIC_ROUTES:
            assert isinstance(route.role, Role), route.id


def test_the_matrix_sees_every_route(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert endpoints == {r.endpoint for r in ROUTES}


def test_a_view_without_a_role_stops_start_up():
    from flask import Flask

    from app.auth.guards import ensure_every_view_is_guarded

    bare = Flask(__name__)
    bare.add_url_rule("/oops", "oops", lambda: "hi")
    with pytest.raises(RuntimeError, match="'oops' declares no role"):
        ensure_every_view_is_guarded(bare)


def sample_ids(app, users) -> dict[str, int]:
    """A victim account and a job started by the operator, for the routes that name one."""
    from app.audit.store import Actor
    from app.jobs import runbook, service

    victim = add_user(app, "victim", Role.VIEWER)
    with app.app_context():
        job = service.enqueue(runbook.get("selfcheck"), None, {}, Actor(users[Role.OPERATOR], "operator"))
        return {"user_id": victim, "job_id": job.id}


def denied_rows(app) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied")).all()
        return [(e.actor_name, e.outcome) for e in rows]


@pytest.mark.parametrize("caller", CALLERS, ids=lambda r: r.label if r else "anonymous")
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_route_access(app, users, as_role, route, caller):
    ids = sample_ids(app, users)
    if route.endpoint == "auth.enable_user":
        with app.app_context():
            from app.auth.models import User

            db.session.get(User, ids["user_id"]).disabled = True
            db.session.commit()
    client = as_role(caller) if caller else app.test_client()
    url = route.url(ids)
    if route.method == "WS":
        # a handshake from another site: refused before any upgrade, whoever asks
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Origin": "http://evil.example"}
        headers.update({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
        response = client.get(url, headers=headers)
        assert response.status_code == (401 if caller is None else 403)
        return
    if route.method == "GET":
        response = client.get(url)
    else:
        response = client.open(url, method=route.method, data={**route.form(), "csrf_token": csrf_token(client)})
    expected = expectation(route, caller)
    # Read to the end and closed: a streamed answer (the audit export) runs its whole generator here, and one left
    # unread would be finalised by the garbage collector later, inside whatever request context is active then.
    with response:
        response.get_data()
    status, location = response.status_code, response.headers.get("Location", "")
    if expected == "public":
        assert status < 500 and status != 403
    elif expected == "login":
        assert status == 302 and "/login" in location
    elif expected == "forbidden":
        assert status == 403 and "You may not do this" in response.get_data(as_text=True)
        assert denied_rows(app) == [(caller.label, "denied")]
    else:
        assert status not in (401, 403) and status < 500, response.get_data(as_text=True)[:300]
        if route.endpoint not in ENDS_AT_LOGIN:
            assert "/login" not in location
        assert denied_rows(app) == []


# --- each runbook's own role -----------------------------------------------------------------------

# Every registered runbook (Rewind's own and the test ones), with each role below the one it declares: the route
# matrix above posts only the test runbooks, and a runbook's role is checked after the route's.
RUNBOOK_ROWS = [(book, role) for book in all_runbooks() for role in Role if role < book.role]


def test_every_runbook_has_a_role_row():
    """Every runbook Rewind comes with was loaded when the rows were made (a test module may register its own
    later, at its collection: those are not Rewind's)."""
    ours = {book.name for book in all_runbooks() if book.steps[0].run.__module__.startswith("app.")}
    assert ours and ours <= {book.name for book, _ in RUNBOOK_ROWS}


def _runbook_row_id(row) -> str:
    return row.label if isinstance(row, Role) else row.name


def _target_of(book) -> str | None:
    return "staging" if book.needs_target else None


@pytest.mark.parametrize(("book", "caller"), RUNBOOK_ROWS, ids=_runbook_row_id)
def test_a_runbook_below_its_role_is_a_403_that_queues_nothing(app, users, as_role, book, caller):
    client = as_role(caller)
    target = _target_of(book)
    form = {"runbook": book.name, **({"target": target} if target else {}), **runbook_form(book, target)}
    before = counts(app)
    response = post(client, "/jobs", form)
    assert response.status_code == 403 and "You may not do this" in response.get_data(as_text=True)
    assert counts(app) == before
    assert denied_rows(app) == [(caller.label, "denied")]


@pytest.mark.parametrize(("book", "caller"), RUNBOOK_ROWS, ids=_runbook_row_id)
def test_a_runbook_below_its_role_is_refused_by_the_cli_and_queues_nothing(app, users, book, caller):
    target = _target_of(book)
    pairs = [f"{key}={value}" for key, value in runbook_form(book, target).items()]
    before = counts(app)
    args = ["rewind", "run", target or "-", book.name, *pairs, "--as", caller.label]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == ExitStatus.REFUSED, result.output
    assert f"{caller.label} ({caller.label}) may not do this: it needs the" in result.stderr
    assert counts(app) == before
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied")).all()
        assert [(e.actor_name, e.outcome, json.loads(e.details)["via"]) for e in rows] == [
            (caller.label, "denied", "cli")
        ]


# --- CSRF ----------------------------------------------------------------------------------------

MUTATING = [r for r in ROUTES if r.method not in ("GET", "WS")]


def counts(app) -> dict[str, int]:
    """The rows a refused request must not add: accounts, sessions, jobs, what the flag and env file routes write
    (checkpoints, known-good commits, env file versions), and audit rows of anything done (refusals are audited).

    The flags themselves live in a target's own database; these tests' targets have none, so a flag route can
    write nothing there, and its audited change would show as an "ok" row."""
    from app.auth.models import ServerSession, User
    from app.checkpoints.models import Checkpoint, KnownGood
    from app.envconfig.models import EnvVersion
    from app.jobs.models import Job

    models = (User, Job, ServerSession, Checkpoint, KnownGood, EnvVersion)
    with app.app_context():
        found = {m.__name__: db.session.scalar(select(func.count()).select_from(m)) for m in models}
        done = select(func.count()).select_from(AuditEvent).where(AuditEvent.outcome == Outcome.OK.value)
        found["audited as done"] = db.session.scalar(done)
        return found


@pytest.mark.parametrize("token", ["missing", "forged", "another session's"])
@pytest.mark.parametrize("route", MUTATING, ids=lambda r: r.id)
def test_csrf_matrix(app, users, as_role, route, token):
    """Every state-changing route refuses a request without this session's token, changes nothing, and audits it."""
    ids = sample_ids(app, users)
    client = as_role(Role.ADMIN) if route.id not in PUBLIC_ROUTES else app.test_client()
    form = route.form()
    if token == "forged":
        form["csrf_token"] = "ImZvcmdlZCI.forged.token"
    elif token == "another session's":
        form["csrf_token"] = csrf_token(as_role(Role.ADMIN))
    before = counts(app)
    response = client.open(route.url(ids), method=route.method, data=form)
    assert response.status_code == 400
    assert "Security token missing or wrong" in response.get_data(as_text=True)
    assert counts(app) == before
    with app.app_context():
        refused = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.csrf_refused")).all()
        assert [e.outcome for e in refused] == ["denied"]


# --- ids no row can have ---------------------------------------------------------------------------

# Just past PostgreSQL's `integer`, the type of every ops table's key: the driver must never be handed it.
PAST_ANY_ROW = 2**31
ID_ROUTES = [r for r in ROUTES if "<id:" in r.rule]
CURSOR_PAGES = ["/audit", "/jobs", "/jobs/rows", "/targets/staging/timeline"]
SAME_SITE_HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Origin": "http://localhost",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@both_databases
@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda r: r.id)
def test_an_id_past_any_row_is_a_404_on_either_database(app, users, as_role, route):
    client = as_role(Role.ADMIN)
    url = route.url({"user_id": PAST_ANY_ROW, "job_id": PAST_ANY_ROW})
    if route.method == "WS":
        response = client.get(url, headers=SAME_SITE_HANDSHAKE)
    elif route.method == "GET":
        response = client.get(url)
    else:
        response = client.open(url, method=route.method, data={**route.form(), "csrf_token": csrf_token(client)})
    assert response.status_code == 404


@both_databases
@pytest.mark.parametrize("page", CURSOR_PAGES)
def test_a_cursor_past_any_row_is_the_first_page_on_either_database(app, users, as_role, page):
    assert as_role(Role.VIEWER).get(f"{page}?before={PAST_ANY_ROW}").status_code == 200


# --- unknown targets and objects -------------------------------------------------------------------

# Reviewed: the state-changing routes that name no existing object (in their path or, for jobs.start, a field).
NAMES_NO_OBJECT = {"POST auth.create_user", "POST auth.login", "POST auth.logout"}
UNKNOWN = {"name": "no-such-target", "flag": "no-such-flag", "user_id": 999_999, "job_id": 999_999}
UNKNOWN_FORM = {"jobs.start": [{"runbook": "test.sleep", "target": "no-such-target"}, {"runbook": "no-such-runbook"}]}
NAMING = [r for r in [*MUTATING, *(r for r in ROUTES if r.method == "WS")] if r.id not in NAMES_NO_OBJECT]


def test_every_state_changing_route_is_in_the_unknown_object_matrix():
    for route in NAMING:
        assert "<" in route.rule or route.endpoint in UNKNOWN_FORM, f"{route.id}: add its unknown object here"


def unknown_url(route: Route) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(UNKNOWN[m.group(1)]), route.rule)


@pytest.mark.parametrize("route", NAMING, ids=lambda r: r.id)
def test_an_unknown_target_or_object_is_a_404_that_changes_nothing(app, users, as_role, route):
    client = as_role(Role.ADMIN)
    before = counts(app)
    if route.method == "WS":
        assert client.get(unknown_url(route), headers=SAME_SITE_HANDSHAKE).status_code == 404
        return
    for form in UNKNOWN_FORM.get(route.endpoint, [route.form()]):
        response = client.open(unknown_url(route), method=route.method, data={**form, "csrf_token": csrf_token(client)})
        assert response.status_code == 404, form
        assert counts(app) == before


# --- stale forms -------------------------------------------------------------------------------------

# The admin's account forms carry the row version they were rendered with. The other areas' stale checks
# need a real flags table or env file: tests/flags (toggle), tests/envconfig (diff, restore).
ACCOUNT_FORMS = [r for r in MUTATING if r.rule.startswith("/users/<id:user_id>/")]
CHANGE = {"auth.set_role": {"role": "operator"}}


@pytest.mark.parametrize("route", ACCOUNT_FORMS, ids=lambda r: r.id)
def test_a_stale_account_form_is_a_409_that_changes_nothing(app, users, as_role, route):
    from app.auth.models import User

    client = as_role(Role.ADMIN)
    victim = sample_ids(app, users)["user_id"]
    with app.app_context():
        row = db.session.get(User, victim)
        stale = row.version
        row.version += 1  # someone else's change since the page was loaded
        db.session.commit()
        before = (row.role, row.disabled, row.password_hash, row.version)
    form = {**CHANGE.get(route.endpoint, {}), "version": stale, "csrf_token": csrf_token(client)}
    response = client.open(route.url({"user_id": victim}), method=route.method, data=form)
    assert response.status_code == 409 and "changed by someone else" in response.get_data(as_text=True)
    with app.app_context():
        row = db.session.get(User, victim)
        assert (row.role, row.disabled, row.password_hash, row.version) == before
        refused = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "user.change")).all()
        assert [e.outcome for e in refused] == ["denied"]


def test_a_refusal_for_want_of_a_role_names_the_target_it_was_about(app, users, as_role):
    """An operator's restore of production, a viewer's post to a target's flags: each refusal lands on that
    target's timeline and under its audit filter, as a busy or mistyped one does; a name that is no target stays
    out of the column."""
    from tests.support.apps import post

    operator = as_role(Role.OPERATOR)
    assert post(operator, "/jobs", {"runbook": "test.admin", "target": "staging"}).status_code == 403
    assert post(operator, "/jobs", {"runbook": "test.admin", "target": "nowhere"}).status_code == 403
    assert post(as_role(Role.VIEWER), "/targets/staging/flags/toggle", {"flag": "x"}).status_code == 403
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied")).all()
        assert [(e.actor_name, e.target) for e in rows] == [
            ("operator", "staging"),
            ("operator", None),
            ("viewer", "staging"),
        ]
    timeline = operator.get("/targets/staging/timeline?kind=refusals").get_data(as_text=True)
    assert timeline.count('data-kind="refusals"') == 2, "both refusals about staging, on staging's timeline"


def test_an_in_place_button_s_refusal_carries_its_words_in_a_header_of_bounded_size(app, users, as_role):
    """A button that changes its part of the page in place (htmx) says an error page's words above the page; they
    come in a header (review: dug out of the page's layout before), percent-encoded, at most 1,000 characters."""
    from urllib.parse import unquote

    client = as_role(Role.OPERATOR)
    refused = client.post("/targets/staging/flags/toggle", data={"flag": "x"}, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    said = unquote(refused.headers["X-Rewind-Refusal"])
    assert said.startswith("Security token missing or wrong: Nothing was changed.") and "Reload the page" in said
    assert "X-Rewind-Refusal" not in client.post("/targets/staging/flags/toggle", data={"flag": "x"}).headers
    long = client.get("/targets/" + "n" * 3000, headers={"HX-Request": "true"})
    assert long.status_code == 404 and len(unquote(long.headers["X-Rewind-Refusal"])) == 1000
