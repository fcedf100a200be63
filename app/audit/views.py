"""The audit log pages: browse, filter, export, and the chain's status."""

from __future__ import annotations

import threading
import time

from flask import Blueprint, Response, abort, render_template, request, stream_with_context
from flask_login import current_user
from sqlalchemy import select

from app.audit import export, store
from app.audit.filters import PAGE_LABELS, AuditFilter, FilterError
from app.audit.models import AuditEvent
from app.auth.guards import requires
from app.auth.roles import Role
from app.pagination import keyset_page, parse_cursor
from app.statuses import Outcome

bp = Blueprint("audit", __name__, url_prefix="/audit")

PAGE_SIZE = 50


def _export_filter() -> AuditFilter:
    """An export is a file, not a page: a filter it cannot read is a 400 whose one line says which and how."""
    try:
        return AuditFilter.from_args(request.args)
    except FilterError as exc:
        abort(Response(f"Bad filter: {exc}\n", status=400, mimetype="text/plain"))


@bp.get("")
@requires(Role.VIEWER)
def index():
    """The log, filtered; a filter it cannot read shows the page again with the reason and every value as typed."""
    before = parse_cursor(request.args.get("before"))
    try:
        filters = AuditFilter.from_args(request.args)
    except FilterError as exc:
        shown = {"filters": exc.typed, "problems": exc.problems, "labels": PAGE_LABELS}
        return render_template("audit/index.html", page=None, outcomes=list(Outcome), before=None, **shown), 400
    page = keyset_page(filters.apply(select(AuditEvent)), AuditEvent.id, before=before, limit=PAGE_SIZE)
    return render_template(
        "audit/index.html", page=page, filters=filters, problems={}, outcomes=list(Outcome), before=before
    )


# One incremental check at a time per process: concurrent badge requests would only repeat the same work.
_checking = threading.Lock()


@bp.get("/chain")
@requires(Role.VIEWER)
def chain_status():
    """The chain badge: checks only rows newer than the sealed mark (bounded), never the whole log.

    The full walk is `flask rewind audit verify` or the self-check job; while a big log is first being
    caught up the fragment asks again by itself.
    """
    with _checking:
        verdict = store.check_recent()
        full = store.read_full_check()
    return render_template(
        "audit/_chain_status.html",
        verdict=verdict,
        checked_at=time.time(),
        full=full,
        can_run_selfcheck=current_user.can(Role.OPERATOR),
        again=request.args.get("again") == "1",
    )


@bp.get("/export.jsonl")
@requires(Role.VIEWER)
def export_jsonl():
    return _download(_export_filter(), "jsonl", "application/x-ndjson")


@bp.get("/export.csv")
@requires(Role.VIEWER)
def export_csv():
    return _download(_export_filter(), "csv", "text/csv")


def _download(filters: AuditFilter, form: str, mimetype: str) -> Response:
    return Response(
        stream_with_context(export.chunks(filters, form)),
        mimetype=mimetype,
        headers={"Content-Disposition": f"attachment; filename=rewind-audit.{form}"},
    )
