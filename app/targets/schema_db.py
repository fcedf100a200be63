"""Read-only reads of a target database for the schema area: its alembic_version rows, and what tables hold.

A read-only connection (SQLite opened with mode=ro; PostgreSQL in a
read-only transaction), because this is asked before anything changes and
must never be the thing that changes it. This is how Rewind knows where the
schema is after `flask db …`: from the table, never from the command's exit
status or its words.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from app.targets.errors import TargetError

CONNECT_TIMEOUT_S = 5
VERSION_TABLE = "alembic_version"


class DatabaseReadError(TargetError):
    """The target database could not be read."""


def _pg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def _where(url: str) -> str:
    """The database named without its password, for messages."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    info = psycopg.conninfo.conninfo_to_dict(_pg_url(url))
    return f"postgresql {info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


@contextmanager
def _cursor(url: str) -> Iterator[tuple[str, object]]:
    """(dialect, cursor) on a read-only connection."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise DatabaseReadError(f"the database file {path} does not exist", fix="check database.url")
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise DatabaseReadError(f"cannot open {path}: {exc}") from None
        try:
            yield "sqlite", conn.cursor()
        except sqlite3.Error as exc:
            raise DatabaseReadError(f"reading {path} failed: {exc}") from None
        finally:
            conn.close()
        return
    try:
        conn = psycopg.connect(_pg_url(url), connect_timeout=CONNECT_TIMEOUT_S, autocommit=False)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseReadError(f"cannot connect to {_where(url)}: {first}", fix="check database.url") from None
    try:
        conn.read_only = True
        with conn.cursor() as cur:
            yield "postgresql", cur
        conn.rollback()
    except psycopg.Error as exc:
        raise DatabaseReadError(f"reading {_where(url)} failed: {str(exc).strip()}") from None
    finally:
        conn.close()


def _has_table(dialect: str, cur, table: str) -> bool:
    if dialect == "sqlite":
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    else:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(table).as_string(cur),))
        return bool(cur.fetchone()[0])
    return cur.fetchone() is not None


def _has_column(dialect: str, cur, table: str, column: str) -> bool:
    if dialect == "sqlite":
        cur.execute("SELECT 1 FROM pragma_table_info(?) WHERE name = ?", (table, column))
    else:
        cur.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s AND column_name = %s",
            (table, column),
        )
    return cur.fetchone() is not None


def _quote(dialect: str, cur, name: str) -> str:
    if dialect == "sqlite":
        return '"' + name.replace('"', '""') + '"'
    return sql.Identifier(name).as_string(cur)


def current_revisions(url: str) -> set[str]:
    """The rows of alembic_version: empty when the table is missing or empty (nothing applied yet)."""
    with _cursor(url) as (dialect, cur):
        if not _has_table(dialect, cur, VERSION_TABLE):
            return set()
        cur.execute(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
        return {row[0] for row in cur.fetchall()}


def count(url: str, table: str, column: str | None = None) -> int | None:
    """Rows of a table, or its non-null values of a column; None when the table or column does not exist."""
    with _cursor(url) as (dialect, cur):
        if not _has_table(dialect, cur, table):
            return None
        if column is not None and not _has_column(dialect, cur, table, column):
            return None
        what = f"count({_quote(dialect, cur, column)})" if column else "count(*)"
        cur.execute(f"SELECT {what} FROM {_quote(dialect, cur, table)}")  # noqa: S608 - quoted identifiers
        return int(cur.fetchone()[0])


def unversioned_tables(url: str) -> list[str]:
    """The database's tables when it has no alembic_version table (none when it has one, or holds nothing).

    Such a database was made without Alembic (`create_all`, a restored dump, another app's database named by
    mistake): "no revision applied" would send `flask db upgrade` to create tables that are already there.
    """
    with _cursor(url) as (dialect, cur):
        if _has_table(dialect, cur, VERSION_TABLE):
            return []
        if dialect == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name")
        else:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        return [row[0] for row in cur.fetchall()]


def schema_objects(url: str) -> set[str]:
    """The tables, columns, indexes and constraints of the database's own schema, each named in words
    ("index ix_user_name on user"). Compared before and after a migration whose alembic_version did not move,
    they tell one that committed part of its work before it failed (an autocommit block, DDL outside a
    transaction) from one that changed nothing."""
    with _cursor(url) as (dialect, cur):
        if dialect == "sqlite":
            cur.execute("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite%'")
            rows = cur.fetchall()
            found = {
                f"{kind} {name}" if kind in ("table", "view") else f"{kind} {name} on {table}"
                for kind, name, table in rows
            }
            for table in sorted(name for kind, name, _ in rows if kind == "table"):
                cur.execute("SELECT name FROM pragma_table_info(?)", (table,))
                found |= {f"column {table}.{column}" for (column,) in cur.fetchall()}
            return found
        cur.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        )
        found = {f"column {table}.{column}" for table, column in cur.fetchall()}
        # A view's columns are in information_schema.columns too: a view is said as one, never as table columns.
        cur.execute("SELECT viewname FROM pg_views WHERE schemaname = current_schema()")
        views = {view for (view,) in cur.fetchall()}
        cur.execute("SELECT matviewname FROM pg_matviews WHERE schemaname = current_schema()")
        views |= {view for (view,) in cur.fetchall()}
        found = {name for name in found if name.removeprefix("column ").rsplit(".", 1)[0] not in views}
        found |= {f"view {view}" for view in views}
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        found |= {f"table {table}" for (table,) in cur.fetchall()}
        cur.execute("SELECT indexname, tablename FROM pg_indexes WHERE schemaname = current_schema()")
        found |= {f"index {index} on {table}" for index, table in cur.fetchall()}
        cur.execute(
            "SELECT constraint_name, table_name FROM information_schema.table_constraints "
            "WHERE table_schema = current_schema() AND constraint_type <> 'CHECK'"  # NOT NULL shows as CHECK: noise
        )
        found |= {f"constraint {name} on {table}" for name, table in cur.fetchall()}
        return found
