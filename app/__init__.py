"""Rewind: a console for rolling back a Flask + PostgreSQL application.

create_app() reads and checks the settings, wires the extensions and
blueprints, and refuses to start if a view forgot to declare its role.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from urllib.parse import quote

from flask import Flask, flash, g, redirect, render_template, request, session, url_for
from flask_login import AnonymousUserMixin, current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from app.extensions import csrf, db, login_manager, migrate, sock
from app.settings import Settings, SettingsError, load_settings

# The areas in the navigation; an entry shows once its area has a page.
NAV = (
    ("Dashboard", "dashboard.index"),
    ("Deployments", "deployments.index"),
    ("Migrations", "schema.index"),
    ("Backups", "backups.index"),
    ("Flags", "flags.index"),
    ("Config", "envconfig.index"),
    ("Jobs", "jobs.index"),
    ("Audit", "audit.index"),
    ("Incidents", "incidents.index"),
)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """WAL lets pages read while a job writes; foreign keys are off in SQLite unless asked."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(
        __name__,
        template_folder="../templates",
        static_folder="../static",
        instance_path=str(settings.instance_dir),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
        REWIND_SETTINGS=settings,
        REWIND_AUDIT_KEY=settings.audit_key,
        SESSION_COOKIE_NAME="rewind_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        # Tokens live as long as the session; idle expiry ends both.
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )

    if settings.request_slots:
        from app.requestslots import RequestSlots

        app.wsgi_app = RequestSlots(app.wsgi_app, settings.request_slots, body_limit=app.config["MAX_CONTENT_LENGTH"])
    db.init_app(app)
    if settings.is_postgres:
        from app.pool import ping_when_idle

        with app.app_context():
            ping_when_idle(db.engine)
    migrate.init_app(app)
    csrf.init_app(app)
    sock.init_app(app)
    _init_login(app)

    from app.audit.views import bp as audit_bp
    from app.auth.views import bp as auth_bp
    from app.backups.views import bp as backups_bp
    from app.dashboard.views import bp as dashboard_bp
    from app.deployments.views import bp as deployments_bp
    from app.envconfig.views import bp as envconfig_bp
    from app.flags.views import bp as flags_bp
    from app.jobs.views import bp as jobs_bp
    from app.rowids import RowIdConverter
    from app.schema.views import bp as schema_bp
    from app.targetpage.views import bp as targetpage_bp

    app.url_map.converters["id"] = RowIdConverter  # before any rule names it
    areas = (deployments_bp, schema_bp, flags_bp, backups_bp, envconfig_bp)
    for bp in (dashboard_bp, auth_bp, audit_bp, jobs_bp, targetpage_bp, *areas):
        app.register_blueprint(bp)
    _init_jobs(app, settings)

    from app.cli import rewind

    app.cli.add_command(rewind)
    _init_request_hooks(app, settings)
    _init_error_pages(app)

    from app.auth.guards import ensure_every_view_is_guarded

    ensure_every_view_is_guarded(app)
    return app


RUNBOOK_MODULES = (
    "app.jobs.selfcheck",
    "app.deployments.runbooks",
    "app.backups.runbooks",
    "app.envconfig.runbooks",
    "app.schema.runbooks",
    "app.schema.combined",
)


def _init_jobs(app: Flask, settings: Settings) -> None:
    from app.envconfig.fallback import newest_that_parses
    from app.jobs.engine import Engine
    from app.jobs.runbook import load_modules
    from app.targets.registry import Targets, TargetsFileError

    try:
        load_modules([*RUNBOOK_MODULES, *settings.runbook_modules])
    except ImportError as exc:
        raise SettingsError("REWIND_RUNBOOKS", f"cannot import {exc.name!r}: {exc}") from None
    try:
        # a broken file stops start-up; an env file it reads from that does not parse does not (its last version)
        targets = Targets(settings.config_path, settings.instance_dir, newest_that_parses(settings)).load()
    except TargetsFileError as exc:
        raise SettingsError("REWIND_CONFIG", str(exc)) from None
    app.extensions["rewind"] = Engine(app, settings, targets)
    from app.audit.throttle import RefusalThrottle

    app.extensions["rewind.refusals"] = RefusalThrottle()
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": 64 * 1024}
    app.config["REWIND_REDACT"] = own_secrets(settings)


