"""The Flags tab: every flag of a target, toggled at once (htmx), killed together, restored as of a moment."""

from __future__ import annotations

import json
from functools import cached_property
from urllib.parse import unquote

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.audit.store import Actor
from app.auth.guards import requires
from app.auth.roles import Role
from app.flags import captures as _captures  # noqa: F401 registers the flags part of every checkpoint
from app.flags import (
    history,
    restore,
    store,
    summary,  # noqa: F401 - registers its overview line and timeline kind
)
from app.jobs import formstate, swaps
from app.jobs.engine import current_targets
from app.pagination import keyset_slice, parse_cursor
from app.targetpage.tabs import Tab
from app.targetpage.tabs import register as register_tab
from app.targetpage.views import target_or_404
from app.targets.errors import TargetError
from app.targets.flags import Flag, FlagTableError, StaleFlag, TableReadOnly, UnknownFlag, VanishedFlags

bp = Blueprint("flags", __name__)
register_tab(Tab("flags", "Flags", "flags.tab", order=40))

SHOWN = 200  # rows on one page, paged by name (?after=NAME); a search narrows a bigger table
RESTORE_FORM = "flags.restore"  # the Restore as of form, as a refused form is kept for the tab (app.jobs.formstate)


def _status(exc: TargetError) -> int:
    if isinstance(exc, StaleFlag | VanishedFlags | restore.PlanChanged | TableReadOnly | store.DatabaseBeingReplaced):
        return 409  # not a 503: a retry fails too
    if isinstance(exc, UnknownFlag):
        return 404
    if isinstance(exc, FlagTableError | store.UnauditedChange):
        return 503
    return 422


def _htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def _actor() -> Actor:
    return Actor.of(current_user)


def _back(name: str, message: str, category: str, status: int = 303):
    flash(message, category)
    return redirect(url_for("flags.tab", name=name, q=request.form.get("q") or None), status)


def _recheck_health(target) -> None:
    """A flag can make or break the application: probe its health now rather than at the next round."""
    if target.config.health is not None:
        from app.jobs.engine import engine

        engine().health.check_now()


@bp.get("/flags")
@requires(Role.VIEWER)
def index():
    targets = current_targets().all()
    return render_template("flags/index.html", targets=targets)


@bp.get("/targets/<name>/flags")
@requires(Role.VIEWER)
def tab(name: str):
    target = target_or_404(name)
    query = (request.args.get("q") or "").strip()
    flags, unreadable, problem = [], [], None
    try:
        table = store.table_of(target)
        flags, unreadable = table.survey()
        if not unreadable:  # a first record needs every flag's state
            restore.ensure_baseline(name, table)
    except TargetError as exc:
        problem = exc.in_words()
    matching = [f for f in flags if query.lower() in f.name.lower() or query.lower() in f.description.lower()]
    # by name as a person reads a list (a before B, whatever the case), in Python, which the cursor is compared in;
    # `flask rewind flags list` prints them in the same order
    after = request.args.get("after") or None
    cursor = store.place(after) if after else None
    page = keyset_slice(sorted(matching, key=store.by_name), store.by_name, before=cursor, limit=SHOWN, ascending=True)
    last = history.last_changes(name) if flags else {}
    checkpoints = restore.recent_with_states(name)
    seen = restore.newest_seen(checkpoints)
    swapped = swaps.since(name, newest_only=True)
    return render_template(
        "flags/tab.html",
        swap=swapped[0] if swapped else None,
        replacing=store.replacing_job(name),
        target=target,
        flags=page.items,
        page=page,
        after=after,
        total=len(flags),
        matching=len(matching),
        query=query,
        last=last,
        outside={f.name for f in page.items if history.changed_outside(f, last.get(f.name), seen)},
        problem=problem,
        unreadable=unreadable,
        tags=sorted({f.tag for f in flags if f.tag}),
        tag_column=target.flags() and target.flags().columns.tag,
        checkpoints=checkpoints,
        **_may(),
    )


def _may() -> dict[str, bool]:
    """What the person may do, read while the request's user is loaded (a commit expires it: no second read)."""
    return {"may_operate": current_user.can(Role.OPERATOR), "may_admin": current_user.can(Role.ADMIN)}


class _Asker:
    """What the answering row needs to know of the person, read before the write: the write's commit ends the ops
    database transaction (and expires the user), so reading it after would cost a query on every toggle.

    The newest checkpoint's flag states are read only for a row that is not the toggle's own write: a row just
    written answers with the audit row written with it, and that is newer than any checkpoint taken before."""

    def __init__(self, target_name: str) -> None:
        self.may = _may()
        self.target_name = target_name

    @cached_property
    def seen(self):
        return restore.newest_seen_of(self.target_name)


