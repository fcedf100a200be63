"""Sign-in, sign-out and the admin's user pages."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select

from app.audit.store import Actor, client_address, record, record_and_commit
from app.audit.throttle import record_throttled
from app.auth import accounts, lockout, sessions
from app.auth.guards import public, requires
from app.auth.models import User
from app.auth.roles import Role
from app.clock import utcnow
from app.extensions import db
from app.statuses import Outcome

bp = Blueprint("auth", __name__)

WRONG_CREDENTIALS = "Wrong user name or password."


def _safe_next(target: str | None) -> str:
    """Only same-site paths; anything else would make the login form an open redirect.

    Browsers and Werkzeug drop tabs and newlines from URLs, so "/\t/evil" would
    become "//evil": any whitespace or control character refuses the target.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target)
    ):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if request.method != "POST":  # HEAD too: a monitor's or link checker's probe is no sign-in attempt
        if current_user.is_authenticated:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("auth/login.html", next=request.args.get("next", ""))

    # No user name has a NUL, and PostgreSQL cannot compare or keep one: the try counts as one for an unknown name.
    name = request.form.get("name", "").strip()[:64].replace("\x00", "\ufffd")
    password = request.form.get("password", "")
    address = client_address() or "unknown"
    next_url = request.form.get("next", "")

    if lock := lockout.lock_of(name, address):
        return _locked_out(name, address, next_url, lock)
    # Noted as failed, and committed, before the password is checked: tries sent at the same moment each passed the
    # check above before any had written its failure, so twelve at once were twelve guesses. Now each sees those
    # noted before it, and no more than LIMIT get a password checked.
    attempt = lockout.note_attempt(name, address, succeeded=False)
    db.session.commit()
    if lock := lockout.lock_of(name, address, counting_this_try=True):
        return _locked_out(name, address, next_url, lock)  # the try stays counted: it was made

    user = db.session.scalar(select(User).filter_by(name=name)) if name else None
    matches = accounts.password_matches(user, password)
    if user is None or not matches or user.disabled:
        reason = "unknown user" if user is None else ("disabled" if user.disabled else "wrong password")
        record("auth.login", outcome=Outcome.FAILED, actor=Actor(None, name or "?"), details={"reason": reason})
        db.session.commit()
        if lockout.locked_until(name, address):
            record_and_commit(
                "auth.lockout", outcome=Outcome.DENIED, actor=Actor(None, name or "?"), details={"user": name}
            )
        message = "This account is disabled." if user is not None and user.disabled and matches else WRONG_CREDENTIALS
        flash(message, "error")
        return render_template("auth/login.html", next=next_url, name=name), 401

    session.clear()
    login_user(user)
    session["sid"] = sessions.open_session(user.id)
    attempt.succeeded = True
    record("auth.login", actor=Actor.of(user))
    db.session.commit()
    return redirect(_safe_next(next_url))


@bp.post("/logout")
@requires(Role.VIEWER)
def logout():
    sessions.end(session.get("sid"), sessions.EndReason.LOGOUT)
    record_and_commit("auth.logout")
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def _locked_out(name: str, address: str, next_url: str, lock: lockout.Lock):
    minutes = max(1, round((lock.until - utcnow()).total_seconds() / 60))
    # a locked-out caller can send requests as fast as it likes: audited, but not one row each
    record_throttled("auth.lockout", {"user": name}, actor=Actor(None, name or "?"))
    # Which lock, and the command that lifts it: an admin at a shell need not guess (the address's lock is
    # everyone's from here, so lifting only the name's left a 429).
    command = f"flask rewind users unlock {shlex.quote(name or 'NAME')}"
    if lock.address:
        command += f" --address {shlex.quote(address)}"
    if lock.account and lock.address:
        what = "for this account and from this address (across names): both are locked"
    elif lock.account:
        what = "for this account: it is locked"
    else:
        what = "from this address (across names): it is locked"
    flash(
        f"Too many failed sign-ins {what}. Try again in about {minutes} minute(s), or ask an admin to unlock "
        f"{'them' if lock.account and lock.address else 'it'} now: {command}",
        "error",
    )
    return render_template("auth/login.html", next=next_url, name=name), 429


# --- users (admin) ---------------------------------------------------------


