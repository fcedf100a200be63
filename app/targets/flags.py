"""The application's own feature-flags table, read and written in its own database (SQLite or PostgreSQL).

Rewind never creates or alters this table: it checks the configured columns
are there and says which one is missing otherwise. Every write is one short
transaction that locks the rows first (PostgreSQL `SELECT … FOR UPDATE`,
SQLite `BEGIN IMMEDIATE`), compares them with what the person saw, and
either changes everything asked or nothing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from app.targets.config import FlagColumns
from app.targets.errors import TargetError

LOCK_TIMEOUT_S = 5  # a write waits this long for another writer's row lock, then gives up
# No statement on a flags table runs longer, and a server that stops answering is given up on after as long:
# a checkpoint reads the flags while holding the audit log's head (every audited write in Rewind waits for it),
# and a toggle is meant to be instant. The biggest writes measured (1,000 flags restored) take under a second.
STATEMENT_TIMEOUT_S = 10
SQLITE_IN_LIMIT = 500  # more names than this: read the whole (already locked) table instead of an IN list


class FlagError(TargetError):
    """Root of the flags adapter's errors."""


class FlagTableError(FlagError):
    """The table is unreachable, missing, or not of the configured shape."""


class TableLocked(FlagTableError):
    """Another transaction of the application's database holds the table (a migration, an open psql session)."""

    def __init__(self, table: str, waited_s: float) -> None:
        super().__init__(
            f"the flags table {table} is locked by another transaction of the application's database; "
            f"Rewind waited {waited_s:g} s and gave up, so nothing was read or written",
            fix="try again when that transaction ends (a running migration, a session left open in a transaction)",
        )
        self.table, self.waited_s = table, waited_s


class TableReadOnly(FlagTableError):
    """The database refuses writes to the flags table: a view, a role without UPDATE, a read-only database."""

    def __init__(self, table: str, said: str) -> None:
        super().__init__(
            f"the flags table {table} cannot be written: the database said “{said}”; nothing was changed",
            fix=f"Rewind writes flags as the user in database.url: grant it UPDATE (INSERT and DELETE to add or "
            f"remove flags) on {table}, and point database.flags_table at the table itself, not at a view "
            "the database cannot write through",
        )
        self.table, self.said = table, said


# What the databases answer when a write is refused for what the table is, not for what was written.
_SQLITE_READ_ONLY = ("because it is a view", "readonly database", "read-only database")
_PG_VIEW_WORDS = ("cannot update view", "cannot insert into view", "cannot delete from view", "is not allowed with")


def _is_read_only(exc: BaseException) -> bool:
    """A write the database refuses whatever the values: Rewind may not (or cannot) write this table."""
    if isinstance(exc, sqlite3.OperationalError):
        return any(words in str(exc) for words in _SQLITE_READ_ONLY)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege | psycopg.errors.ReadOnlySqlTransaction):
        return True
    if isinstance(exc, psycopg.errors.ObjectNotInPrerequisiteState | psycopg.errors.FeatureNotSupported):
        return any(words in str(exc) for words in _PG_VIEW_WORDS)
    return False