def own_secrets(settings: Settings) -> list[str]:
    """Rewind's own keys and ops database password: no job log may show them, however a command got them."""
    from sqlalchemy.engine import make_url

    values = [settings.secret_key, settings.audit_key.decode(), make_url(settings.database_url).password]
    return [v for v in values if v]


def preflight() -> Settings:
    """The checks create_app stops on, without building an app: gunicorn's master runs them before it binds."""
    from app.envconfig.fallback import newest_that_parses
    from app.targets.config import TargetsFileError, load_targets

    settings = load_settings()
    try:
        load_targets(settings.config_path, fallback=newest_that_parses(settings))
    except TargetsFileError as exc:
        raise SettingsError("REWIND_CONFIG", str(exc)) from None
    return settings


def _engine_options(settings: Settings) -> dict:
    if settings.is_postgres:
        return {"pool_size": 10, "max_overflow": 20}  # pinged when idle: app/pool.py
    return {"connect_args": {"timeout": 30, "check_same_thread": False}}


def _init_login(app: Flask) -> None:
    from app.auth.models import User

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(user_id: str):
        """Only a live server-side session signs anyone in; the cookie alone never does."""
        from flask import g

        from app.auth import sessions

        if not user_id.isdigit():
            return None
        settings = app.config["REWIND_SETTINGS"]
        verdict = sessions.check(
            session.get("sid"),
            int(user_id),
            idle=timedelta(minutes=settings.idle_minutes),
            lifetime=timedelta(hours=settings.session_hours),
        )
        user = verdict.user or db.session.get(User, int(user_id))  # a refusal is told in the user's name
        if user is None or user.disabled:
            return None
        if verdict.row is None:
            g.session_refused = (verdict.refused, user)
            return None
        g.server_session = verdict.row
        return user

    @login_manager.unauthorized_handler
    def unauthorized():
        from app.jobs.formstate import this_page

        target = url_for("auth.login", next=this_page() if request.method == "GET" else None)
        if request.headers.get("HX-Request"):
            return "", 401, {"HX-Redirect": target}
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return "Sign in first.", 401
        flash(login_manager.login_message, "info")
        return redirect(target)


