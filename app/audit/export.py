"""The audit log as a file, CSV or JSON lines: the page's export links and `flask rewind audit export` both write it.

Rows are read in keyset batches and written as they come, so a million-row export holds one batch in memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from sqlalchemy import select

from app.audit import chain
from app.audit.filters import AuditFilter
from app.audit.models import AuditEvent
from app.pagination import iter_keyset

COLUMNS = (*chain.FIELDS, "hash")
FORMATS = ("csv", "jsonl")
FLUSH_BYTES = 64_000


def _csv_safe(value):
    """Spreadsheets run cells that start like a formula; actor names come from strangers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def rows(filters: AuditFilter) -> Iterator[dict]:
    """Each matching row, newest first as on the page, as the chain hashed it (its details as JSON, not text)."""
    for event in iter_keyset(filters.apply(select(AuditEvent)), AuditEvent.id):
        row = {name: getattr(event, name) for name in COLUMNS}
        row["ts"] = chain.format_ts(event.ts)
        row["details"] = json.loads(event.details)
        yield row


def jsonl(filters: AuditFilter) -> Iterator[str]:
    """One JSON object per line, exactly as stored."""
    for row in rows(filters):
        yield json.dumps(row, ensure_ascii=False) + "\n"


def csv_text(filters: AuditFilter) -> Iterator[str]:
    """A header, then one line per row; cells that would start a spreadsheet formula get a leading '."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows(filters):
        row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
        writer.writerow({k: _csv_safe(v) for k, v in row.items()})
        if buffer.tell() > FLUSH_BYTES:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def chunks(filters: AuditFilter, form: str) -> Iterator[str]:
    """The export in `form` (one of FORMATS)."""
    if form not in FORMATS:
        raise ValueError(f"{form!r} is not an export format; choose one of {', '.join(FORMATS)}")
    return csv_text(filters) if form == "csv" else jsonl(filters)
