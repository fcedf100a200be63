"""Job pages: the list, starting a runbook, one job's live page, cancel, and its websocket."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from simple_websocket import ConnectionClosed
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.audit import store as audit_store
from app.audit.store import Actor
from app.auth import sessions
from app.auth.guards import refuse, requires, target_asked
from app.auth.roles import Role
from app.extensions import db, sock
from app.jobs import followups, formstate, service
from app.jobs import runbook as runbooks
from app.jobs.engine import current_targets, engine
from app.jobs.events import load_view
from app.jobs.fanout import Broadcaster
from app.jobs.models import Job
from app.jobs.runner import interrupt_if_dead
from app.jobs.socketcap import CLOSE_CODE, SocketCap
from app.pagination import keyset_page, parse_cursor
from app.statuses import ACTIVE_JOB_STATES, JobState
from app.targets.registry import UnknownTarget
from app.wording import sentence

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

PAGE_SIZE = 50
FORM_FIELDS = {"runbook", "target", "csrf_token", "next"}  # the start form's own fields, not runbook parameters
MAX_TARGET_CHARS = 128  # the audit row's target column
WS_IDLE_CHECK_S = 5
# How often a watcher looks whether the process running its job is still there (a `flask rewind worker` killed
# outright): the page then shows the job interrupted instead of running until something else asks.
WS_LIVENESS_S = 2
# 1012 "service restart": the page's websocket extension reconnects after it, as after a dropped connection.
SERVICE_RESTART = 1012
LEAVING = "Rewind is restarting; reconnecting"
CLOSE_WAIT_S = 2.0  # for the browser's answer to a close frame
SIGNED_OUT = "you were signed out; reload the page to sign in again"


def _job_or_404(job_id: int) -> Job:
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404, description=f"There is no job #{job_id}.")
    return job


def _runbook_or_404(name: str) -> runbooks.Runbook:
    try:
        return runbooks.get(name)
    except runbooks.UnknownRunbook as exc:
        abort(404, description=f"{sentence(str(exc))}.")


def _list_filters() -> dict[str, str]:
    filters = {k: request.args.get(k, "").strip() for k in ("target", "runbook", "state")}
    for key, value in filters.items():
        if "\x00" in value:  # PostgreSQL cannot even compare one: the query would fail
            abort(400, description=f"{key}: remove the NUL character; no {key} name has one")
    if filters["state"] and filters["state"] not in set(JobState):
        abort(400, description=f"state: choose one of {', '.join(JobState)}, got {filters['state']!r}")
    return {k: v for k, v in filters.items() if v}


def _jobs_page():
    filters = _list_filters()
    before = parse_cursor(request.args.get("before"))
    stmt = select(Job)
    for key, value in filters.items():
        stmt = stmt.where(getattr(Job, key) == value)
    return filters, before, keyset_page(stmt, Job.id, before=before, limit=PAGE_SIZE)


@bp.get("")
@requires(Role.VIEWER)
def index():
    filters, before, page = _jobs_page()
    return render_template(
        "jobs/index.html",
        page=page,
        filters=filters,
        before=before,
        states=list(JobState),
        runbooks=runbooks.all_runbooks(),
        active=any(JobState(j.state) in ACTIVE_JOB_STATES for j in page.items),
    )


@bp.get("/rows")
@requires(Role.VIEWER)
def rows():
    """The list's rows alone: the page polls this while any job on it is active, and its newest page always."""
    filters, before, page = _jobs_page()
    return render_template("jobs/_rows.html", page=page, filters=filters, before=before)


@bp.get("/new")
@requires(Role.OPERATOR)
def new():
    if not request.args.get("runbook"):
        # No runbook named (a hand-typed or bookmarked URL): the list of runbooks to choose from, not a 404.
        return redirect(url_for("jobs.index", _anchor="start-a-job"))
    book = _runbook_or_404(request.args["runbook"])
    target = request.args.get("target", "")
    form = formstate.form_for(book.name, target or None)  # a form refused for another target is not this one
    if form is formstate.EMPTY and target:
        form = formstate.FormState(book.name, target, {"target": target})
    return render_template("jobs/new.html", book=book, targets=current_targets().names(), form=form)


