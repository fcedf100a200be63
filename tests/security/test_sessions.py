"""Server-side sessions: a cookie is only as good as the live row it names."""

import time
from datetime import timedelta

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.models import ServerSession, User
from app.auth.roles import Role
from app.extensions import db
from tests.support.apps import login, post

COOKIE = "rewind_session"


def cookie_of(client) -> str:
    return client.get_cookie(COOKIE).value


def with_cookie(app, value: str):
    other = app.test_client()
    other.set_cookie(COOKIE, value)
    return other


def rows(app) -> list[ServerSession]:
    with app.app_context():
        found = db.session.scalars(select(ServerSession).order_by(ServerSession.id)).all()
        db.session.expunge_all()
        return found


def test_a_cookie_copied_before_logout_is_refused_after_it(app, users, as_role):
    client = as_role(Role.VIEWER)
    copied = cookie_of(client)
    assert with_cookie(app, copied).get("/").status_code == 200, "the copy works while the session is live"
    assert post(client, "/logout").status_code == 302
    response = with_cookie(app, copied).get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    (row,) = rows(app)
    assert row.ended_at is not None and row.end_reason == "logout"


def test_a_forged_cookie_for_a_session_never_issued_is_refused(app, users):
    """Even with the secret key, a cookie signs nobody in without a session row the server issued."""
    serializer = app.session_interface.get_signing_serializer(app)
    admin_id = str(users[Role.ADMIN])
    # everything a cookie of the old, cookie-only scheme carried (a fresh account is at version 1)
    signed_in = {"_user_id": admin_id, "_fresh": True, "account_version": 1, "seen": int(time.time())}
    for forged in (signed_in, {**signed_in, "sid": "made-up-session-token"}):
        response = with_cookie(app, serializer.dumps(forged)).get("/users")
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_another_users_session_token_does_not_sign_in_as_admin(app, users, as_role):
    viewer = as_role(Role.VIEWER)
    serializer = app.session_interface.get_signing_serializer(app)
    stolen = serializer.loads(cookie_of(viewer))
    forged = serializer.dumps({**stolen, "_user_id": str(users[Role.ADMIN])})
    assert with_cookie(app, forged).get("/users").status_code == 302


def test_a_role_change_ends_the_users_sessions(app, users, as_role):
    victim = as_role(Role.OPERATOR)
    admin = as_role(Role.ADMIN)
    with app.app_context():
        version = db.session.get(User, users[Role.OPERATOR]).version
    response = post(admin, f"/users/{users[Role.OPERATOR]}/role", {"role": "viewer", "version": version})
    assert response.status_code == 302
    assert victim.get("/").status_code == 302
    ended = [r.end_reason for r in rows(app) if r.user_id == users[Role.OPERATOR]]
    assert ended == ["account changed"]
    assert admin.get("/users").status_code == 200, "the admin's own session is untouched"


def test_the_absolute_lifetime_ends_an_active_session(app, users, as_role):
    client = as_role(Role.VIEWER)
    assert client.get("/").status_code == 200
    with app.app_context():
        for row in db.session.scalars(select(ServerSession)):
            row.created_at -= timedelta(hours=12, minutes=1)  # busy all along: last_seen stays fresh
        db.session.commit()
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    with app.app_context():
        (event,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.expired")).all()
        assert event.actor_name == "viewer" and '"reason":"lifetime"' in event.details
    assert [r.end_reason for r in rows(app)] == ["lifetime"]


def _stale_read(app) -> tuple[ServerSession, User]:
    """The session row and its user as a checker read them, 31 minutes after the last request."""
    with app.app_context():
        row = db.session.scalars(select(ServerSession)).one()
        row.last_seen_at -= timedelta(minutes=31)
        db.session.commit()
    session = db.session()
    row = session.scalars(select(ServerSession)).one()
    return row, session.get(User, row.user_id)


def test_a_session_used_in_another_tab_after_the_idle_check_read_it_is_not_ended(app, users, as_role):
    """The check read it idle; a request in another tab moved last_seen_at before the check wrote the end."""
    from app.auth import sessions

    as_role(Role.VIEWER)
    with app.app_context():
        row, user = _stale_read(app)
        with db.engine.begin() as other:  # the other tab's request, committed in between
            other.execute(ServerSession.__table__.update().values(last_seen_at=sessions.utcnow()))
        verdict = sessions._judge(row, user, idle=timedelta(minutes=30), lifetime=timedelta(hours=12))
        assert verdict.refused is None and verdict.row is not None
    assert [r.ended_at for r in rows(app)] == [None]


def test_of_two_checks_that_find_a_session_idle_only_the_first_ends_it(app, users, as_role):
    """A job page's stream and a request: one "idle" (audited by its caller), the other finds it ended."""
    from app.auth import sessions

    as_role(Role.VIEWER)
    limits = {"idle": timedelta(minutes=30), "lifetime": timedelta(hours=12)}
    with app.app_context():
        row, user = _stale_read(app)
        with app.app_context():  # the other checker, in its own session, first
            other, other_user = _stale_read(app)
            assert sessions._judge(other, other_user, **limits).refused == "idle"
        assert sessions._judge(row, user, **limits).refused == "ended"
    assert [r.end_reason for r in rows(app)] == ["idle"]


def test_the_lifetime_is_a_setting(tmp_path, sqlite_users_template):
    from tests.support.apps import build_app

    app = build_app(tmp_path / "i", sqlite_users_template.new_url(tmp_path), REWIND_SESSION_HOURS="1")
    client = app.test_client()
    assert login(client, "viewer").status_code == 302
    with app.app_context():
        for row in db.session.scalars(select(ServerSession)):
            row.created_at -= timedelta(minutes=61)
        db.session.commit()
    assert client.get("/").status_code == 302


def test_unknown_names_are_hashed_like_known_ones(app, users, monkeypatch):
    """No timing oracle: a sign-in as nobody costs one password hash, as a sign-in as someone does."""
    from app.auth import accounts

    calls = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda h, p: calls.append(p) or real(h, p))
    assert login(app.test_client(), "nobody", "guess-password-1").status_code == 401
    assert login(app.test_client(), "viewer", "guess-password-2").status_code == 401
    assert calls == ["guess-password-1", "guess-password-2"]


def test_hsts_only_with_secure_cookies(tmp_path, sqlite_template, client):
    from tests.support.apps import build_app

    assert "Strict-Transport-Security" not in client.get("/login").headers
    secure = build_app(tmp_path / "s", sqlite_template.new_url(tmp_path), REWIND_SECURE_COOKIES="1")
    header = secure.test_client().get("/login").headers["Strict-Transport-Security"]
    assert header.startswith("max-age=") and int(header.split("=")[1].split(";")[0]) >= 15552000


def test_long_unused_session_rows_are_dropped_at_the_next_sign_in(app, users, as_role):
    as_role(Role.VIEWER)
    with app.app_context():
        for row in db.session.scalars(select(ServerSession)):
            row.last_seen_at -= timedelta(days=31)
        db.session.commit()
    as_role(Role.OPERATOR)
    assert [r.user_id for r in rows(app)] == [users[Role.OPERATOR]]
