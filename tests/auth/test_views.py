"""Sign-in, lock-out, CSRF, idle expiry and the admin's user pages, through the real app."""

import html
import json
import re
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.models import User
from app.auth.roles import Role
from app.extensions import db
from tests.conftest import both_databases
from tests.support.apps import add_user, csrf_token, login, post
from tests.support.pages import names, repeated_names


def events(app, action: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        rows = db.session.scalars(stmt).all()
        db.session.expunge_all()
        return rows


@both_databases
def test_login_and_logout_are_audited(app, client, users):
    response = login(client, "operator")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "operator" in client.get("/").get_data(as_text=True)
    assert post(client, "/logout").status_code == 302
    assert client.get("/").status_code == 302, "signed out: the dashboard sends to the login page"
    actions = [(e.action, e.actor_name, e.outcome) for e in events(app) if e.action.startswith("auth.")]
    assert actions == [("auth.login", "operator", "ok"), ("auth.logout", "operator", "ok")]


def test_wrong_password_is_refused_and_audited(app, client, users):
    response = login(client, "viewer", "not-the-password")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    (event,) = events(app, "auth.login")
    assert (event.actor_name, event.outcome, event.details) == ("viewer", "failed", '{"reason":"wrong password"}')


def test_unknown_user_gets_the_same_answer(client, users):
    response = login(client, "nobody", "whatever-password")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)


def test_a_head_request_is_no_sign_in_attempt(app, client, users):
    """Uptime monitors and link checkers send HEAD: neither an audit row nor a step toward locking the address."""
    for _ in range(6):
        assert client.head("/login").status_code == 200
    assert events(app, "auth.login") == [] and events(app, "auth.lockout") == []
    assert login(client, "viewer").status_code == 302


@both_databases
def test_a_name_with_a_nul_is_an_unknown_name_and_counts_towards_its_lockout(app, client, users):
    """PostgreSQL cannot compare or keep a NUL: the sign-in was a 500, and no try was counted."""
    for _ in range(5):
        response = login(client, "admin\x00", "whatever-password")
        assert response.status_code == 401
        assert "Wrong user name or password" in response.get_data(as_text=True)
    assert login(client, "admin\x00", "whatever-password").status_code == 429
    # one name's failures do not lock others out of a shared address (a team's VPN exit)
    assert login(app.test_client(), "admin").status_code == 302


def test_lockout_after_five_failures_for_a_name(app, client, users):
    for _ in range(5):
        assert login(client, "admin", "wrong-password").status_code == 401
    response = login(client, "admin")  # the right password, but too late
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    lockouts = events(app, "auth.lockout")
    assert len(lockouts) == 2 and {e.outcome for e in lockouts} == {"denied"}
    # another account from another address is unaffected
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    assert login(other, "viewer").status_code == 302


def test_lockout_by_address_across_names(app, users):
    """Twenty failures from one address, across names, lock it: guessing, not one person's typos."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    for i in range(19):
        login(client, f"a{i}", "wrong-password")
    assert login(client, "viewer").status_code == 302, "nineteen are not yet a lock"
    for i in range(19, 21):
        login(client, f"a{i}", "wrong-password")
    assert login(client, "operator").status_code == 429


def test_one_person_s_typos_do_not_lock_the_admin_out_of_a_shared_address(app, users):
    """QA: five wrong passwords for one account locked every account of that address, the admin's too."""
    team = app.test_client()
    team.environ_base["REMOTE_ADDR"] = "203.0.113.5"
    for _ in range(5):
        assert login(team, "viewer", "wrong-password").status_code == 401
    assert login(team, "viewer").status_code == 429  # that account is locked
    admin = app.test_client()
    admin.environ_base["REMOTE_ADDR"] = "203.0.113.5"
    assert login(admin, "admin").status_code == 302  # the admin, from the same address, is not


def test_an_admin_unlocks_a_locked_out_user_from_the_shell_and_it_is_audited(app, client, users):
    for _ in range(5):
        login(client, "viewer", "wrong-password")
    assert login(client, "viewer").status_code == 429
    result = app.test_cli_runner().invoke(args=["rewind", "users", "unlock", "viewer"])
    assert (
        result.exit_code == 0
        and "viewer may sign in again (5 recent failed sign-in(s) no longer count)" in result.output
    )
    assert login(client, "viewer").status_code == 302
    [row] = events(app, "user.unlock")
    assert json.loads(row.details) == {"user": "viewer", "failures_forgotten": 5}
    assert len(events(app, "auth.login")) == 6, "the five failures stay in the audit log"
    nobody = app.test_cli_runner().invoke(args=["rewind", "users", "unlock", "nobody"])
    assert nobody.exit_code != 0 and "nobody" in nobody.output