@bp.post("")
@requires(Role.OPERATOR)
def start():
    book = _runbook_or_404(request.form.get("runbook", ""))
    if not current_user.can(book.role):
        refuse(f"needs the {book.role.label} role to run “{book.title}”", target=target_asked())
    target = request.form.get("target", "").strip() or None
    # Every field the form sent, so a parameter the runbook does not have is refused rather than dropped.
    raw = {key: request.form.get(key, "") for key in request.form if key not in FORM_FIELDS}
    try:
        if target is not None and len(target) > MAX_TARGET_CHARS:
            target = None
            raise runbooks.ParamError(
                "target", f"is too long: a target name has at most {MAX_TARGET_CHARS} characters", "Target"
            )
        if book.needs_target:
            if target is None:
                raise runbooks.ParamError("target", "is required", "Target")
            current_targets().config(target)
        else:
            target = None
        # Busy first: the parameters' checks read the target (git, the schema gate), which another job is changing.
        service.refuse_if_busy(book, target, raw, Actor.of(current_user))
        params = book.parse_params(raw, target)
        job = service.enqueue(book, target, params, Actor.of(current_user))
    except UnknownTarget as exc:
        service.not_queued(book.name, "unknown target")
        abort(404, description=f"{sentence(str(exc))}.")
    except (runbooks.ParamError, service.JobRefused) as exc:
        status = 409 if isinstance(exc, service.JobRefused) else 400
        errors = {}
        if isinstance(exc, runbooks.ParamError):
            errors[exc.param] = exc.problem
            service.not_queued(book.name, str(exc), target=target)
        flash(str(exc), "error")
        # An oversized value is not sent back: the form shows the field empty with the error.
        values = {"target": target or "", **{k: "" if runbooks.too_long(v) else v for k, v in raw.items()}}
        back = formstate.send_back(book.name, target, values, errors)
        if back is not None:
            return back
        return render_template(
            "jobs/new.html",
            book=book,
            targets=current_targets().names(),
            form=formstate.FormState(book.name, target, values, errors),
        ), status
    url = url_for("jobs.show", job_id=job.id)
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Redirect": url}
    return redirect(url)


@bp.get("/<id:job_id>")
@requires(Role.VIEWER)
def show(job_id: int):
    job = _job_or_404(job_id)
    view = load_view(job)
    audit = audit_store.job_rows(job.id)
    try:
        book = runbooks.get(job.runbook)
    except runbooks.UnknownRunbook:
        book = None
    can_cancel = not job.job_state.is_final and (current_user.id == job.actor_id or current_user.can(Role.ADMIN))
    return render_template(
        "jobs/show.html",
        job=job,
        view=view,
        book=book,
        audit=audit,
        can_cancel=can_cancel,
        followup=followups.for_job(job),
    )


@bp.get("/<id:job_id>/audit")
@requires(Role.VIEWER)
def audit_panel(job_id: int):
    """The job page's audit panel alone: the page fetches it again when the job's final event arrives."""
    job = _job_or_404(job_id)
    return render_template("jobs/_audit.html", job=job, audit=audit_store.job_rows(job.id))


@bp.post("/<id:job_id>/cancel")
@requires(Role.OPERATOR)
def cancel(job_id: int):
    job = _job_or_404(job_id)
    if current_user.id != job.actor_id and not current_user.can(Role.ADMIN):
        refuse("may be cancelled only by the person who started it or an admin", target=job.target)
    try:
        service.cancel(job, Actor.of(current_user))
    except service.NotCancellable as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("jobs.show", job_id=job.id)), 303
    # No flash: on a live page it would outlast the cancel it announces. The page says "cancelling" in its
    # actions panel instead, which the job's final event replaces.
    return redirect(url_for("jobs.show", job_id=job.id)), 303


