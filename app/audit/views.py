"""The audit log pages: browse, filter, export, and the chain's status."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

from flask import Blueprint, Response, abort, render_template, request, stream_with_context
from flask_login import current_user
from sqlalchemy import select

from app.audit import chain, store
from app.audit.filters import AuditFilter, FilterError
from app.audit.models import AuditEvent
from app.auth.guards import requires
from app.auth.roles import Role
from app.pagination import iter_keyset, keyset_page, parse_cursor
from app.statuses import Outcome

bp = Blueprint("audit", __name__, url_prefix="/audit")

PAGE_SIZE = 50
EXPORT_COLUMNS = (*chain.FIELDS, "hash")


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
        return render_template(
            "audit/index.html", page=None, filters=exc.typed, problems=exc.problems, outcomes=list(Outcome), before=None
        ), 400
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


def _csv_safe(value):
    """Spreadsheets run cells that start like a formula; actor names come from strangers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _export_rows(filters: AuditFilter):
    stmt = filters.apply(select(AuditEvent))
    for event in iter_keyset(stmt, AuditEvent.id):
        row = {name: getattr(event, name) for name in EXPORT_COLUMNS}
        row["ts"] = chain.format_ts(event.ts)
        row["details"] = json.loads(event.details)
        yield row


@bp.get("/export.jsonl")
@requires(Role.VIEWER)
def export_jsonl():
    filters = _export_filter()

    def lines():
        for row in _export_rows(filters):
            yield json.dumps(row, ensure_ascii=False) + "\n"

    return Response(
        stream_with_context(lines()),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": "attachment; filename=rewind-audit.jsonl"},
    )


@bp.get("/export.csv")
@requires(Role.VIEWER)
def export_csv():
    filters = _export_filter()

    def lines():
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for row in _export_rows(filters):
            row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
            writer.writerow({k: _csv_safe(v) for k, v in row.items()})
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(
        stream_with_context(lines()),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=rewind-audit.csv"},
    )
