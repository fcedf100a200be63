"""Run a migration and believe only alembic_version: the exit status and the words of `flask db` are hints.

An alembic.ini whose logging hides errors makes `flask db` exit 1 with no
message at all; a migration can also print an error and still leave the
database where it was asked to be. Either way, what the table says after
the command decides, and a failure says plainly where the database is.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.targets import flask_db
from app.targets.command import Sink, Tee, shown
from app.targets.errors import TargetError
from app.targets.schema_db import DatabaseReadError, current_revisions, schema_objects
from app.targets.target import Target

SAID_LINES = 200  # enough of a traceback to hold its error line above a long SQL statement


class MigrationFailed(TargetError):
    """The database is not at the revision(s) asked for after `flask db`."""

    def __init__(self, message: str, *, fix: str, rows: set[str]) -> None:
        super().__init__(message, fix=fix)
        self.rows = rows


# The line of a traceback or a log that names the error ("sqlalchemy.exc.OperationalError: …", "ERROR [x] …"),
# rather than what SQLAlchemy prints after it: the statement, its parameters, "(Background on this error at: …)".
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b.*?:|(?:ERROR|FATAL|CRITICAL)\b)")
_NOISE = re.compile(r"^(?:\(Background on this error at:|\[SQL:|\[parameters:|\]$)")


def telling_line(lines: list[str]) -> str:
    """The line that says what went wrong: the last naming an error, else the last that is not SQLAlchemy's aside."""
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line
    for line in reversed(lines):
        if not _NOISE.match(line):
            return line
    return ""


def _rows(rows: set[str]) -> str:
    return ", ".join(sorted(rows)) or "no revision (alembic_version empty or missing)"


def apply(
    target: Target, verb: str, revision: str, expected: set[str], sink: Sink | None, *, directory: Path | None = None
) -> set[str]:
    """`flask db VERB REVISION`, then alembic_version must equal `expected`; returns the rows read."""
    url = target.config.database.url
    before = current_revisions(url)
    shape = _shape(url)
    tee = Tee(sink, keep=SAID_LINES)
    result = flask_db.run(target, verb, revision, tee, directory=directory)
    rows = current_revisions(url)
    if rows == expected:
        if not result.ok and sink is not None:
            sink.line("err", f"flask db {verb} {result.ended}, but alembic_version is as asked")
        return rows
    said = telling_line(tee.tail("err")) or telling_line(tee.tail("out"))
    words = f"it said: {said}" if said else "it printed nothing (the application's alembic.ini logging may hide errors)"
    moved = "did not move" if rows == before else f"moved from {_rows(before)}"
    # alembic_version is rolled back with a failed migration's transaction, but what a migration committed on its
    # own (an autocommit block, DDL its database cannot roll back) stays: "did not move" must not read as untouched.
    changed = _changed(shape, _shape(url)) if rows == before else ""
    if changed:
        moved += (
            f", yet the schema changed: {changed} — the migration committed part of its work before it failed, "
            f"so the database is between {_rows(before)} and {_rows(expected)}"
        )
    raise MigrationFailed(
        f"flask db {verb} {revision} {result.ended} and {words}; "
        f"alembic_version says {_rows(rows)}, not {_rows(expected)} as asked (it {moved})",
        fix=f"run `{shown(result.argv)}` by hand in {target.config.repo.path}, in the application's environment "
        "(its env file, FLASK_APP), to see its error"
        + (
            "; the database is part-way: check it before anything else"
            if rows not in (before, expected) or changed
            else ""
        ),
        rows=rows,
    )


CHANGES_SAID = 5


def _table_of(name: str) -> str | None:
    """The table a schema object belongs to ("column user.token", "index ix on user"); None for a table itself."""
    if name.startswith("column "):
        return name.removeprefix("column ").rsplit(".", 1)[0]
    if " on " in name:
        return name.rsplit(" on ", 1)[1]
    return None


def _shape(url: str) -> set[str] | None:
    """The schema's objects, or None when they cannot be read (then nothing is said about them)."""
    try:
        return schema_objects(url)
    except DatabaseReadError:
        return None


def _changed(before: set[str] | None, after: set[str] | None) -> str:
    """What a failed migration changed in the schema, in words; empty when nothing (or when it cannot be told)."""
    if before is None or after is None or before == after:
        return ""
    tables = {name.split(" ", 1)[1] for name in before ^ after if name.startswith(("table ", "view "))}
    # A table (or view) added or gone is said once, not again through each of its columns, indexes and constraints.
    before, after = ({name for name in side if _table_of(name) not in tables} for side in (before, after))
    said = [f"{name} is gone" for name in sorted(before - after)] + [
        f"{name} was added" for name in sorted(after - before)
    ]
    more = f" and {len(said) - CHANGES_SAID} more" if len(said) > CHANGES_SAID else ""
    return ", ".join(said[:CHANGES_SAID]) + more
