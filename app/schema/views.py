"""The Migrations tab: current revision(s), heads, the graph with each revision's state, drift and its fix."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from app.auth.guards import requires
from app.auth.roles import Role
from app.jobs import service
from app.jobs.engine import current_targets
from app.jobs.runbook import ParamError
from app.schema import summary  # noqa: F401 - registers its overview line and timeline kind
from app.schema.runbooks import downgrade_plan, downgrade_revision
from app.schema.state import read_state
from app.targetpage.tabs import Tab
from app.targetpage.tabs import register as register_tab
from app.targetpage.views import target_or_404
from app.targets.errors import TargetError

bp = Blueprint("schema", __name__)
register_tab(Tab("migrations", "Migrations", "schema.tab", order=30))


@bp.get("/migrations")
@requires(Role.VIEWER)
def index():
    targets = current_targets()
    states = [read_state(targets.open(name)) for name in targets.names()]
    return render_template("schema/index.html", states=states)


@bp.get("/targets/<name>/migrations")
@requires(Role.VIEWER)
def tab(name: str):
    target = target_or_404(name)
    state = read_state(target, commits=True)
    return render_template("schema/tab.html", target=target, state=state, busy=service.busy_job(name))


@bp.get("/targets/<name>/migrations/downgrade")
@requires(Role.ADMIN)
def confirm_downgrade(name: str):
    """The downgrade's confirmation: every operation on the way down and what it destroys, before the button."""
    target = target_or_404(name)
    raw = request.args.get("revision", "")
    problem, plan, graph, revision = None, None, None, None
    try:
        revision = downgrade_revision(raw, name)
        graph, plan = downgrade_plan(target, revision)
    except ParamError as exc:
        problem = str(exc)
    except TargetError as exc:
        problem = exc.message
    status = 200 if problem is None else 400
    return (
        render_template(
            "schema/downgrade.html",
            target=target,
            raw=raw,
            revision=revision,
            plan=plan,
            graph=graph,
            problem=problem,
            busy=service.busy_job(name),
        ),
        status,
    )