def test_the_users_page_shows_a_locked_account_and_an_admin_unlocks_it_there(app, client, users, as_role):
    """QA: the refusal said "ask an admin to unlock it", and the admin's users page read "Active", with no Unlock."""
    for _ in range(5):
        login(client, "viewer", "wrong-password")
    assert login(client, "viewer").status_code == 429
    admin = as_role(Role.ADMIN)
    viewer = user_row(app, "viewer")
    row = admin.get("/users").get_data(as_text=True).split(f'id="user-{viewer.id}"')[1].split("</tr>")[0]
    assert "Locked</span>" in row and "by failed sign-ins, until" in row and "Active" not in row
    assert f'action="/users/{viewer.id}/unlock"' in row
    stale = post(admin, f"/users/{viewer.id}/unlock", {"version": viewer.version + 1})  # a page drawn before a change
    assert stale.status_code == 409 and "changed by someone else" in stale.get_data(as_text=True)
    assert login(client, "viewer").status_code == 429, "a stale form unlocks nothing"
    assert events(app, "user.unlock") == []
    response = post(admin, f"/users/{viewer.id}/unlock", {"version": viewer.version})
    assert response.status_code == 302
    page = admin.get("/users").get_data(as_text=True)
    assert "viewer may sign in again (5 recent failed sign-in(s) no longer count)." in page
    assert f'action="/users/{viewer.id}/unlock"' not in page
    assert login(client, "viewer").status_code == 302
    [row] = events(app, "user.unlock")
    assert row.actor_name == "admin" and json.loads(row.details) == {"user": "viewer", "failures_forgotten": 5}


def test_lockout_ends_when_the_window_passes(app, client, users):
    from datetime import timedelta

    from app.auth.models import LoginAttempt

    for _ in range(5):
        login(client, "viewer", "wrong-password")
    assert login(client, "viewer").status_code == 429
    with app.app_context():
        for attempt in db.session.scalars(select(LoginAttempt)):
            attempt.at -= timedelta(minutes=16)
        db.session.commit()
    assert login(client, "viewer").status_code == 302