def _same_origin() -> bool:
    """Browsers send Origin on websocket handshakes; a foreign one is a hijacking attempt."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme in ("http", "https")


def broadcaster() -> Broadcaster:
    return engine().fanout


def _load_view_and_release(job_id: int):
    try:
        return load_view(db.session.get(Job, job_id))
    finally:
        db.session.remove()


def _session_over(session_id: int) -> str | None:
    """Why this watcher may no longer read, since the handshake: its session was ended (sign-out, an account
    change) or ran past its idle or absolute limit (ended and audited here, as a request would). None: it may."""
    settings = current_app.config["REWIND_SETTINGS"]
    try:
        verdict = sessions.recheck(
            session_id, idle=timedelta(minutes=settings.idle_minutes), lifetime=timedelta(hours=settings.session_hours)
        )
        if verdict.refused in (sessions.EndReason.IDLE, sessions.EndReason.LIFETIME):
            said = sessions.record_expiry(
                verdict.user, verdict.refused, idle_minutes=settings.idle_minutes, session_hours=settings.session_hours
            )
            return f"you were {said}; reload the page to sign in again"
        return None if verdict.row is not None else SIGNED_OUT
    finally:
        db.session.remove()


_looked_at: dict[int, float] = {}  # job id -> when a watcher in this process last looked at its process
_looking = threading.Lock()


def _mark_if_dead(job_id: int) -> None:
    """A running job whose process is gone is marked interrupted (its end event then reaches every watcher).

    Once per job per WS_LIVENESS_S in this process, however many pages watch it: each look takes a connection for
    the job's lock besides the session's."""
    now = time.monotonic()
    with _looking:
        if now - _looked_at.get(job_id, 0.0) < WS_LIVENESS_S:
            return
        _looked_at[job_id] = now
    try:
        job = db.session.get(Job, job_id)
        running = job is not None and job.job_state == JobState.RUNNING
        if running and interrupt_if_dead(current_app._get_current_object(), job):
            db.session.commit()
        elif not running:
            with _looking:
                _looked_at.pop(job_id, None)
    finally:
        db.session.remove()


def _stream(ws, job_id: int, session_id: int) -> None:
    """Snapshot, then live events, until the job ends, the browser leaves, its session is ended or this process
    stops serving."""
    fanout = broadcaster()
    db.session.remove()  # no pooled connection may be held while waiting for the feed (see fanout._broadcast)
    if fanout.leaving.is_set():
        _close(ws, SERVICE_RESTART, LEAVING)
        return
    # simple-websocket's reader thread sets ws.event when the browser sends or leaves; the fanout sets it too.
    watcher = fanout.attach(job_id, ws.sock, lambda: _load_view_and_release(job_id), wake=ws.event.set)
    leaving = False
    signed_out: str | None = None
    checked = looked = time.monotonic()
    try:
        while not watcher.done.is_set() and not watcher.closed:
            if leaving := fanout.leaving.is_set():
                break
            ws.event.wait(min(WS_IDLE_CHECK_S, WS_LIVENESS_S))
            ws.event.clear()
            while ws.receive(timeout=0) is not None:  # the page sends nothing; raises once the browser has left
                pass
            if time.monotonic() - checked >= WS_IDLE_CHECK_S:  # not once per event: a busy log sends many
                checked = time.monotonic()
                try:
                    signed_out = _session_over(session_id)
                except SQLAlchemyError as exc:  # the ops database busy or away: the next check asks again
                    current_app.logger.warning("job %s websocket: could not check its session: %s", job_id, exc)
                if signed_out:
                    break
            if time.monotonic() - looked >= WS_LIVENESS_S:
                looked = time.monotonic()
                try:
                    _mark_if_dead(job_id)
                except SQLAlchemyError as exc:
                    current_app.logger.warning("job %s websocket: could not look at its process: %s", job_id, exc)
        else:
            fanout.drain(watcher, timeout=5.0)
    except ConnectionClosed:
        pass
    finally:
        fanout.detach(watcher)  # no fanout send is half-way once this returns
    # What a browser that stopped reading has not taken may end half-way through a frame: no close frame after it.
    code, reason = (SERVICE_RESTART, LEAVING) if leaving else (1000, None)
    if signed_out:  # 1008: the page says why and does not reconnect
        code, reason = CLOSE_CODE, signed_out
    _close(ws, code, reason, frame=not watcher.backlog)


def _close(ws, code: int = 1000, reason: str | None = None, frame: bool = True) -> None:
    """Send the close frame, give the browser a moment to answer it, then end the connection either way.

    simple-websocket's reader thread otherwise waits for the answer for ever, and its close frame's send for
    room in the socket: a browser that went silent (a sleeping laptop) would keep a thread, and a stopping
    worker, until gunicorn killed it. Without `frame`, the connection just ends (the page reconnects).
    """
    if frame:
        # The browser may have gone, or reset: its socket may already be closed (EBADF on a page left or reloaded).
        with contextlib.suppress(ConnectionClosed, OSError):
            ws.sock.settimeout(CLOSE_WAIT_S)
            ws.close(code, reason)
        ws.thread.join(CLOSE_WAIT_S)
    if not frame or ws.thread.is_alive():
        with contextlib.suppress(OSError):
            ws.sock.shutdown(socket.SHUT_RDWR)


class _CaptureRoute:
    """Receives flask-sock's handshake view instead of registering it, so guards can run first."""

    view = None

    def route(self, rule: str, **options):
        def keep(view):
            self.view = view
            return view

        return keep


_capture = _CaptureRoute()
sock.route("/<id:job_id>/ws", bp=_capture)(_stream)


def _refuse_socket(ws, job_id: int, reason: str) -> None:
    _close(ws, CLOSE_CODE, reason)


_capture_refusal = _CaptureRoute()
sock.route("/<id:job_id>/ws", bp=_capture_refusal)(_refuse_socket)


def socket_cap() -> SocketCap:
    return engine().socket_cap


@requires(Role.VIEWER)
def websocket(job_id: int):
    """Checks run before the handshake, so a refusal is a plain HTTP 403/404; over the cap, a close with the reason."""
    if not _same_origin():
        refuse("comes from another site (websocket Origin does not match this host)")
    _job_or_404(job_id)
    holder, name = (g.server_session.id, current_user.id), current_user.name
    db.session.remove()  # a watcher holds no pooled connection while it waits
    cap = socket_cap()
    if reason := cap.acquire(*holder):
        current_app.logger.warning("job websocket refused for %s: %s", name, reason)
        return _capture_refusal.view(job_id=job_id, reason=reason)
    try:
        return _capture.view(job_id=job_id, session_id=holder[0])
    finally:
        cap.release(*holder)


bp.add_url_rule("/<id:job_id>/ws", "websocket", websocket, websocket=True)
