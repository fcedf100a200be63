"""Deployment history per target: commits, what is deployed, known-good marks, checkpoints, diffs."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from app.auth.guards import requires
from app.auth.roles import Role
from app.checkpoints import store
from app.deployments import history as code_history
from app.deployments import summary as _summary  # noqa: F401 registers the traffic line of the overview and cards
from app.deployments.nextsteps import after_failed_deploy
from app.deployments.traffic import traffic_of
from app.jobs import followups, formstate, service
from app.jobs.engine import current_targets
from app.schema.refusal import refused_change
from app.targetpage.tabs import Tab
from app.targetpage.tabs import register as register_tab
from app.targetpage.views import target_or_404
from app.targets.git import COMMIT_ID, GitError

bp = Blueprint("deployments", __name__)
register_tab(Tab("deployments", "Deployments", "deployments.history", order=20))
followups.register("deploy", after_failed_deploy, "deployments/_after_deploy.html")


@bp.get("/deployments")
@requires(Role.VIEWER)
def index():
    names = current_targets().names()
    return render_template("deployments/index.html", names=names)


@bp.get("/targets/<name>/deployments")
@requires(Role.VIEWER)
def history(name: str):
    target = target_or_404(name)
    before = request.args.get("before") or None
    if before is not None and not COMMIT_ID.match(before):
        abort(400, description="before: expected a commit id of 7-40 hex characters")
    page = code_history.history(target, before, resets=current_user.can(Role.ADMIN))  # only admins reset
    return render_template(
        "deployments/history.html",
        target=target,
        commits=page.commits,
        head=page.head,
        problem=page.problem,
        drift=page.drift,
        release_files=page.release_files,
        refused_files=page.refused_files,
        obstacles=page.obstacles,
        unrevertable=page.unrevertable,
        taken_off=page.taken_off,
        known_good=page.known_good,
        checkpoints=page.checkpoints,
        next_before=page.next_before,
        busy=service.busy_job(name),
        traffic=traffic_of(name),
        gate_refusal=(refused := refused_change(target, formstate.form_for(None, name))),
        page_says=refused.flashed if refused else None,
    )


@bp.get("/targets/<name>/commits/<sha>")
@requires(Role.VIEWER)
def commit(name: str, sha: str):
    target = target_or_404(name)
    try:
        detail, head = code_history.commit_detail(target, sha)
    except GitError as exc:
        abort(404, description=exc.in_words())
    return render_template(
        "deployments/commit.html", target=target, detail=detail, head=head, known_good=store.known_good(name)
    )
