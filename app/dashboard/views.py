"""The landing page and Rewind's own health endpoint."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from sqlalchemy import select, text

from app.audit.models import AuditEvent
from app.auth.guards import public, requires
from app.auth.roles import Role
from app.dashboard.cards import build_cards
from app.extensions import db
from app.jobs.engine import engine

bp = Blueprint("dashboard", __name__)


def ops_database_status() -> tuple[bool, str]:
    try:
        db.session.execute(text("SELECT 1"))
        return True, "reachable"
    except Exception as exc:  # noqa: BLE001 - any failure here means "unreachable", reported as such
        db.session.rollback()
        return False, f"unreachable: {type(exc).__name__}"


def recent_activity(limit: int = 10) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))


@bp.get("/")
@requires(Role.VIEWER)
def index():
    ok, db_status = ops_database_status()
    settings = current_app.config["REWIND_SETTINGS"]
    health = engine().health
    return render_template(
        "dashboard/index.html",
        cards=build_cards(health.reading),
        db_ok=ok,
        db_status=db_status,
        recent=recent_activity(),
        config_path=settings.config_path,
        config_exists=settings.config_path.exists(),
    )


@bp.get("/dashboard/cards")
@requires(Role.VIEWER)
def cards():
    """The target cards alone: the dashboard refreshes them by itself."""
    health = engine().health
    return render_template("dashboard/_cards.html", cards=build_cards(health.reading))


@bp.get("/dashboard/activity")
@requires(Role.VIEWER)
def activity():
    """The recent activity alone: the dashboard refreshes it by itself, as it does the cards."""
    return render_template("dashboard/_activity.html", recent=recent_activity())


@bp.get("/healthz")
@public
def healthz():
    ok, db_status = ops_database_status()
    body = {"status": "ok" if ok else "degraded", "ops_database": db_status}
    return jsonify(body), 200 if ok else 503
