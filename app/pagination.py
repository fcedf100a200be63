"""Keyset pagination: the one way Rewind pages through big tables.

OFFSET grows slower with every page; a "before this id" cursor costs the same
on page one and page ten thousand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from sqlalchemy import Select
from werkzeug.exceptions import BadRequest

from app.extensions import db
from app.rowids import ROW_ID_MAX


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: Any  # pass back as `before` for the next (older) page; None on the last page


def parse_cursor(raw: str | None) -> int | None:
    """The `before` cursor from a query string; a malformed one is a 400 with the reason."""
    if raw in (None, ""):
        return None
    if not raw.isdigit() or not raw.isascii():
        raise BadRequest(f"the page cursor must be a row number, got {raw!r}")
    return min(int(raw), ROW_ID_MAX)  # "before" a number past any row is before every row


def keyset_page(stmt: Select, key, *, before: int | None, limit: int) -> Page:
    """Newest-first page of `stmt` ordered by the unique integer column `key`. A `before` past any row (typed at a
    command line) is before every row, never a number the database cannot compare."""
    if before is not None:
        stmt = stmt.where(key < min(before, ROW_ID_MAX))
    rows = db.session.scalars(stmt.order_by(key.desc()).limit(limit + 1)).all()
    return _cut(rows, attrgetter(key.key), limit)


def fetched_page(fetch: Callable[[int], Sequence[Any]], key: Callable[[Any], Any], *, limit: int) -> Page:
    """Newest-first page from a source that pages itself from its own cursor on (git log before a commit):
    `fetch(n)` returns up to n items; one more than `limit` is asked for, only to know that a next page exists."""
    return _cut(fetch(limit + 1), key, limit)


def iter_keyset(stmt: Select, key, *, batch: int = 1000) -> Iterator[Any]:
    """Every row of `stmt`, newest first, in batches: exports stream without loading the table."""
    before = None
    while True:
        page = keyset_page(stmt, key, before=before, limit=batch)
        yield from page.items
        if page.next_cursor is None:
            return
        before = page.next_cursor


def keyset_slice(
    items: Sequence[Any], key: Callable[[Any], Any], *, before: Any, limit: int, ascending: bool = False
) -> Page:
    """Newest-first page of `items`, already sorted by the unique `key` descending: keyset_page for what is not
    a table (the files of a folder). A cursor whose item is gone meanwhile still finds its place.

    `ascending`: `items` are sorted by `key` ascending (flags by name, A to Z), and a page holds those after the
    cursor, which is still the last key of the page before (`next_cursor`)."""
    if before is None:
        rest = list(items)
    else:
        rest = [item for item in items if (key(item) > before if ascending else key(item) < before)]
    return _cut(rest, key, limit)


def _cut(rows: Sequence[Any], key: Callable[[Any], Any], limit: int) -> Page:
    """The first `limit` of `rows`, with the cursor of the next page when there are more."""
    more = len(rows) > limit
    items = list(rows[:limit])
    return Page(items, key(items[-1]) if more and items else None)
