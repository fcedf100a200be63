"""/targets/<name>: one target at a glance; every area hangs off it as a tab."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from app.auth.guards import requires
from app.auth.roles import Role
from app.jobs.engine import engine
from app.pagination import parse_cursor
from app.targetpage import timeline
from app.targetpage.overview import build_overview
from app.targetpage.tabs import Tab, register
from app.targets import registry
from app.wording import sentence

bp = Blueprint("targetpage", __name__)
register(Tab("overview", "Overview", "targetpage.overview", order=10))
register(Tab("timeline", "Timeline", "targetpage.timeline", order=15))

RECENT = 8  # timeline entries the overview shows


def target_or_404(name: str):
    """The target a URL names, or a 404 that lists the known ones."""
    try:
        return registry.current().open(name)
    except registry.UnknownTarget as exc:
        abort(404, description=f"{sentence(str(exc))}.")


@bp.get("/targets/<name>")
@requires(Role.VIEWER)
def overview(name: str):
    target = target_or_404(name)
    view = build_overview(target, engine().health.reading)
    recent = timeline.page(name, limit=RECENT)
    return render_template("targetpage/overview.html", target=target, card=view.card, view=view, recent=recent)


@bp.get("/targets/<name>/timeline", endpoint="timeline")
@requires(Role.VIEWER)
def timeline_page(name: str):
    target = target_or_404(name)
    key = request.args.get("kind", "").strip()
    try:
        selected = timeline.kind(key) if key else None
    except timeline.UnknownKind as exc:
        abort(400, description=f"kind: {exc}.")
    before = parse_cursor(request.args.get("before"))
    entries = timeline.page(name, selected, before=before)
    return render_template(
        "targetpage/timeline.html",
        target=target,
        entries=entries,
        kinds=timeline.all_kinds(),
        selected=selected,
        before=before,
    )