def _row(
    target,
    flag: Flag,
    asker: _Asker,
    *,
    message: str | None = None,
    category: str = "error",
    status: int = 200,
    last=None,
    health_after: bool = False,
):
    # The toggle's own write (last given) is the newest thing Rewind knows of the row: no checkpoint to read.
    seen = None if last is not None else asker.seen
    last = last or history.last_change(target.name, flag.name)
    html = render_template(
        "flags/_row.html",
        target=target,
        flag=flag,
        last=last,
        outside=history.changed_outside(flag, last, seen),
        message=message,
        category=category,
        focus=True,
        health_after=health_after,
        **asker.may,
    )
    return html, status


def _notice(flag: str, exc: TargetError):
    """A toggle the table could not take, said above the table: in place of the row it took the row and its buttons
    away (a message squeezed into the first column), so the retry the message asks for needed a reload. The row
    stays as the page showed it: nothing was written."""
    html = render_template("flags/_message.html", message=exc.in_words(), flag=flag)
    return html, _status(exc), {"HX-Retarget": "#flag-notice", "HX-Reswap": "innerHTML"}


def _named(flag: str | None) -> str:
    """The flag a toggle or delete is for: a form field, for a browser drops a name such as '..' or 'a/./b' from a
    path; in the path only from a page served before it moved (those addresses still work). The field is
    percent-encoded: a browser sends a carriage return in a field's value as a line feed."""
    flag = unquote(request.form.get("flag", "")) if flag is None else flag
    if not flag:
        abort(400, description="Which flag? The form named none: reload the Flags tab and try again.")
    return flag


@bp.post("/targets/<name>/flags/toggle")
@bp.post("/targets/<name>/flags/<path:flag>/toggle")
@requires(Role.OPERATOR)
def toggle(name: str, flag: str | None = None):
    target = target_or_404(name)
    flag = _named(flag)
    asker = _Asker(name)
    actor, raw, reason = _actor(), request.form.get("seen"), request.form.get("reason", "")
    try:
        with store.refusing("flags.toggle", target, actor, {"flag": flag, "seen": raw, "reason": reason, "via": "web"}):
            seen = store.parse_state(raw, "seen")
        change, event = store.toggle(target, flag, not seen, seen=seen, actor=actor, reason=reason, via="web")
    except TargetError as exc:
        if not _htmx():
            return _back(name, exc.in_words(), "error")
        if isinstance(exc, StaleFlag):
            return _row(target, exc.flag, asker, message=exc.in_words(), status=409)
        if isinstance(exc, FlagTableError):  # reading the row again would fail (or wait) as the write did
            return _notice(flag, exc)
        try:
            current = store.table_of(target).get(flag)
        except UnknownFlag as unknown:  # deleted since the page was drawn: its row goes, with its buttons (review)
            return render_template("flags/_gone_row.html", flag=flag, said=unknown.message), 404
        except TargetError:
            return _notice(flag, exc)
        return _row(target, current, asker, message=exc.in_words(), status=_status(exc))
    done = f"{flag} is now {store.word(change.new)}."
    _recheck_health(target)
    if not _htmx():
        return _back(name, done, "success")
    last = event if change.changed else None
    return _row(target, change.after, asker, message=done, category="success", last=last, health_after=change.changed)


@bp.post("/targets/<name>/flags/kill")
@requires(Role.OPERATOR)
def kill(name: str):
    target = target_or_404(name)
    tag = (request.form.get("tag") or "").strip() or None
    names = None if tag else request.form.getlist("flag")
    try:
        changes = store.kill(target, names=names, tag=tag, actor=_actor(), reason=request.form.get("reason", ""))
    except TargetError as exc:
        return _back(name, exc.in_words(), "error")
    turned = [c.name for c in changes if c.changed]
    _recheck_health(target)
    return _back(
        name,
        f"Kill switch: {len(turned)} flag(s) turned off ({', '.join(turned) or 'all were already off'}).",
        "success",
    )


@bp.get("/targets/<name>/flags/restore")
@requires(Role.OPERATOR)
def restore_plan(name: str):
    target = target_or_404(name)
    try:
        plan = restore.plan(target, **restore.plan_args(request.args))
    except TargetError as exc:
        flash(exc.in_words(), "error")
        # back to the tab with what was typed in its fields, and the reason beside them
        typed = {key: request.args.get(key, "") for key in restore.MOMENT_FIELDS}
        formstate.remember(RESTORE_FORM, name, typed, {"moment": exc.in_words()})
        return redirect(url_for("flags.tab", name=name), 303)
    return _plan_page(target, plan)