def test_missing_csrf_token_is_refused_with_a_clear_page(app, as_role):
    client = as_role(Role.ADMIN)
    response = client.post("/users", data={"name": "eve", "role": "admin"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "Security token missing or wrong" in body and "Nothing was changed" in body
    with app.app_context():
        assert db.session.scalar(select(User).filter_by(name="eve")) is None
    (event,) = events(app, "auth.csrf_refused")
    assert event.outcome == "denied" and event.actor_name == "admin"


def test_wrong_csrf_token_in_htmx_header_is_refused(as_role):
    client = as_role(Role.ADMIN)
    response = client.post("/users", data={"name": "eve", "role": "viewer"}, headers={"X-CSRFToken": "forged"})
    assert response.status_code == 400


def test_csrf_token_in_htmx_header_is_accepted(app, as_role):
    client = as_role(Role.ADMIN)
    token = csrf_token(client)
    response = client.post("/users", data={"name": "hx", "role": "viewer"}, headers={"X-CSRFToken": token})
    assert response.status_code == 201


def test_disabled_user_cannot_sign_in_and_is_signed_out(app, users, as_role):
    victim = as_role(Role.OPERATOR)
    admin = as_role(Role.ADMIN)
    with app.app_context():
        version = db.session.get(User, users[Role.OPERATOR]).version
    assert post(admin, f"/users/{users[Role.OPERATOR]}/disable", {"version": version}).status_code == 302
    assert victim.get("/").status_code == 302, "the open session ends at the next request"
    response = login(app.test_client(), "operator")
    assert response.status_code == 401
    assert "This account is disabled" in response.get_data(as_text=True)


def age_sessions(app, minutes: int, column: str = "last_seen_at") -> None:
    """Move every server-side session's clock back, as if that much time had passed."""
    from datetime import timedelta

    from app.auth.models import ServerSession

    with app.app_context():
        for row in db.session.scalars(select(ServerSession)):
            setattr(row, column, getattr(row, column) - timedelta(minutes=minutes))
        db.session.commit()


def last_seen(app):
    from app.auth.models import ServerSession

    with app.app_context():
        return db.session.scalar(select(ServerSession.last_seen_at).order_by(ServerSession.id.desc()).limit(1))


def test_idle_session_expires(app, as_role):
    client = as_role(Role.VIEWER)
    assert client.get("/").status_code == 200
    age_sessions(app, 31)
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/").status_code == 302
    (event,) = events(app, "auth.expired")
    assert event.actor_name == "viewer"


def test_htmx_request_after_expiry_gets_hx_redirect(app, as_role):
    client = as_role(Role.VIEWER)
    age_sessions(app, 31)
    response = client.get("/audit/chain", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Redirect"] == "/login"


def test_next_parameter_cannot_leave_the_site(client, users):
    token = csrf_token(client)
    data = {"name": "viewer", "password": "correct-horse-battery", "csrf_token": token}
    response = client.post("/login", data={**data, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/"
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    response = client.post("/login", data={**data, "csrf_token": csrf_token(client), "next": "/audit?actor=x"})
    assert response.headers["Location"] == "/audit?actor=x"


def test_the_sign_in_redirect_keeps_the_page_asked_for_exactly(client, users):
    """No stray '?' when the page had no query string: next=/targets/staging/config, not …/config?."""
    bare = client.get("/targets/staging/config")
    assert bare.status_code == 302 and bare.headers["Location"] == "/login?next=/targets/staging/config"
    asked = client.get("/targets/staging/config?a=1&b=now")
    assert asked.headers["Location"] == "/login?next=/targets/staging/config?a%3D1%26b%3Dnow"
    data = {"name": "viewer", "password": "correct-horse-battery", "csrf_token": csrf_token(client)}
    signed_in = client.post("/login", data={**data, "next": "/targets/staging/config"})
    assert signed_in.headers["Location"] == "/targets/staging/config"


def test_next_with_hidden_characters_is_refused(client, users):
    token = csrf_token(client)
    for target in ("/\t/evil.example", "/\n/evil.example", "/\\evil.example"):
        data = {"name": "viewer", "password": "correct-horse-battery", "csrf_token": token, "next": target}
        assert client.post("/login", data=data).headers["Location"] == "/"
        client.post("/logout", data={"csrf_token": csrf_token(client)})
        token = csrf_token(client)


def test_password_reset_ends_sessions_opened_before(app, users, as_role):
    victim = as_role(Role.VIEWER)
    assert victim.get("/").status_code == 200
    admin = as_role(Role.ADMIN)
    viewer = user_row(app, "viewer")
    assert post(admin, f"/users/{viewer.id}/password", {"version": viewer.version}).status_code == 200
    assert victim.get("/").status_code == 302, "the old session no longer works"


def test_background_polling_does_not_keep_a_session_alive(app, as_role):
    client = as_role(Role.VIEWER)
    age_sessions(app, 29)
    before = last_seen(app)
    headers = {"HX-Request": "true", "X-Rewind-Background": "1"}
    assert client.get("/jobs/rows", headers=headers).status_code == 200
    assert last_seen(app) == before, "polling did not push the idle deadline back"
    assert client.get("/").status_code == 200  # a person's request still counts
    assert last_seen(app) > before


def test_session_cookie_flags(client, users):
    response = login(client, "viewer")
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("rewind_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_secure_cookie_setting(tmp_path, sqlite_template):
    from tests.support.apps import build_app

    app = build_app(tmp_path / "i", sqlite_template.new_url(tmp_path), REWIND_SECURE_COOKIES="1")
    add_user(app, "viewer", Role.VIEWER)
    client = app.test_client()
    response = login(client, "viewer")
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("rewind_session="))
    assert "Secure" in cookie


# --- user administration -------------------------------------------------------


def user_row(app, name: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).filter_by(name=name))
        db.session.expunge(user)
        return user


def test_admin_creates_a_user_and_sees_the_password_once(app, as_role):
    client = as_role(Role.ADMIN)
    response = post(client, "/users", {"name": "dana", "role": "operator"})
    assert response.status_code == 201
    body = response.get_data(as_text=True)
    assert "Password for dana" in body
    password = body.split('id="issued-password">')[1].split("<")[0]
    assert login(app.test_client(), "dana", password).status_code == 302
    assert user_row(app, "dana").role == Role.OPERATOR
    assert "Password for dana" not in client.get("/users").get_data(as_text=True)
    (event,) = [e for e in events(app, "user.create") if '"user":"dana"' in e.details]
    assert event.actor_name == "admin" and '"role":"operator"' in event.details


def test_duplicate_and_malformed_names_are_refused(app, as_role):
    client = as_role(Role.ADMIN)
    assert "already exists" in post(client, "/users", {"name": "viewer", "role": "viewer"}).get_data(as_text=True)
    response = post(client, "/users", {"name": "bad name!", "role": "viewer"})
    assert response.status_code == 400 and "1-64 letters" in response.get_data(as_text=True)
    response = post(client, "/users", {"name": "ok", "role": "superuser"})
    assert response.status_code == 400 and "unknown role" in response.get_data(as_text=True)


def test_change_role_with_current_version(app, users, as_role):
    client = as_role(Role.ADMIN)
    viewer = user_row(app, "viewer")
    response = post(client, f"/users/{viewer.id}/role", {"role": "operator", "version": viewer.version})
    assert response.status_code == 302
    assert user_row(app, "viewer").role == Role.OPERATOR


def test_stale_form_is_refused_and_changes_nothing(app, users, as_role):
    client = as_role(Role.ADMIN)
    viewer = user_row(app, "viewer")
    stale = viewer.version
    assert post(client, f"/users/{viewer.id}/role", {"role": "operator", "version": stale}).status_code == 302
    response = post(client, f"/users/{viewer.id}/disable", {"version": stale})
    assert response.status_code == 409
    assert "changed by someone else" in response.get_data(as_text=True)
    assert not user_row(app, "viewer").disabled
    refused = [e for e in events(app, "user.change") if e.outcome == "denied"]
    assert len(refused) == 1


@pytest.mark.parametrize("version", ["²", "one", "-3", "", None])
def test_a_version_that_is_not_a_number_is_refused_as_stale_and_changes_nothing(app, users, as_role, version):
    """None: a hand-made form without the field, which once made the change unchecked."""
    client = as_role(Role.ADMIN)
    viewer = user_row(app, "viewer")
    form = {"role": "operator"} | ({} if version is None else {"version": version})
    response = post(client, f"/users/{viewer.id}/role", form)
    assert response.status_code == 409 and "changed by someone else" in response.get_data(as_text=True)
    assert user_row(app, "viewer").role == Role.VIEWER
    assert [e.outcome for e in events(app, "user.change")] == ["denied"]


def test_unknown_user_id_is_404(as_role):
    client = as_role(Role.ADMIN)
    response = post(client, "/users/9999/disable", {"version": 1})
    assert response.status_code == 404
    assert "there is no user 9999" in response.get_data(as_text=True)


def test_last_admin_cannot_be_demoted_or_disabled(app, users, as_role):
    client = as_role(Role.ADMIN)
    admin = user_row(app, "admin")
    response = post(client, f"/users/{admin.id}/role", {"role": "viewer", "version": admin.version})
    assert response.status_code == 400 and "last active admin" in response.get_data(as_text=True)
    response = post(client, f"/users/{admin.id}/disable", {"version": admin.version})
    assert response.status_code == 400 and "cannot disable your own account" in response.get_data(as_text=True)
    assert user_row(app, "admin").role == Role.ADMIN


def test_reset_password_issues_a_new_one(app, users, as_role):
    client = as_role(Role.ADMIN)
    viewer = user_row(app, "viewer")
    body = post(client, f"/users/{viewer.id}/password", {"version": viewer.version}).get_data(as_text=True)
    password = body.split('id="issued-password">')[1].split("<")[0]
    assert login(app.test_client(), "viewer").status_code == 401
    assert login(app.test_client(), "viewer", password).status_code == 302


def test_pages_name_an_inline_icon_so_browsers_do_not_ask_for_a_missing_favicon(client):
    page = client.get("/login").get_data(as_text=True)
    assert '<link rel="icon" href="data:,">' in page
    assert client.get("/favicon.ico").status_code == 404  # nothing served there: the page must not send browsers to it


def test_opening_a_button_s_address_says_so_and_changes_nothing(app, as_role):
    """GET /logout (typed, bookmarked): not Werkzeug's 'The method is not allowed for the requested URL.'"""
    client = as_role(Role.VIEWER)
    response = client.get("/logout")
    assert response.status_code == 405
    page = response.get_data(as_text=True)
    assert "/logout is what a button sends, not a page to open; nothing was changed. Use the button." in page
    assert client.get("/audit").status_code == 200  # still signed in


@both_databases
def test_sign_ins_sent_at_the_same_moment_get_no_more_than_five_passwords_checked(app, users, monkeypatch):
    """Each try passed the lock-out check before any had written its failure, so twelve sent at once were twelve
    guesses at the password, not five."""
    import threading
    import time

    from app.auth import accounts

    checked = []
    real = accounts.password_matches

    def as_slow_as_the_real_hash(user, password):  # scrypt takes about this long: the tries overlap
        checked.append(password)
        time.sleep(0.3)
        return real(user, password)

    monkeypatch.setattr(accounts, "password_matches", as_slow_as_the_real_hash)
    together = threading.Barrier(12)
    statuses = []

    def guess(n: int) -> None:
        client = app.test_client()
        client.get("/login")  # its CSRF token, before the race
        together.wait()
        statuses.append(login(client, "admin", f"guess-{n}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(statuses) == 12
    assert len(checked) <= 5, f"{len(checked)} passwords were tried"
    assert statuses.count(401) == len(checked) and statuses.count(429) == 12 - len(checked)
    assert login(app.test_client(), "admin").status_code == 429, "the right password, after the burst: locked out"


def flashed(response) -> str:
    """The page's error words, as read (quotes unescaped)."""
    found = re.search(
        r'<p class="flash flash-error"[^>]*><strong>Error:</strong>(.*?)</p>', response.get_data(as_text=True), re.S
    )
    assert found, "no error on the page"
    return " ".join(html.unescape(found.group(1)).split())


def test_the_lock_out_says_the_account_is_locked_and_the_command_that_unlocks_it(app, client, users):
    for _ in range(5):
        login(client, "viewer", "wrong-password")
    said = flashed(login(client, "viewer"))
    assert said.startswith("Too many failed sign-ins for this account: it is locked. Try again in about ")
    assert said.endswith("or ask an admin to unlock it now: flask rewind users unlock viewer"), said


def test_unlock_says_an_address_the_name_tried_from_is_locked_still_and_address_unlocks_it(app, users):
    """QA: 20 failures across names from 127.0.0.2 locked the address; `users unlock admin` said "admin may sign in
    again (0 recent failed…)", and admin got a 429 from 127.0.0.2."""
    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "127.0.0.2"
    for i in range(20):
        login(guesser, f"a{i}", "wrong-password")
    admin = app.test_client()
    admin.environ_base["REMOTE_ADDR"] = "127.0.0.2"
    refused = login(admin, "admin")
    assert refused.status_code == 429
    said = flashed(refused)
    assert said.startswith("Too many failed sign-ins from this address (across names): it is locked.")
    assert said.endswith("unlock it now: flask rewind users unlock admin --address 127.0.0.2"), said

    cli = app.test_cli_runner()
    result = cli.invoke(args=["rewind", "users", "unlock", "admin"])
    assert result.exit_code == 0 and "may sign in again" not in result.output
    assert result.output.strip() == (
        "admin's own failures are forgotten (0 recent failed sign-in(s) no longer count), but 127.0.0.2 is locked "
        "(20 failures across names): add --address 127.0.0.2"
    )
    assert login(admin, "admin").status_code == 429, "the address is locked still"

    result = cli.invoke(args=["rewind", "users", "unlock", "admin", "--address", "127.0.0.2"])
    assert result.exit_code == 0 and result.output.strip() == (
        "admin may sign in again (0 recent failed sign-in(s) no longer count; "
        "127.0.0.2: 20 recent failed sign-in(s) across names no longer count)"
    )
    assert login(admin, "admin").status_code == 302
    last = events(app, "user.unlock")[-1]
    assert json.loads(last.details) == {"user": "admin", "failures_forgotten": 0, "addresses": {"127.0.0.2": 20}}
    assert len([e for e in events(app, "auth.login") if e.outcome == "failed"]) == 20, "they stay in the audit log"


def test_the_last_active_admin_s_role_change_and_disable_are_greyed_with_why(app, users, as_role):
    """Offered, they could only be refused: greyed, with the way out said beside them, until another admin exists."""
    client = as_role(Role.ADMIN)
    admin, operator = user_row(app, "admin"), user_row(app, "operator")

    def row(user_id: int) -> str:
        page = client.get("/users").get_data(as_text=True)
        start = page.index(f'<tr id="user-{user_id}">')
        return page[start : page.index("</tr>", start)]

    kept = row(admin.id)
    assert "The last active admin: make another admin first." in kept
    assert re.search(r'<select id="role-\d+" name="role" disabled', kept), kept
    assert '<button type="submit" disabled>Change role<' in kept
    assert re.search(r'<button type="submit" class="danger" disabled[^>]*>Disable<', kept), kept
    assert "disabled" not in row(operator.id).replace(">Disable<", ""), "only the last admin's are greyed"

    response = post(client, f"/users/{operator.id}/role", {"role": "admin", "version": operator.version})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert user_row(app, "operator").role == Role.ADMIN
    for user_id in (admin.id, operator.id):
        assert "last active admin" not in row(user_id) and " disabled" not in row(user_id).replace("Disable<", "")


def test_each_account_s_buttons_say_whose_they_are(app, client, users, as_role):
    """QA: every row's "Reset password", "Disable", "Enable" read alike out of the row's context (a screen reader's
    list of buttons), and one of them changes another person's account."""
    for _ in range(5):
        login(client, "viewer", "wrong-password")
    admin = as_role(Role.ADMIN)
    operator = user_row(app, "operator")
    assert post(admin, f"/users/{operator.id}/disable", {"version": operator.version}).status_code == 302
    page = admin.get("/users").get_data(as_text=True)
    assert repeated_names(page) == {}
    said = names(page)
    assert {"Reset password of viewer", "Unlock viewer", "Disable viewer", "Enable operator"} <= set(said), said


def test_the_users_page_reads_every_account_s_lock_at_once_and_only_locks_count(app, client, users, as_role):
    """The page read each account's lock with two queries of its own; it reads them all with two, and still tells
    a lock (five failures) from four failures, and from failures a later sign-in put behind it."""
    from sqlalchemy import event

    from app.auth import lockout

    for name in ("locked", "four", "mended"):
        add_user(app, name, Role.VIEWER)
    for name in ("locked", "four", "mended"):
        for _ in range(4):
            login(app.test_client(), name, "wrong-password")
    assert login(app.test_client(), "mended").status_code == 302  # its four failures no longer count
    for name in ("locked", "mended"):
        login(app.test_client(), name, "wrong-password")  # the fifth in the window: a lock for "locked" only
    names = [f"nobody{i}" for i in range(30)] + ["locked", "four", "mended"]
    statements = []
    with app.app_context():
        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            locked = lockout.names_locked_until(names)
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
    assert list(locked) == ["locked"] and len(statements) == 2, statements
    page = as_role(Role.ADMIN).get("/users").get_data(as_text=True)
    rows = {name: page.split(f"<td>{name}")[1].split("</tr>")[0] for name in ("locked", "four", "mended")}
    assert "Locked</span>" in rows["locked"] and "Locked</span>" not in rows["four"] + rows["mended"]


def test_a_button_pressed_after_signing_out_in_another_tab_says_signed_out_not_that_tokens_differ(client, users):
    """Signing out in one tab ends the session of every tab: a button pressed in another is refused for that, and
    says so, rather than sending a tired person to reload in search of a token mismatch."""
    login(client, "operator")
    token = csrf_token(client)
    assert post(client, "/logout").status_code == 302
    refused = client.post(
        "/targets/staging/flags/toggle", data={"flag": "x", "csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert refused.status_code == 400
    said = unquote(refused.headers["X-Rewind-Refusal"])
    assert said.startswith("Signed out: Nothing was changed: this browser is no longer signed in"), said
    assert "CSRF" not in refused.get_data(as_text=True)


def test_a_request_without_any_token_from_a_signed_out_browser_is_told_its_token_is_missing(client, users):
    """Only a page's own token, its session gone, means "Signed out": a request that carries no token at all (a
    forged form on another site, a script) was never sent by a signed-in page and keeps the CSRF refusal's words."""
    login(client, "operator")
    assert post(client, "/logout").status_code == 302
    refused = client.post("/targets/staging/flags/toggle", data={"flag": "x"}, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    said = unquote(refused.headers["X-Rewind-Refusal"])
    assert said.startswith("Security token missing or wrong: Nothing was changed."), said
    assert "The CSRF token is missing." in said
    by_header = client.post("/targets/staging/flags/toggle", data={"flag": "x"}, headers={"X-CSRFToken": "stale"})
    assert "Signed out" in by_header.get_data(as_text=True), "htmx sends a page's token in a header"
