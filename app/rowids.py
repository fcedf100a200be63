"""Row ids typed by a person: in a URL, a form, a query string or the CLI.

Rewind's keys are `integer` columns: 64-bit in SQLite but 32-bit in PostgreSQL.
A bigger number names no row, and must be answered so ("no such job") rather
than handed to the driver, which raises OverflowError past 64 bits and
PostgreSQL "integer out of range" past 32 (a 500 on a page, a traceback in a
shell).
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

# The widest integer key both ops databases store: PostgreSQL's `integer` (SQLite's INTEGER goes to 2**63 - 1).
ROW_ID_MAX = 2**31 - 1


def row_id(text: str | None) -> int | None:
    """The id `text` names, or None when it cannot name a row (not digits, zero, or past ROW_ID_MAX)."""
    text = (text or "").strip()
    if not text.isdigit() or not text.isascii():
        return None
    number = int(text)
    return number if 0 < number <= ROW_ID_MAX else None


class RowIdConverter(IntegerConverter):
    """`<id:job_id>`: a URL whose number no row can have is a 404 from the router, not a 500 from the driver."""

    def __init__(self, map, *args, **kwargs) -> None:
        super().__init__(map, min=1, max=ROW_ID_MAX)