def _init_request_hooks(app: Flask, settings: Settings) -> None:
    @app.before_request
    def write_refusal_counts():
        from app.audit.throttle import write_due_counts

        write_due_counts()

    @app.before_request
    def end_expired_sessions():
        """A session the server ended for idleness or age says so once, then sends to the login page."""
        if current_user.is_authenticated:
            if not request.headers.get("X-Rewind-Background"):  # a page polling by itself is not a person
                from app.auth import sessions

                sessions.touch(g.server_session)
            return None
        refused = g.pop("session_refused", None)
        if refused is None:
            return None
        reason, user = refused
        session.clear()
        if reason not in ("idle", "lifetime"):
            return None  # signed out, revoked or forged: the guards send to the login page as for anyone
        from app.auth import sessions

        said = sessions.record_expiry(
            user, reason, idle_minutes=settings.idle_minutes, session_hours=settings.session_hours
        )
        flash(f"You were {said}.", "info")
        target = url_for("auth.login")
        if request.headers.get("HX-Request"):
            return "", 401, {"HX-Redirect": target}
        return redirect(target)

    from app.jobs.formstate import take_for_this_page

    app.before_request(take_for_this_page)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # Told by the kind of object, not by reading its row: after a commit that would load the user again.
        if not isinstance(current_user, AnonymousUserMixin):
            response.headers.setdefault("Cache-Control", "no-store")
        if settings.secure_cookies:  # served over HTTPS: browsers should never try plain HTTP again
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response

    from app.auth.roles import Role

    app.jinja_env.globals["Role"] = Role
    from app.statuses import BackupState, JobState, RevisionState

    # Pages compare statuses with these, never with bare words.
    app.jinja_env.globals.update(BackupState=BackupState, JobState=JobState, RevisionState=RevisionState)
    app.jinja_env.filters["timefmt"] = lambda epoch: time.strftime("%H:%M:%S", time.gmtime(epoch))
    from app.timetags import duration, time_tag

    app.jinja_env.filters["when"] = time_tag
    from app.jobs.formstate import form_for, this_page

    app.jinja_env.globals["job_form"] = form_for
    app.jinja_env.globals["this_page"] = this_page
    from app.jobs.runbook import shown_params, title_of, typed_value

    app.jinja_env.filters["runbook_title"] = title_of
    app.jinja_env.globals["shown_params"] = shown_params
    app.jinja_env.filters["typed_value"] = typed_value
    app.jinja_env.filters["duration"] = duration
    from app.audit.display import detail_pairs

    app.jinja_env.filters["audit_details"] = detail_pairs
    from app.domids import dom_id

    app.jinja_env.filters["dom_id"] = dom_id
    from app.wording import breakable, byte_size, sentence

    app.jinja_env.filters["breakable"] = breakable
    app.jinja_env.filters["sentence"] = sentence
    app.jinja_env.filters["byte_size"] = byte_size  # KiB, as the CLI and every job log say sizes

    from app.targetpage.tabs import all_tabs

    app.jinja_env.globals["target_tabs"] = lambda: [t for t in all_tabs() if t.endpoint in app.view_functions]

    @app.context_processor
    def navigation():
        items = [(label, ep) for label, ep in NAV if ep in app.view_functions]
        return {"nav_items": items, "targets_problem": _targets_problem}

    def _targets_problem() -> str | None:
        """Signed-in pages say when the targets file on disk is broken (and that the last good one is in use)."""
        from app.jobs.engine import current_targets

        return current_targets().problem if current_user.is_authenticated else None


def _init_error_pages(app: Flask) -> None:
    def page(code: int, title: str, message: str):
        # A button that changes a part of the page in place (htmx) says the page's words above it instead; they
        # travel in a header, percent-encoded (a header holds Latin-1 only), not dug out of the page's layout.
        # At most 1,000 characters, so the header stays well inside a proxy's header buffer (nginx: 4-8 KB).
        said = {"X-Rewind-Refusal": quote(f"{title}: {message}"[:1000])} if request.headers.get("HX-Request") else {}
        return render_template("errors/error.html", code=code, title=title, message=message), code, said

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError):
        from app.audit.store import record_and_commit
        from app.statuses import Outcome

        db.session.rollback()
        details = {"method": request.method, "path": request.path, "reason": exc.description}
        if current_user.is_authenticated:
            record_and_commit("auth.csrf_refused", outcome=Outcome.DENIED, details=details)
        else:
            from app.audit.throttle import record_throttled

            record_throttled("auth.csrf_refused", details)
            headers = app.config.get("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"])  # Flask-WTF's default
            carried = request.form.get("csrf_token") or any(request.headers.get(name) for name in headers)
            if carried and request.endpoint != "auth.login":
                # A page's token, its session gone: "the tokens do not match, reload" would hide why. A request with
                # no token at all was never sent by a signed-in page: it is told the token is missing, below.
                return page(
                    400,
                    "Signed out",
                    "Nothing was changed: this browser is no longer signed in (signed out in another tab, or the "
                    "session ended). Sign in again, then try again.",
                )
        return page(
            400,
            "Security token missing or wrong",
            f"Nothing was changed. {exc.description} Reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        titles = {403: "Not allowed", 404: "Not found", 400: "Bad request", 405: "Method not allowed"}
        message = exc.description or ""
        if exc.code == 405 and request.method == "GET":  # a typed or bookmarked address of a button
            message = f"{request.path} is what a button sends, not a page to open; nothing was changed. Use the button."
        return page(exc.code or 500, titles.get(exc.code, exc.name), message)

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return page(500, "Rewind hit an error", "The error was logged. Nothing further was changed.")
