"""/targets/<name>: one target at a glance; every area hangs off it as a tab."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from app.auth.guards import requires
from app.auth.roles import Role
from app.jobs.engine import current_targets, engine
from app.pagination import parse_cursor
from app.targetpage import timeline
from app.targetpage.overview import build_overview
from app.targetpage.tabs import Tab, register
from app.targets import registry
from app.targets.errors import TargetError
from app.wording import sentence

bp = Blueprint("targetpage", __name__)
register(Tab("overview", "Overview", "targetpage.overview", order=10))
register(Tab("timeline", "Timeline", "targetpage.timeline", order=15))

RECENT = 8  # timeline entries the overview shows


def target_or_404(name: str):
    """The target a URL names, or a 404 that lists the known ones."""
    try:
        return current_targets().open(name)
    except registry.UnknownTarget as exc:
        abort(404, description=f"{sentence(str(exc))}.")


@bp.get("/targets/<name>")
@requires(Role.VIEWER)
def overview(name: str):
    target = target_or_404(name)
    view = build_overview(target, engine().health.reading)
    recent = timeline.page(name, limit=RECENT)
    return render_template(
        "targetpage/overview.html", target=target, card=view.card, view=view, recent=recent, busy=view.card.busy
    )


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


HEALTH_NOW_TIMEOUT_S = 5.0  # one probe, asked for by a page right after a change: never a page held longer


@bp.get("/targets/<name>/health-now")
@requires(Role.OPERATOR)  # asked by the row of a change an operator made; not a probe for anyone to repeat
def health_now(name: str):
    """One probe of the target's health, now: a page shows it right after a change that can break the app (a flag
    turned on), where the dashboard would say it only at its next round."""
    target = target_or_404(name)
    probe, problem = None, None
    try:
        check = target.health()
        if check is None:
            problem = f"{name} has no health check: add [targets.{name}.health] to see it here"
        else:
            probe = check.probe(request_timeout_s=HEALTH_NOW_TIMEOUT_S)
    except TargetError as exc:
        problem = exc.in_words()
    engine().health.check_now()  # the dashboard's reading follows at once
    return render_template("targetpage/_health_now.html", target=target, probe=probe, problem=problem)
