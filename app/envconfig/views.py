"""The Config tab: env file versions, masked diffs, reveal one value (admin, audited), snapshot, restore, edit."""

from __future__ import annotations

import base64

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.audit.store import Actor, record_and_commit
from app.auth.guards import refuse, requires
from app.auth.roles import Role
from app.envconfig import (
    diff,
    keys,
    runbooks,
    store,
    summary,  # noqa: F401 - registers its overview line and timeline kind
)
from app.envconfig.models import EnvVersion
from app.extensions import db
from app.jobs import formstate, service
from app.jobs.engine import current_targets
from app.jobs.runbook import MAX_PARAM_CHARS, ParamError, too_long
from app.pagination import parse_cursor
from app.statuses import EnvSource, Outcome
from app.targetpage.tabs import Tab
from app.targetpage.tabs import register as register_tab
from app.targetpage.views import target_or_404
from app.targets.errors import TargetError

bp = Blueprint("envconfig", __name__)
register_tab(Tab("config", "Config", "envconfig.tab", order=50))


@bp.get("/config")
@requires(Role.VIEWER)
def index():
    configs = current_targets().all()
    return render_template("envconfig/index.html", configs=configs)


def _default_sides(newest_two: list[EnvVersion], now: diff.Side | None) -> tuple[str | None, str]:
    """Without a choice: what changed last. While the file is the newest version, that version's own change (the
    one before against the file now); once it was changed outside Rewind, the newest version against the file now,
    so the outside edit shows alone rather than mixed with the last recorded change."""
    if not newest_two:
        return None, diff.NOW
    newest = newest_two[0]
    if len(newest_two) > 1 and (now is None or now.file_digest == newest.file_digest):
        return str(newest_two[1].id), diff.NOW
    return str(newest.id), diff.NOW


@bp.get("/targets/<name>/config")
@requires(Role.VIEWER)
def tab(name: str):
    target = target_or_404(name)
    if target.config.env_file is None:
        return render_template("envconfig/tab.html", target=target, missing=True)
    before = parse_cursor(request.args.get("before"))
    page = store.versions_page(name, before=before)
    newest_two = store.versions(name, limit=2) if before is not None else page.items[:2]
    problem, result, now = None, None, None
    a, b = request.args.get("a"), request.args.get("b")
    try:
        now = diff.side(target, diff.NOW)
    except TargetError as exc:
        problem = exc.in_words()
    default_a, default_b = _default_sides(newest_two, now)
    a, b = a or default_a, b or default_b
    try:
        if now is not None and a is not None:
            result = diff.between(target, a, b)
    except TargetError as exc:
        if isinstance(exc, store.UnknownVersion):
            abort(404, description=exc.message)
        problem = exc.in_words()
    return render_template(
        "envconfig/tab.html",
        target=target,
        missing=False,
        versions=page.items,
        page=page,
        before=before,
        current_id=store.current_id(name, now.file_digest) if now else None,
        unverified=store.unverified(page.items),
        outside=_changed_outside(newest_two, now),
        result=result,
        now=now,
        problem=problem,
        a=a,
        b=b,
        busy=service.busy_job(name),
        may_change=_may_change(target),
        EnvSource=EnvSource,
    )


def _changed_outside(newest_two: list[EnvVersion], now: diff.Side | None) -> EnvVersion | None:
    """The newest version when the file on disk no longer holds it: someone edited it by hand since, and until the
    monitor records that as a version, the missing "current" badge would be the only sign."""
    if now is None or not newest_two or now.file_digest == newest_two[0].file_digest:
        return None
    return newest_two[0]


def _may_change(target) -> bool:
    """Operators restore; a protected target's env file is changed by admins only."""
    return current_user.can(Role.ADMIN if target.config.protected else Role.OPERATOR)


@bp.post("/targets/<name>/config/snapshot")
@requires(Role.OPERATOR)
def snapshot(name: str):
    target = target_or_404(name)
    try:
        version, recorded = store.snapshot(target, actor=Actor.of(current_user))
    except TargetError as exc:
        flash(f"No snapshot: {exc.in_words()}", "error")
        return redirect(url_for("envconfig.tab", name=name)), 303
    if recorded:
        flash(f"Snapshot kept as version #{version.id}.", "info")
    else:
        flash(f"The env file is unchanged since version #{version.id}; nothing new to keep.", "info")
    return redirect(url_for("envconfig.tab", name=name)), 303