def _plan_page(target, plan):
    return render_template("flags/restore.html", target=target, plan=plan, seen=json.dumps(plan.expected))


@bp.post("/targets/<name>/flags/restore")
@requires(Role.OPERATOR)
def restore_apply(name: str):
    target = target_or_404(name)
    actor, form = _actor(), request.form
    asked = {key: form[key] for key in restore.MOMENT_FIELDS if form.get(key)}
    try:
        with store.refusing("flags.restore", target, actor, {**asked, "reason": form.get("reason", ""), "via": "web"}):
            try:
                seen = {str(k): bool(v) for k, v in json.loads(form.get("seen") or "").items()}
            except (ValueError, AttributeError):
                raise store.BadFlagInput("the confirmed plan is missing from the form; show the diff again") from None
            plan = restore.plan(target, **restore.plan_args(form))
        changes = restore.apply(
            target,
            plan,
            seen=seen,
            fingerprint=form.get("fingerprint", ""),
            recreate=form.getlist("recreate"),
            actor=actor,
            reason=form.get("reason", ""),
            via="web",
        )
    except restore.PlanChanged as exc:
        if exc.plan is None:
            return _back(name, exc.in_words(), "error")
        flash(exc.in_words(), "error")
        return _plan_page(target, exc.plan), 409
    except TargetError as exc:
        return _back(name, exc.in_words(), "error")
    _recheck_health(target)
    return _back(name, f"Flags restored as of {plan.source}: {len(changes)} change(s) written.", "success")


@bp.post("/targets/<name>/flags/new")
@requires(Role.ADMIN)
def create(name: str):
    target = target_or_404(name)
    actor, form = _actor(), request.form
    asked = {
        "flag": form.get("flag", ""),
        "new": form.get("enabled") or "off",
        "description": form.get("description") or "",
        "reason": form.get("reason", ""),
        "via": "web",
    }
    try:
        with store.refusing("flags.create", target, actor, asked):
            flag = store.new_flag(asked["flag"], asked["new"], asked["description"])
        store.create(target, flag, actor=actor, reason=asked["reason"], via="web")
    except TargetError as exc:
        return _back(name, exc.in_words(), "error")
    return _back(name, f"Flag {flag.name} created ({store.word(flag.enabled)}).", "success")


@bp.post("/targets/<name>/flags/delete")
@bp.post("/targets/<name>/flags/<path:flag>/delete")
@requires(Role.ADMIN)
def delete(name: str, flag: str | None = None):
    target = target_or_404(name)
    flag = _named(flag)
    actor, raw, reason = _actor(), request.form.get("seen"), request.form.get("reason", "")
    try:
        with store.refusing("flags.delete", target, actor, {"flag": flag, "seen": raw, "reason": reason, "via": "web"}):
            seen = store.parse_state(raw, "seen")
        store.delete(target, flag, seen=seen, actor=actor, reason=reason)
    except TargetError as exc:
        return _back(name, exc.in_words(), "error")
    return _back(name, f"Flag {flag} deleted; a restore as of an earlier time can bring it back.", "success")


@bp.get("/targets/<name>/flags/history")
@requires(Role.VIEWER)
def flag_history(name: str):
    """One flag's page. The name travels in the query: as a path it collided with the tab's actions (a flag named
    restore reached the restore plan), and a browser drops a name such as '..' or 'a/./b' from a path."""
    target = target_or_404(name)
    flag = request.args.get("flag")
    if flag is None:
        abort(
            404,
            description=f"Which flag? Open it from the Flags tab, or add ?flag=NAME to /targets/{name}/flags/history.",
        )
    current, problem = None, None
    try:
        current = store.table_of(target).get(flag)
    except UnknownFlag:
        current = None
    except TargetError as exc:
        problem = exc.in_words()
    before = parse_cursor(request.args.get("before"))
    page = history.of_flag(name, flag, before=before, limit=history.PAGE_SIZE)
    if current is None and not page.items and problem is None and before is None:
        abort(404, description=f"There is no flag {flag!r} on {name}, now or in Rewind's records.")
    swapped = swaps.since(name, newest_only=True)
    return render_template(
        "flags/history.html",
        swap=swapped[0] if swapped else None,
        target=target,
        name=flag,
        flag=current,
        entries=page.items,
        page=page,
        before=before,
        problem=problem,
    )


@bp.get("/targets/<name>/flags/<path:flag>")
@requires(Role.VIEWER)
def old_flag_link(name: str, flag: str):
    """A bookmark of a flag's page at its old address, /targets/NAME/flags/FLAG: moved for good. (A flag named
    restore or history never had a working one: those addresses are the tab's own.)"""
    target_or_404(name)
    return redirect(url_for("flags.flag_history", name=name, flag=flag), 301)