def _users_page(status: int = 200, issued: tuple[str, str] | None = None):
    users = db.session.scalars(select(User).order_by(User.name)).all()
    # A locked account reads "Locked until …" with an Unlock button, not "Active" (QA: the sign-in refusal said
    # "ask an admin to unlock it", and the admin's page showed nothing to unlock).
    by_name = lockout.names_locked_until([user.name for user in users])
    locked = {user.id: by_name[user.name] for user in users if user.name in by_name}
    last_admin = accounts.last_active_admin()
    page = render_template(
        "auth/users.html", users=users, roles=list(Role), issued=issued, locked=locked, last_admin=last_admin
    )
    return page, status


def _form_version() -> int:
    """The row version the page was loaded with.

    Every account form on the page sends one. A missing one, or one that is not a plain number ("²" passes
    isdigit() and fails int()), matches no row's version: the change is refused as stale, never made unchecked
    (a hand-made POST without it once skipped the check) nor answered with a 500.
    """
    raw = request.form.get("version", "").strip()
    return int(raw) if raw.isdigit() and raw.isascii() else -1


def _account_action(user_id: int, change) -> tuple:
    """Run one account change from a form; errors re-render the page with the reason."""
    try:
        user = accounts.find_user(user_id)
        result = change(user, Actor.of(current_user))
    except accounts.AccountError as exc:
        db.session.rollback()
        record_and_commit(
            "user.change",
            outcome=Outcome.DENIED,
            details={"user_id": user_id, "path": request.path, "reason": str(exc)},
        )
        flash(str(exc), "error")
        return _users_page(exc.status)
    return result


@bp.get("/users")
@requires(Role.ADMIN)
def users():
    return _users_page()


@bp.post("/users")
@requires(Role.ADMIN)
def create_user():
    try:
        role = Role.parse(request.form.get("role", ""))
        user, password = accounts.create_user(request.form.get("name", ""), role, Actor.of(current_user))
    except (accounts.AccountError, ValueError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _users_page(400)
    flash(f"Created {user.name} ({role.label}).", "success")
    return _users_page(201, issued=(user.name, password))


@bp.post("/users/<id:user_id>/role")
@requires(Role.ADMIN)
def set_role(user_id: int):
    try:
        role = Role.parse(request.form.get("role", ""))
    except ValueError as exc:
        flash(str(exc), "error")
        return _users_page(400)

    def change(user, actor):
        accounts.set_role(user, role, actor, _form_version())
        flash(f"{user.name} is now {role.label}.", "success")
        return redirect(url_for("auth.users"))

    return _account_action(user_id, change)


@bp.post("/users/<id:user_id>/disable")
@requires(Role.ADMIN)
def disable_user(user_id: int):
    def change(user, actor):
        accounts.set_disabled(user, True, actor, _form_version())
        flash(f"{user.name} is disabled and signed out.", "success")
        return redirect(url_for("auth.users"))

    return _account_action(user_id, change)


@bp.post("/users/<id:user_id>/enable")
@requires(Role.ADMIN)
def enable_user(user_id: int):
    def change(user, actor):
        accounts.set_disabled(user, False, actor, _form_version())
        flash(f"{user.name} is enabled.", "success")
        return redirect(url_for("auth.users"))

    return _account_action(user_id, change)


@bp.post("/users/<id:user_id>/unlock")
@requires(Role.ADMIN)
def unlock_user(user_id: int):
    def change(user, actor):
        done = accounts.unlock(user, actor, expected_version=_form_version())
        if done.still_locked:
            addresses = "; ".join(
                f"{address} is locked ({failures} failures across names): "
                f"flask rewind users unlock {shlex.quote(user.name)} --address {address}"
                for address, failures in done.still_locked
            )
            flash(f"{user.name}'s own failures are forgotten, but {addresses}", "error")
        else:
            flash(
                f"{user.name} may sign in again ({done.forgotten} recent failed sign-in(s) no longer count).", "success"
            )
        return redirect(url_for("auth.users"))

    return _account_action(user_id, change)


@bp.post("/users/<id:user_id>/password")
@requires(Role.ADMIN)
def reset_password(user_id: int):
    def change(user, actor):
        password = accounts.set_password(user, actor, expected_version=_form_version())
        flash(f"New password set for {user.name}.", "success")
        return _users_page(200, issued=(user.name, password))

    return _account_action(user_id, change)