@bp.post("/targets/<name>/config/reveal")
@requires(Role.ADMIN)
def reveal(name: str):
    target = target_or_404(name)
    ref, key = request.form.get("side", "").strip(), request.form.get("key", "").strip()
    details = {"side": ref, "key": key}
    try:
        value = diff.reveal(target, ref, key)
    except (TargetError, KeyError) as exc:
        db.session.rollback()
        reason = exc.message if isinstance(exc, TargetError) else f"{diff.label_of(ref)} has no key {key!r}"
        details["reason"] = reason
        record_and_commit("envconfig.reveal", outcome=Outcome.FAILED, target=name, details=details)
        abort(404, description=reason)
    record_and_commit("envconfig.reveal", target=name, details=details)
    return render_template("envconfig/_reveal.html", key=key, value=value)


def _enqueue(name: str, runbook, raw: dict, sealed: str | None = None):
    """Queue a restore or an edit; a refusal goes back to its form on the tab, the reason beside the field."""
    target = target_or_404(name)
    if not _may_change(target):
        refuse("needs the admin role to change the env file of a protected target", target=name)
    if target.config.env_file is None:
        return _without_env_file(name, runbook, raw)
    try:
        # Busy first: the parameters' checks read the env file, which another job may be rewriting.
        service.refuse_if_busy(runbook, name, raw, Actor.of(current_user))
        params = runbook.parse_params(raw if sealed is None else {**raw, "sealed": sealed}, name)
        job = service.enqueue(runbook, name, params, Actor.of(current_user))
    except (ParamError, service.JobRefused) as exc:
        if isinstance(exc, ParamError):
            return _refused(name, runbook, raw, exc.param, exc.problem, str(exc))
        flash(str(exc), "error")
        return formstate.send_back(runbook.name, name, raw, {}, url_for("envconfig.tab", name=name))
    return redirect(url_for("jobs.show", job_id=job.id)), 303


def _without_env_file(name: str, runbook, raw: dict):
    """A restore or edit posted from a tab opened before env_file left the targets file: refused, and audited as
    every refusal is (it once only said "no env file version 3", or for an edit nothing in the audit log)."""
    message = store.NoEnvFile(name).message
    return _refused(name, runbook, raw, "env_file", message, f"Nothing was changed: {message}.")


def _refused(name: str, runbook, raw: dict, field: str, problem: str, said: str):
    """A refused restore or edit: audited, flashed, and sent back to its form with the reason beside `field`."""
    service.not_queued(runbook.name, said, target=name, params=raw)
    flash(said, "error")
    return formstate.send_back(runbook.name, name, raw, {field: problem}, url_for("envconfig.tab", name=name))


@bp.post("/targets/<name>/config/restore")
@requires(Role.OPERATOR)
def restore(name: str):
    raw = {k: request.form.get(k, "") for k in ("version", "expect", "confirm")}
    return _enqueue(name, runbooks.RESTORE, raw)


@bp.post("/targets/<name>/config/edit")
@requires(Role.ADMIN)
def edit(name: str):
    target = target_or_404(name)
    raw = {k: request.form.get(k, "") for k in ("key", "expect", "confirm")}
    if target.config.env_file is None:
        return _without_env_file(name, runbooks.EDIT, raw)
    value = request.form.get("value", "")
    # The value travels to the job sealed to Rewind's key: never in clear in the job row, the audit log or
    # a refused form sent back to the page (the person types it again).
    try:
        sealed = base64.b64encode(keys.seal(target.instance_dir, value.encode("utf-8"))).decode()
    except TargetError as exc:
        return _refused(name, runbooks.EDIT, raw, "value", exc.message, f"Nothing was changed: {exc.message}")
    if too_long(sealed):  # said of the Value field the person typed, not of the sealed parameter they never saw
        problem = (
            f"is too long: sealed for the job it takes {len(sealed):,} characters, and a job holds at most "
            f"{MAX_PARAM_CHARS:,}; nothing was changed"
        )
        return _refused(name, runbooks.EDIT, raw, "value", problem, f"Value {problem}.")
    return _enqueue(name, runbooks.EDIT, raw, sealed)
