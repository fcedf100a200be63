"""Pages and API: home, health, stats and segments."""

from flask import Blueprint, current_app, jsonify, render_template_string
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .db import engine

bp = Blueprint("views", __name__)

TABLES = ("users", "sessions")

HOME = """<!doctype html>
<title>Demo app</title>
<h1>Demo app {{ version }}</h1>
<p>Environment: {{ env }}. Feature X is {{ 'on' if feature_x else 'off' }}.</p>
<p><a href="/health">/health</a> · <a href="/stats">/stats</a></p>
"""


@bp.get("/")
def home():
    return render_template_string(
        HOME,
        version=current_app.config["VERSION"],
        env=current_app.config["APP_ENV"],
        feature_x=current_app.config["FEATURE_X"],
    )


@bp.get("/health")
def health():
    """Healthy when the database answers; the load balancer and Rewind both ask."""
    try:
        with engine().connect() as conn:
            users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return jsonify(status="unhealthy", error=reason), 500
    return jsonify(status="healthy", version=current_app.config["VERSION"], users=users)


@bp.get("/stats")
def stats():
    """Row counts, for dashboards and for checking a restore."""
    counts = {}
    with engine().connect() as conn:
        for table in TABLES:  # names from the fixed list above, never from a request
            counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    return jsonify(counts)