def _is_lock_wait(exc: BaseException) -> bool:
    """A statement given up on because another transaction held what it needed, not a problem of the table."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


class UnknownFlag(FlagError):
    def __init__(self, name: str, table: str) -> None:
        super().__init__(f"there is no flag {name!r} in {table}", fix="check the name on the Flags page")
        self.name = name


class FlagExists(FlagError):
    def __init__(self, name: str, table: str) -> None:
        super().__init__(f"a flag named {name!r} already exists in {table}", fix="toggle it instead")
        self.name = name


class StaleFlag(FlagError):
    """The flag changed between the moment a person saw it and the write: nothing was written."""

    def __init__(self, flag: Flag, seen: bool) -> None:
        now = "on" if flag.enabled else "off"
        super().__init__(
            f"{flag.name} is {now} now, not {'on' if seen else 'off'} as you saw it: someone or something changed "
            "it meanwhile, so nothing was written",
            fix="look at its current state and toggle again if it still needs changing",
        )
        self.flag, self.seen = flag, seen


class ChangedMeanwhile(FlagError):
    """Several flags differ from the states a plan was made against: nothing was written."""

    def __init__(self, flags: list[Flag]) -> None:
        listed = ", ".join(f"{f.name} (now {'on' if f.enabled else 'off'})" for f in flags[:10])
        more = f" and {len(flags) - 10} more" if len(flags) > 10 else ""
        super().__init__(
            f"{len(flags)} flag(s) changed since the plan was shown: {listed}{more}; nothing was written",
            fix="review the plan again",
        )
        self.flags = flags


class TableMoved(FlagError):
    """The table is no longer as a plan saw it as a whole (some flag's state or stamp, or a flag come or gone)."""

    def __init__(self, table: str) -> None:
        super().__init__(
            f"{table} changed since the plan was shown, so nothing was written", fix="review the plan again"
        )


class VanishedFlags(FlagError):
    """Flags named in a batch are no longer in the table: the batch wrote nothing."""

    def __init__(self, names: Iterable[str], table: str) -> None:
        self.names = sorted(names)
        self.table = table
        super().__init__(
            f"no longer in {table}: {', '.join(self.names)}; nothing was changed",
            fix="reload the flags and choose again",
        )


class FlagValueError(FlagError):
    """The database refused a value (a column that cannot hold it, a constraint, a trigger)."""


class UnreadableFlag(FlagValueError):
    """A row whose enabled column holds neither on nor off (NULL, 'maybe'): Rewind cannot say its state."""

    def __init__(self, name: str, value: Any) -> None:
        held = "NULL" if value is None else repr(value)
        super().__init__(
            f"flag {name!r} holds {held} in its enabled column, which is neither on nor off",
            fix=f"set it to on or off in the application's database (UPDATE … WHERE name = {name!r})",
        )
        self.name, self.value = name, value


@dataclass(frozen=True)
class Flag:
    name: str
    enabled: bool
    description: str = ""
    updated_at: datetime | None = None  # naive UTC
    tag: str | None = None


@dataclass(frozen=True)
class Change:
    """One flag before and after a write; None for a flag that did not exist on that side."""

    name: str
    old: bool | None
    new: bool | None
    after: Flag | None = field(default=None, compare=False)  # the row as the write left it, when known
    before: Flag | None = field(default=None, compare=False)  # the row as the write found it, when it existed

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def as_dict(self) -> dict[str, Any]:
        return {"flag": self.name, "old": self.old, "new": self.new}


def fingerprint(flags: Iterable[Flag]) -> str:
    """Every flag's name, state and stamp in one short digest: what a plan was made against, checked at its write."""
    digest = hashlib.sha256()
    for flag in sorted(flags, key=lambda f: f.name):
        stamp = flag.updated_at.isoformat(timespec="microseconds") if flag.updated_at else ""
        digest.update(f"{len(flag.name)}:{flag.name}:{int(flag.enabled)}:{stamp}\n".encode())
    return digest.hexdigest()


def quote(identifier: str) -> str:
    """A quoted SQL identifier; a dotted name (schema.table) is quoted part by part."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


# PostgreSQL's integer and numeric types (int8, int2, int4, numeric): an enabled column of one takes 1 or 0.
_INTEGER_OIDS = frozenset({20, 21, 23, 1700})
_TRUE = {"1", "t", "true", "on", "yes", "y"}
_FALSE = {"0", "f", "false", "off", "no", "n", ""}


# The words an application may store in a text enabled column, each with its opposite: Rewind writes back the
# spelling the column already holds, so an application that compares with 'true' never reads Rewind's '1'.
_PAIRS = (("true", "false"), ("t", "f"), ("1", "0"), ("on", "off"), ("yes", "no"), ("y", "n"))
_SPELLINGS = {word: pair for pair in _PAIRS for word in pair}


def _spelling(value: Any) -> tuple[str, str] | None:
    """The (on, off) words of a stored text value, in its case ('TRUE' -> ('TRUE', 'FALSE')); None if not text."""
    if not isinstance(value, str):
        return None
    word = value.strip()
    pair = _SPELLINGS.get(word.lower())
    if pair is None:
        return None
    if word.isupper():
        return pair[0].upper(), pair[1].upper()
    if word[:1].isupper():
        return pair[0].capitalize(), pair[1].capitalize()
    return pair


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise UnreadableFlag(name, value)


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, str) and value:
        try:
            return _as_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def now() -> datetime:
    """The updated_at Rewind writes: naive UTC, microseconds kept so a later outside change is told apart."""
    return datetime.now(UTC).replace(tzinfo=None)


class _IdleConnections:
    """A few idle PostgreSQL connections per database, so a toggle does not start a new server backend each time.

    A connection waits at most IDLE_S seconds (so none lingers to block a database rename during a restore; a
    restore can also call `close(url)` first). It is not pinged before use: a write that finds its connection
    dead at BEGIN, before anything is sent, retries once on a fresh one (see FlagTable._transaction).
    Connections are never shared across a fork: a child process (a gunicorn worker) starts with none, and
    leaves its parent's alone (psycopg does not close a connection in a process that did not open it).
    """

    SIZE = 8
    IDLE_S = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[float, Any]]] = {}
        self._pid = os.getpid()

    def _mine(self) -> dict[str, list[tuple[float, Any]]]:
        """The idle connections of this process; after a fork, the parent's are forgotten, not closed."""
        if self._pid != os.getpid():
            self._idle, self._pid = {}, os.getpid()
        return self._idle

    def take(self, url: str) -> Any | None:
        while True:
            with self._lock:
                stack = self._mine().get(url)
                if not stack:
                    return None
                since, conn = stack.pop()
            if time.monotonic() - since < self.IDLE_S and not conn.closed:
                return conn
            conn.close()

    def give(self, url: str, conn: Any) -> None:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            stack = self._mine().setdefault(url, [])
            now = time.monotonic()
            expired = [c for since, c in stack if now - since >= self.IDLE_S]
            stack[:] = [(since, c) for since, c in stack if now - since < self.IDLE_S]
            keep = len(stack) < self.SIZE
            if keep:
                stack.append((now, conn))
        for old in expired:
            old.close()
        if not keep:
            conn.close()

    def close(self, url: str | None = None) -> None:
        """Close the idle connections to one database (or all): before renaming or dropping it."""
        with self._lock:
            idle = self._mine()
            urls = [url] if url is not None else list(idle)
            closing = [conn for u in urls for _, conn in idle.pop(u, [])]
        for conn in closing:
            conn.close()


_idle = _IdleConnections()
close_idle_connections = _idle.close


class FlagTable:
    """One application's flags table; every call takes a short-lived connection of its own.

    set, kill, apply, create and delete take `before_commit`, called with what was written while the rows are
    still locked and the write not yet committed: the caller records its audit row there, so two writes of one flag are
    audited in the order they were made (a second writer waits on the row lock until the first one's audit
    row holds its place in the chain), and an audit row that cannot be written there leaves the table untouched
    (a caller that only takes the row's place there and writes it after the commit must handle its failure then).
    """

    def __init__(self, url: str, table: str, columns: FlagColumns | None = None) -> None:
        self.url, self.table, self.columns = url, table, columns or FlagColumns()
        self.sqlite = url.startswith("sqlite:///")
        self._enabled_is_integer = False  # learnt from each write's locking read: see _note_types
        self._spellings: dict[str, tuple[str, str]] = {}  # per flag, the words its row holds: see _note_types
        self._table_spelling: tuple[str, str] | None = None  # for a new row: the words most rows hold

    # -- connections ------------------------------------------------------------------------------------------

    def _open(self) -> Any:
        if self.sqlite:
            return sqlite3.connect(self.url[len("sqlite:///") :], timeout=LOCK_TIMEOUT_S, isolation_level=None)
        return psycopg.connect(
            self.url,
            connect_timeout=LOCK_TIMEOUT_S,
            autocommit=True,
            options=(
                f"-c TimeZone=UTC -c lock_timeout={LOCK_TIMEOUT_S * 1000} "
                f"-c statement_timeout={int(STATEMENT_TIMEOUT_S * 1000)}"
            ),
            tcp_user_timeout=int(STATEMENT_TIMEOUT_S * 1000),
        )

    def _reused(self, first: str) -> Any | None:
        """An idle connection with `first` sent on it, or None; one found dead is closed and forgotten."""
        conn = None if self.sqlite else _idle.take(self.url)
        if conn is not None:
            try:
                conn.execute(first)
            except psycopg.OperationalError:
                conn.close()
                return None
        return conn

    @contextmanager
    def _connect(self, first: str | None = None) -> Iterator[tuple[Any, bool]]:
        """A connection for one call and whether `first` was sent on it; PostgreSQL ones go back to an idle set.

        `first` changes nothing (BEGIN, or a ping when None), so a reused connection found dead there is simply
        replaced by a fresh one: no extra round trip for a ping before every write. On a fresh connection the
        caller sends `first` itself.
        """
        conn = self._reused(first or "SELECT 1")
        sent = conn is not None and first is not None
        if conn is None:
            try:
                conn = self._open()
            except (sqlite3.Error, psycopg.Error) as exc:
                raise FlagTableError(
                    f"cannot open the flags database: {_first_line(exc)}", fix="check database.url and that it is up"
                ) from None
        try:
            yield conn, sent
        except BaseException as exc:
            # A refusal (a stale toggle, an unknown flag) was rolled back: the connection is as good as before,
            # and a fresh one costs the server a new backend. give() closes one left in a transaction or broken.
            if isinstance(exc, FlagError) and not self.sqlite:
                _idle.give(self.url, conn)
            else:
                conn.close()
            raise
        if self.sqlite:
            conn.close()
        else:
            _idle.give(self.url, conn)

    @contextmanager
    def _reading(self, wait_s: float | None = None) -> Iterator[Any]:
        """A connection to read on; with `wait_s`, a lock held by another transaction is waited on that long only.

        The shorter wait is for this read alone (SET LOCAL in a transaction of its own on PostgreSQL, the
        connection's busy timeout on SQLite): the connection goes back to the idle set with the usual wait.
        """
        waited = LOCK_TIMEOUT_S if wait_s is None else wait_s
        began = False
        with self._connect() as (conn, _):
            try:
                if wait_s is not None:
                    if self.sqlite:
                        conn.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
                    else:
                        conn.execute("BEGIN")
                        began = True
                        conn.execute(f"SET LOCAL lock_timeout = {max(1, int(wait_s * 1000))}")
                yield conn
                if began:
                    conn.execute("COMMIT")
            except BaseException as exc:
                if began:
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, TableLocked) and exc.waited_s != waited:
                    raise TableLocked(self.table, waited) from None
                if not isinstance(exc, sqlite3.Error | psycopg.Error):
                    raise
                if _is_lock_wait(exc):
                    raise TableLocked(self.table, waited) from None
                raise FlagTableError(
                    f"reading {self.table} failed: {_first_line(exc)}",
                    fix="check that the flags database answers; nothing was changed",
                ) from None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One write transaction; any database error rolls it all back and becomes a FlagError.

        On PostgreSQL the table's shape is not checked first (a round trip on every write): a statement that
        fails because the table or a column is missing is followed by the check, which names what is missing.
        SQLite is checked first, because it reads a double-quoted name that is no column as a string.
        """
        begin = "BEGIN IMMEDIATE" if self.sqlite else "BEGIN"
        with self._connect(begin) as (conn, begun):
            try:
                if not begun:
                    conn.execute(begin)
                if self.sqlite:
                    self._check_shape(conn)
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error, psycopg.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError | psycopg.IntegrityError | psycopg.DataError):
                    raise FlagValueError(
                        f"the database refused the change, so nothing was written: {_first_line(exc)}",
                        fix="the flags table's constraints or triggers do not allow this value",
                    ) from None
                if _is_lock_wait(exc):  # the table is there: checking its shape would only wait as long again
                    raise TableLocked(self.table, LOCK_TIMEOUT_S) from None
                if _is_read_only(exc):
                    raise TableReadOnly(self.table, _first_line(exc)) from None
                if isinstance(exc, sqlite3.OperationalError | psycopg.ProgrammingError):
                    self._check_shape(conn)  # raises FlagTableError naming the missing table or column
                if isinstance(exc, sqlite3.Error | psycopg.Error):
                    raise FlagTableError(
                        f"writing {self.table} failed, so nothing was written: {_first_line(exc)}",
                        fix="try again; if it keeps failing, check the flags table",
                    ) from None
                raise

    def _sql(self, text: str) -> str:
        return text.replace("%s", "?") if self.sqlite else text

    def _columns(self) -> str:
        c = self.columns
        names = [c.name, c.enabled, c.description, c.updated_at] + ([c.tag] if c.tag else [])
        return ", ".join(quote(x) for x in names)

    def _select(self, where: str = "", lock: bool = False, one: bool = False) -> str:
        sql = f"SELECT {self._columns()} FROM {quote(self.table)}"  # noqa: S608 quoted identifiers
        sql += f" {where}" if where else ""
        if not lock or self.sqlite:  # SQLite's BEGIN IMMEDIATE already holds the whole database
            return sql
        # Several rows are locked in one order (by name) whatever order they lie in, so two writes of several rows
        # wait for each other instead of deadlocking. One row (a toggle) has no order to keep.
        return sql + ("" if one else f" ORDER BY {quote(self.columns.name)}") + " FOR UPDATE"

    def _row(self, row: tuple) -> Flag:
        name = str(row[0])
        return Flag(
            name=name,
            enabled=_as_bool(row[1], name),
            description=row[2] or "",
            updated_at=_as_time(row[3]),
            tag=row[4] if self.columns.tag else None,
        )

    def _check_shape(self, conn: Any) -> None:
        try:
            cur = conn.execute(f"SELECT * FROM {quote(self.table)} LIMIT 0")  # noqa: S608 quoted identifier
            present = {d[0] for d in cur.description or ()}
        except (sqlite3.Error, psycopg.Error) as exc:
            if _is_lock_wait(exc):
                raise TableLocked(self.table, LOCK_TIMEOUT_S) from None
            raise FlagTableError(
                f"the flags table {self.table} cannot be read: {_first_line(exc)}",
                fix="create it in the application's own migrations (Rewind never creates it), "
                "or fix database.flags_table",
            ) from None
        c = self.columns
        for role in ("name", "enabled", "description", "updated_at", "tag"):
            column = getattr(c, role)
            if column and column not in present:
                raise FlagTableError(
                    f"the flags table {self.table} has no column {column!r} (its {role} column); "
                    f"it has: {', '.join(sorted(present))}",
                    fix=f"set database.flags_columns.{role} to the right column name",
                )

    # -- reading ----------------------------------------------------------------------------------------------

    def check(self) -> None:
        """FlagTableError unless the table is reachable and has every configured column."""
        with self._reading() as conn:
            self._check_shape(conn)

    def list(self, *, wait_s: float | None = None) -> list[Flag]:
        """Every flag; UnreadableFlag (the first by name) if any row's state is neither on nor off.

        `wait_s`: how long to wait for a lock another transaction holds (default LOCK_TIMEOUT_S), then TableLocked.
        """
        flags, unreadable = self.survey(wait_s=wait_s)
        if unreadable:
            raise unreadable[0]
        return flags

    def survey(self, *, wait_s: float | None = None) -> tuple[list[Flag], list[UnreadableFlag]]:
        """Every flag whose state can be read, and every row whose state cannot, by name.

        For a person's list: one row holding NULL must not hide every other flag (and their kill switch).
        Checkpoints and restores use list(), which refuses the whole table instead: a record missing a flag
        would read as that flag not existing.
        """
        with self._reading(wait_s) as conn:
            self._check_shape(conn)
            rows = conn.execute(self._select(f"ORDER BY {quote(self.columns.name)}")).fetchall()
        flags, unreadable = [], []
        for row in rows:
            try:
                flags.append(self._row(row))
            except UnreadableFlag as exc:
                unreadable.append(exc)
        return flags, unreadable

    def get(self, name: str) -> Flag:
        with self._reading() as conn:
            self._check_shape(conn)
            row = conn.execute(self._sql(self._select(f"WHERE {quote(self.columns.name)} = %s")), (name,)).fetchone()
        if row is None:
            raise UnknownFlag(name, self.table)
        return self._row(row)

    def states(self) -> dict[str, bool]:
        return {flag.name: flag.enabled for flag in self.list()}

    # -- writing ----------------------------------------------------------------------------------------------

    def _lock(self, conn: Any, names: Iterable[str] | None = None, tag: str | None = None) -> dict[str, Flag]:
        """The rows asked for, locked until the transaction ends."""
        c = self.columns
        if tag is not None:
            sql, args = self._select(f"WHERE {quote(c.tag)} = %s", lock=True), (tag,)
        elif names is None:
            sql, args = self._select(lock=True), ()
        elif not self.sqlite and len(names := list(names)) == 1:
            sql, args = self._select(f"WHERE {quote(c.name)} = %s", lock=True, one=True), (names[0],)
        elif not self.sqlite:
            sql, args = self._select(f"WHERE {quote(c.name)} = ANY(%s)", lock=True), (names,)
        elif len(names := list(names)) <= SQLITE_IN_LIMIT:  # BEGIN IMMEDIATE already holds the whole database
            sql, args = self._select(f"WHERE {quote(c.name)} IN ({', '.join(['%s'] * len(names))})"), tuple(names)
        else:
            sql, args = self._select(), ()
        cur = conn.execute(self._sql(sql), args)
        rows = cur.fetchall()
        self._note_types(cur, rows)
        found = {flag.name: flag for flag in map(self._row, rows)}
        if names is not None:
            wanted = set(names)
            found = {name: flag for name, flag in found.items() if name in wanted}
        return found

    def _note_types(self, cur: Any, rows: list[tuple]) -> None:
        """What the enabled column takes, read from the locking read itself (no extra round trip).

        PostgreSQL casts a boolean parameter to a text column but not to an integer one, which some applications
        use for 0/1: those are sent 1 or 0. A text value ('true', 'Y', '0'…) is written back in the words
        the row already holds (a new row: what most rows hold): else PostgreSQL stores 'true'/'false' and SQLite
        1/0, which an application reading its own spelling would take for something else.
        """
        if not self.sqlite and cur.description:
            self._enabled_is_integer = cur.description[1].type_code in _INTEGER_OIDS
        for row in rows:
            if spelling := _spelling(row[1]):
                self._spellings[str(row[0])] = spelling

    def _learn_table_spelling(self, conn: Any) -> None:
        """For a new row: the words most rows of the table hold (one grouped read), if they hold text."""
        if self._table_spelling is None:
            c = self.columns
            sql = (
                f"SELECT {quote(c.enabled)}, count(*) FROM {quote(self.table)} "  # noqa: S608 quoted identifiers
                f"WHERE {quote(c.enabled)} IS NOT NULL GROUP BY {quote(c.enabled)}"
            )
            rows: dict[tuple[str, str], int] = {}
            for value, count in conn.execute(sql).fetchall():
                if spelling := _spelling(value):
                    rows[spelling] = rows.get(spelling, 0) + count
            self._table_spelling = max(sorted(rows), key=rows.__getitem__) if rows else None

    def _enabled(self, enabled: bool, name: str | None = None) -> bool | int | str:
        """The value to write into the enabled column, in the type (and words) it takes."""
        spelling = self._spellings.get(name or "") or self._table_spelling
        if spelling:
            return spelling[0] if enabled else spelling[1]
        return int(enabled) if self._enabled_is_integer else bool(enabled)

    def _update(self, conn: Any, name: str, enabled: bool, stamp: datetime) -> datetime:
        """Write one flag's state and stamp; returns the updated_at the database kept (see _stored)."""
        c = self.columns
        sql = (
            f"UPDATE {quote(self.table)} SET {quote(c.enabled)} = %s, {quote(c.updated_at)} = %s "  # noqa: S608
            f"WHERE {quote(c.name)} = %s"
        )
        returning = "" if self.sqlite else f" RETURNING {quote(c.updated_at)}"
        cur = conn.execute(self._sql(sql + returning), (self._enabled(enabled, name), self._stamp(stamp), name))
        if cur.rowcount != 1:
            raise VanishedFlags([name], self.table)
        return self._stored(conn, cur, name, stamp)

    def _stored(self, conn: Any, cur: Any, name: str, stamp: datetime) -> datetime:
        """The updated_at the row holds after Rewind's write, which a trigger may have set instead of `stamp`.

        PostgreSQL hands it back through RETURNING (a BEFORE trigger's value included). SQLite reads it again,
        still inside the write: its triggers stamp the row in an AFTER trigger, which RETURNING does not show.
        A value that cannot be read as a time (NULL, free text) leaves Rewind's own stamp.
        """
        if self.sqlite:
            c = self.columns
            sql = f"SELECT {quote(c.updated_at)} FROM {quote(self.table)} WHERE {quote(c.name)} = ?"  # noqa: S608
            row = conn.execute(sql, (name,)).fetchone()
        else:
            row = cur.fetchone()
        return (_as_time(row[0]) if row else None) or stamp

    def _stamp(self, stamp: datetime) -> Any:
        return stamp.isoformat(sep=" ", timespec="microseconds") if self.sqlite else stamp

    def set(
        self,
        name: str,
        enabled: bool,
        *,
        seen: bool | None = None,
        before_commit: Callable[[Change, datetime], None] | None = None,
    ) -> tuple[Change, datetime]:
        """Set one flag; with `seen`, refuse (StaleFlag) unless it is still in the state the person saw.

        Setting a flag to the state it already has writes nothing. Returns the change and the updated_at the
        database stored (a trigger's, if it stamps the row itself).
        `before_commit`: see the class.
        """
        stamp = now()
        with self._transaction() as conn:
            current = self._lock(conn, [name]).get(name)
            if current is None:
                raise UnknownFlag(name, self.table)
            if seen is not None and current.enabled != seen:
                raise StaleFlag(current, seen)
            after = current
            if current.enabled != enabled:
                stamp = self._update(conn, name, enabled, stamp)
                after = replace(current, enabled=enabled, updated_at=stamp)
            change = Change(name, current.enabled, enabled, after, current)
            if before_commit is not None:
                before_commit(change, stamp)
        return change, stamp

    def kill(
        self,
        names: Iterable[str] | None = None,
        *,
        tag: str | None = None,
        before_commit: Callable[[list[Change], datetime], None] | None = None,
    ) -> tuple[list[Change], datetime]:
        """Turn off every named flag (or every flag with `tag`) in one transaction: all of them or none.

        A named flag missing from the table raises VanishedFlags and nothing is changed.
        """
        if (names is None) == (tag is None):
            raise FlagError("name the flags to turn off, or a tag")
        if tag is not None and not self.columns.tag:
            raise FlagError(
                f"{self.table} has no tag column configured", fix="set database.flags_columns.tag to use tags"
            )
        wanted = None if names is None else sorted(set(names))
        if wanted == [] or tag == "":
            raise FlagError("no flags chosen: nothing to turn off")
        stamp = now()
        with self._transaction() as conn:
            found = self._lock(conn, wanted, tag=tag)
            if wanted is not None and (missing := set(wanted) - set(found)):
                raise VanishedFlags(missing, self.table)
            if tag is not None and not found:
                raise FlagError(f"no flag in {self.table} is tagged {tag!r}: nothing to turn off")
            changes = [Change(name, flag.enabled, False, before=flag) for name, flag in sorted(found.items())]
            stamp = _newest(stamp, [self._update(conn, c.name, False, stamp) for c in changes if c.changed])
            if before_commit is not None:
                before_commit(changes, stamp)
        return changes, stamp

    def apply(
        self,
        states: Mapping[str, bool],
        *,
        expected: Mapping[str, bool] | None = None,
        whole: str | None = None,
        create: Iterable[Flag] = (),
        before_commit: Callable[[list[Change], datetime], None] | None = None,
    ) -> tuple[list[Change], datetime]:
        """Put several flags in the given states, and (re)create some, in one transaction.

        `expected` holds the states the plan was made against: any difference (or a flag gone) refuses the
        whole write. `whole`, the fingerprint of the whole table the plan was made against: every row is locked
        and any difference refuses the write (TableMoved), so what is written is what the person confirmed.
        Creating a flag that exists refuses it too.
        """
        create = list(create)
        stamp = now()
        names = set(states) | set(expected or {}) | {f.name for f in create}
        with self._transaction() as conn:
            if whole is not None:
                found = self._lock(conn)
                if fingerprint(found.values()) != whole:
                    raise TableMoved(self.table)
            else:
                found = self._lock(conn, sorted(names))
            if missing := set(states) - set(found):
                raise VanishedFlags(missing, self.table)
            if expected is not None:
                moved = [found[n] for n, on in sorted(expected.items()) if n not in found or found[n].enabled != on]
                if gone := [n for n in expected if n not in found]:
                    raise VanishedFlags(gone, self.table)
                if moved:
                    raise ChangedMeanwhile(moved)
            for flag in create:
                if flag.name in found:
                    raise FlagExists(flag.name, self.table)
            changes = [Change(n, found[n].enabled, on, before=found[n]) for n, on in sorted(states.items())]
            stored = [self._update(conn, c.name, bool(c.new), stamp) for c in changes if c.changed]
            for flag in create:
                stored.append(self._insert(conn, flag, stamp))
                changes.append(Change(flag.name, None, flag.enabled))
            changes = [c for c in changes if c.changed]
            stamp = _newest(stamp, stored)
            if before_commit is not None:
                before_commit(changes, stamp)
        return changes, stamp

    def _insert(self, conn: Any, flag: Flag, stamp: datetime) -> datetime:
        c = self.columns
        self._learn_table_spelling(conn)
        cols = [c.name, c.enabled, c.description, c.updated_at]
        values: list[Any] = [flag.name, self._enabled(flag.enabled), flag.description, self._stamp(stamp)]
        if c.tag and flag.tag is not None:
            cols.append(c.tag)
            values.append(flag.tag)
        sql = (
            f"INSERT INTO {quote(self.table)} ({', '.join(quote(x) for x in cols)}) "  # noqa: S608 quoted
            f"VALUES ({', '.join(['%s'] * len(cols))})"
        )
        returning = "" if self.sqlite else f" RETURNING {quote(c.updated_at)}"
        return self._stored(conn, conn.execute(self._sql(sql + returning), values), flag.name, stamp)

    def create(
        self, flag: Flag, *, before_commit: Callable[[Change, datetime], None] | None = None
    ) -> tuple[Change, datetime]:
        """Add a flag; FlagExists if the name is taken, FlagValueError if a column cannot hold a value.

        Returns the change (None -> its state, with the row as written) and the updated_at written.
        `before_commit`: see the class.
        """
        stamp = now()
        with self._transaction() as conn:
            if self._lock(conn, [flag.name]):
                raise FlagExists(flag.name, self.table)
            stamp = self._insert(conn, flag, stamp)
            change = Change(flag.name, None, flag.enabled, replace(flag, updated_at=stamp))
            if before_commit is not None:
                before_commit(change, stamp)
        return change, stamp

    def delete(
        self, name: str, *, seen: bool | None = None, before_commit: Callable[[Flag], None] | None = None
    ) -> Flag:
        """Remove a flag (refused as stale if it is no longer in the state the person saw); returns it as it was.

        `before_commit` is called with the row as it was: see the class.
        """
        with self._transaction() as conn:
            current = self._lock(conn, [name]).get(name)
            if current is None:
                raise UnknownFlag(name, self.table)
            if seen is not None and current.enabled != seen:
                raise StaleFlag(current, seen)
            sql = f"DELETE FROM {quote(self.table)} WHERE {quote(self.columns.name)} = %s"  # noqa: S608 quoted
            conn.execute(self._sql(sql), (name,))
            if before_commit is not None:
                before_commit(current)
        return current


def _newest(stamp: datetime, stored: list[datetime]) -> datetime:
    """One written_at for a write of several rows: the newest each holds (a trigger may stamp each its own)."""
    return max(stored) if stored else stamp


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
