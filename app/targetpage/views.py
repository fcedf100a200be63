"""/targets/<name>: one target at a glance; every area hangs off it as a tab."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from app.auth.guards import requires
from app.auth.roles import Role
from app.jobs.engine import engine
from app.targetpage.overview import build_overview
from app.targetpage.tabs import Tab, register
from app.targets import registry

bp = Blueprint("targetpage", __name__)
register(Tab("overview", "Overview", "targetpage.overview", order=10))


def target_or_404(name: str):
    """The target a URL names, or a 404 that lists the known ones."""
    try:
        return registry.current().open(name)
    except registry.UnknownTarget as exc:
        abort(404, description=f"{str(exc).capitalize()}.")


@bp.get("/targets/<name>")
@requires(Role.VIEWER)
def overview(name: str):
    target = target_or_404(name)
    view = build_overview(target, engine().health.reading)
    return render_template("targetpage/overview.html", target=target, card=view.card, view=view)
