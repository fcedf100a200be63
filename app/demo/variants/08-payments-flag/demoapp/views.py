"""Pages and API: home, health, stats and segments."""

from flask import Blueprint, current_app, jsonify, render_template_string
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import flags
from .db import engine

bp = Blueprint("views", __name__)

TABLES = ("users", "sessions", "segments", "feature_flags")

HOME = """<!doctype html>
<title>Demo app</title>
<h1>Demo app {{ version }}</h1>
<p>Environment: {{ env }}. Feature X is {{ 'on' if feature_x else 'off' }}.</p>
<p>Checkout: {{ 'new' if new_checkout else 'classic' }}.</p>
<h2>Feature flags</h2>
<ul>
{% for name, on in flags %}<li>{{ name }}: {{ 'on' if on else 'off' }}</li>
{% endfor %}</ul>
<p><a href="/health">/health</a> · <a href="/stats">/stats</a> · <a href="/api/segments">/api/segments</a></p>
"""


@bp.get("/")
def home():
    return render_template_string(
        HOME,
        version=current_app.config["VERSION"],
        env=current_app.config["APP_ENV"],
        feature_x=current_app.config["FEATURE_X"],
        new_checkout=flags.is_enabled("new_checkout"),
        flags=flags.all_flags(),
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
    if flags.is_enabled("payments_v2"):
        # The new provider's client is not deployed yet: turning the flag on too early breaks checkout.
        return jsonify(status="unhealthy", error="payments_v2 is on, but the new payments provider is unreachable"), 500
    return jsonify(status="healthy", version=current_app.config["VERSION"], users=users)


@bp.get("/stats")
def stats():
    """Row counts, for dashboards and for checking a restore."""
    counts = {}
    with engine().connect() as conn:
        for table in TABLES:  # names from the fixed list above, never from a request
            counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
        counts["flags_enabled"] = conn.execute(text("SELECT count(*) FROM feature_flags WHERE enabled")).scalar_one()
    return jsonify(counts)


@bp.get("/api/segments")
def segments():
    with engine().connect() as conn:
        rows = conn.execute(text("SELECT id, name, description, rule FROM segments ORDER BY name")).mappings().all()
    return jsonify(segments=[dict(row) for row in rows])
