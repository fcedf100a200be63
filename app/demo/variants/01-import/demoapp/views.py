"""Pages and API: home, health, stats and segments."""

from flask import Blueprint, current_app, jsonify, render_template_string
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .db import engine

bp = Blueprint("views", __name__)

HOME = """<!doctype html>
<title>Demo app</title>
<h1>Demo app {{ version }}</h1>
<p>Environment: {{ env }}. Feature X is {{ 'on' if feature_x else 'off' }}.</p>
<p><a href="/health">/health</a></p>
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
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return jsonify(status="unhealthy", error=reason), 500
    return jsonify(status="healthy", version=current_app.config["VERSION"])
