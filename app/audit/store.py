"""Writing and checking the audit log in the ops database.

record() adds its row to the caller's open transaction, so an action and its
audit row commit together or not at all.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from flask import current_app, has_request_context, request
from sqlalchemy import Text, bindparam, cast, func, or_, select, update
from sqlalchemy.orm import make_transient_to_detached

from app.audit import chain
from app.audit.models import AuditEvent, AuditHead, AuditMark
from app.clock import utcnow
from app.extensions import db
from app.statuses import Outcome


@dataclass(frozen=True)
class Actor:
    id: int | None
    name: str

    @classmethod
    def system(cls) -> Actor:
        return cls(None, "system")

    @classmethod
    def of(cls, user) -> Actor:
        return cls(user.id, user.name)


def _current_actor() -> Actor:
    from flask_login import current_user

    if has_request_context() and current_user and current_user.is_authenticated:
        return Actor.of(current_user)
    return Actor.system()


def client_address() -> str | None:
    """The peer address as the WSGI server saw it (front proxies are expected to set REMOTE_ADDR)."""
    return request.remote_addr if has_request_context() else None


def serialise() -> None:
    """Take the chain-head lock now (held until commit), so a check-then-write cannot race.

    Enqueueing a job uses it: the busy-target check and the insert happen under
    the same lock every audited writer takes, in every process.
    """
    db.session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_id=AuditHead.last_id))


# An audit row says what happened; it is not where big inputs are kept (views refuse them first).
MAX_DETAILS_CHARS = 8192
MAX_DETAIL_VALUE_CHARS = 512


def shrink_details(details: dict, size: int) -> dict:
    """Details too big for a row: long strings cut to a prefix with their length, so the row still says what."""

    def cut(value):
        if isinstance(value, str) and len(value) > MAX_DETAIL_VALUE_CHARS:
            return f"{value[:MAX_DETAIL_VALUE_CHARS]}… [{len(value)} characters, cut]"
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [cut(v) for v in value]
        return value

    smaller = cut(details)
    if len(chain.canonical_details(smaller)) <= MAX_DETAILS_CHARS:
        return {**smaller, "details_cut": True}
    return {"details_cut": True, "size": size, "keys": sorted(str(k)[:64] for k in details)[:50]}


def job_of(details: dict | None) -> int | None:
    """The job a row is about, for the indexed job_id column."""
    job_id = (details or {}).get("job_id")
    return job_id if isinstance(job_id, int) and not isinstance(job_id, bool) else None


@dataclass
class Reserved:
    """An event whose place in the chain is taken (the head row is locked until the transaction ends) but whose
    row is not written yet: a writer that must commit something else first takes its place while that something
    is still locked, so rows keep the order of the writes, and writes the row after (see `write_and_commit`)."""

    event: AuditEvent
    row: dict


def reserve(
    action: str,
    *,
    outcome: Outcome = Outcome.OK,
    target: str | None = None,
    details: dict | None = None,
    actor: Actor | None = None,
) -> Reserved:
    """Take the next place in the chain and build the event for it, inside the current transaction."""
    actor = actor or _current_actor()
    text = _text(chain.canonical_details(details))
    if len(text) > MAX_DETAILS_CHARS:
        text = _text(chain.canonical_details(shrink_details(details, len(text))))
    user_agent = _text(request.user_agent.string[:256]) if has_request_context() else None
    address = _text(client_address())
    # Taking the head row's write lock first keeps concurrent writers from forking the chain; the same statement
    # reads the new id and the previous hash, one round trip fewer while the lock is held. The head row is never
    # loaded as an object, so plain statements on the session's connection (no ORM bookkeeping) do.
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":  # straight to the driver: SQLAlchemy's execution costs more than the work
        new_id, prev_hash = conn.connection.driver_connection.execute(_pg_take_head(conn.dialect)).fetchone()
    else:
        new_id, prev_hash = conn.execute(_TAKE_HEAD).one()
    event = AuditEvent(
        id=new_id,
        ts=utcnow(),
        actor_id=actor.id,
        actor_name=_text(actor.name[:64]),
        action=action,
        target=_text(target[:128]) if target else target,
        details=text,
        outcome=str(Outcome(outcome)),
        address=address,
        user_agent=user_agent or None,
        prev_hash=prev_hash,
    )
    event.job_id = job_of(details)
    event.hash = chain.row_hash(_key(), event.chain_values())
    # The row will exist (in this transaction): the object says so, with every column loaded, but stays out of
    # the session, so a rollback cannot leave the session holding an id the next writer is handed again.
    make_transient_to_detached(event)
    return Reserved(event, {f"row_{name}": getattr(event, name) for name in _EVENT_COLUMNS})


_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def _text(value: str | None) -> str | None:
    """A column's text as the database can keep it and the hash can encode: a NUL (which a header may carry) or a
    lone surrogate (the shell's stand-in for bytes that are not UTF-8) becomes U+FFFD. Else the row, and with it
    the action or its refusal (and a toggle's row, the audit of a change already committed), would fail."""
    if not value or (value.isascii() and "\x00" not in value):
        return value
    return _NOT_TEXT.sub("\ufffd", value)


def write(reserved: Reserved) -> AuditEvent:
    """Add the reserved row to the current transaction and move the head to it; the caller commits."""
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        # The insert and the head's move are one statement: one round trip while the lock is held.
        conn.execute(_INSERT_MOVING_HEAD, {**reserved.row, "hash": reserved.event.hash})
    else:
        conn.execute(_INSERT, reserved.row)
        conn.execute(_MOVE_HEAD, {"hash": reserved.event.hash})
    return reserved.event


def write_and_commit(reserved: Reserved) -> AuditEvent:
    """Write the reserved row and commit, releasing the head lock as soon as the row is in.

    On PostgreSQL the insert and the COMMIT go in one round trip (psycopg's pipeline): every writer in every
    process waits for this lock, so each round trip it holds is paid by all of them. Anything else the session
    holds is flushed first, so it still commits with the row.

    If the row or the commit fails, the session is rolled back (the place goes to the next writer, the session
    and its connection are clean for the next request) and the error raised: nothing was committed with it."""
    try:
        conn = db.session.connection()
        if conn.dialect.name != "postgresql":
            write(reserved)
            db.session.commit()
            return reserved.event
        db.session.flush()
        insert = _pg_insert(conn.dialect)
        params = insert.construct_params({**reserved.row, "hash": reserved.event.hash})
        driver = conn.connection.driver_connection
        with driver.pipeline():  # one Sync for both when the block ends: commit() would send one of its own and wait
            driver.execute(str(insert), params)
            driver.execute("COMMIT")
        db.session.commit()  # ends the session's transaction; the server's is already committed (no round trip)
    except BaseException:
        db.session.rollback()
        raise
    return reserved.event


def record(
    action: str,
    *,
    outcome: Outcome = Outcome.OK,
    target: str | None = None,
    details: dict | None = None,
    actor: Actor | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the current transaction; the caller commits."""
    return write(reserve(action, outcome=outcome, target=target, details=details, actor=actor))


_HEAD = AuditHead.__table__
_TAKE_HEAD = (
    _HEAD.update()
    .where(_HEAD.c.id == 1)
    .values(last_id=_HEAD.c.last_id + 1)
    .returning(_HEAD.c.last_id, _HEAD.c.last_hash)
)
_MOVE_HEAD = _HEAD.update().where(_HEAD.c.id == 1).values(last_hash=bindparam("hash"))
_EVENT = AuditEvent.__table__
_EVENT_COLUMNS = tuple(c.name for c in _EVENT.columns)
_INSERT = _EVENT.insert().values({c.name: bindparam(f"row_{c.name}", type_=c.type) for c in _EVENT.columns})
_INSERT_MOVING_HEAD = _INSERT.add_cte(_MOVE_HEAD.cte("moved_head"))


@functools.cache
def _pg_take_head(dialect) -> str:
    """The head's move as the driver's own SQL (compiled once per dialect; its one parameter is written in)."""
    return str(_TAKE_HEAD.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


@functools.cache
def _pg_insert(dialect):
    """The insert compiled for the driver itself, for the pipeline (once per dialect)."""
    return _INSERT_MOVING_HEAD.compile(dialect=dialect)


def job_rows(job_id: int, limit: int = 100) -> list[AuditEvent]:
    """A job's audit rows, oldest first, found by the indexed job_id column.

    job_id sits outside the hash, so each row is also checked against its hashed details: a column
    edited in the database cannot move another job's rows onto this job's page.
    """
    rows = db.session.scalars(
        select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id).limit(limit)
    ).all()
    return [row for row in rows if job_of(_details(row)) == job_id]


def _details(row: AuditEvent) -> dict:
    try:
        value = json.loads(row.details)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def record_and_commit(action: str, **kwargs) -> AuditEvent:
    """For events that stand alone (a refusal, a failed sign-in): nothing else to commit with."""
    return write_and_commit(reserve(action, **kwargs))


def _key() -> bytes:
    return current_app.config["REWIND_AUDIT_KEY"]


def head() -> chain.Head | None:
    row = db.session.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    return chain.Head(row.id, row.hash) if row else None


def recorded_head() -> chain.Head | None:
    """The end of the chain as the audit_head row records it (every writer moves it with its row)."""
    row = db.session.execute(select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1)).first()
    return chain.Head(row.last_id, row.last_hash) if row and row.last_id else None


RECORDED_HEAD = "the recorded head (audit_head)"
VERIFIED_MARK = "the verified-up-to mark"
BATCH = 10_000
# How many new rows one incremental check reads (about half a second); the rest waits for the next call.
CHECK_LIMIT = 100_000

# The row's canonical encoding built by the database (chain.encode is the reference; a mismatch is
# re-encoded in Python before a row is called changed, so these only have to be right almost always).
# SQLite keeps ts as 'YYYY-MM-DD HH:MM:SS.ffffff'; the hash has 'YYYY-MM-DDTHH:MM:SS.ffffffZ'. Any other
# character where the space belongs becomes '?', which never matches, so only the exact stored form passes.
_SQLITE_PROOFS = (
    "SELECT id, prev_hash, hash, CAST(json_array(id, "
    "substr(ts, 1, 10) || CASE substr(ts, 11, 1) WHEN ' ' THEN 'T' ELSE '?' END || substr(ts, 12) || 'Z', "
    "actor_id, actor_name, action, target, details, outcome, address, user_agent, prev_hash) AS BLOB) "
    "FROM audit_event WHERE id > ? ORDER BY id LIMIT ?"
)
_SQLITE_MORE = "SELECT 1 FROM audit_event WHERE id > ? LIMIT 1"
_PG_MORE = "SELECT 1 FROM audit_event WHERE id > %s LIMIT 1"


def _pg_text(column: str) -> str:
    return f"coalesce(to_json({column})::text, 'null')"


_PG_PROOFS = (
    "SELECT id, prev_hash, hash, convert_to('[' || id || ',\"' || "
    "to_char(ts, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || 'Z\",' || coalesce(actor_id::text, 'null') || ',' || "
    + " || ',' || ".join(
        _pg_text(c) for c in ("actor_name", "action", "target", "details", "outcome", "address", "user_agent")
    )
    + " || ',' || to_json(prev_hash)::text || ']', 'UTF8') "
    "FROM audit_event WHERE id > %s ORDER BY id LIMIT %s"
)


class _Proofs:
    """Batches of (id, prev_hash, hash, encoding) in id order after a row, through the driver's own cursor:
    a million rows, so no ORM objects and no per-row type conversion."""

    def __init__(self, after: int, limit: int | None) -> None:
        self.after = after
        self.limit = limit
        self.exhausted = False
        postgres = db.engine.dialect.name == "postgresql"
        self.sql, self.more = (_PG_PROOFS, _PG_MORE) if postgres else (_SQLITE_PROOFS, _SQLITE_MORE)

    def __iter__(self) -> Iterator[list[tuple]]:
        conn = db.engine.raw_connection()
        try:
            cursor = conn.cursor()
            after, left = self.after, self.limit
            while left is None or left > 0:
                want = BATCH if left is None else min(BATCH, left)
                cursor.execute(self.sql, (after, want))
                rows = cursor.fetchall()
                conn.commit()  # end the read at once: SQLite writers and PostgreSQL vacuum wait for none
                if rows:
                    yield rows
                    after = rows[-1][0]
                if len(rows) < want:
                    self.exhausted = True
                    return
                if left is not None:
                    left -= len(rows)
            cursor.execute(self.more, (after,))
            self.exhausted = cursor.fetchone() is None
            conn.commit()
        finally:
            conn.close()


def _reencode(row_id: int) -> bytes | None:
    """The reference encoding of one row, read through its column types, as record() hashed it.

    On SQLite ts is text, and the driver's parse is looser than what it writes ('2026-01-02X10:00:00.000000'
    reads back as the time hashed): the text must be exactly the form written, or the row was changed.
    """
    table = AuditEvent.__table__
    columns = [table.c[name] for name in chain.FIELDS]
    stored = cast(table.c.ts, Text)
    try:
        with db.engine.connect() as conn:
            row = conn.execute(select(*columns, stored).where(table.c.id == row_id)).first()
        if row is None:
            return None
        *values, ts_text = row
        if db.engine.dialect.name == "sqlite" and ts_text != values[1].isoformat(" ", "microseconds"):
            return None
        return chain.encode(tuple(values))
    except (ValueError, TypeError, AttributeError):  # a value no writer could have stored: the row was changed
        return None


def _walk(after: chain.Head | None, anchors: list[chain.Anchor], limit: int | None, observe) -> chain.Verdict:
    proofs = _Proofs(after.id if after else 0, limit)
    verdict = chain.judge(
        _key(),
        proofs,
        after=after,
        anchors=anchors,
        reencode=_reencode,
        observe=observe,
        exhausted=lambda: proofs.exhausted,
    )
    if verdict.intact and not proofs.exhausted:
        newest = db.session.scalar(select(func.max(AuditEvent.id))) or 0
        end = verdict.head.id if verdict.head else 0
        verdict = chain.Verdict(verdict.checked, verdict.head, None, since=verdict.since, pending=max(newest - end, 0))
    return verdict


def verify(saved_head: chain.Head | None = None, observe: Callable[[int], None] | None = None) -> chain.Verdict:
    """Check the whole chain, and that it still reaches the recorded head, the sealed mark (and a saved head).

    observe(n) is told after every batch (for progress and cancel). An intact chain moves the sealed
    mark to its end, so the web's incremental checks start from there. A genuine mark is a row found
    intact before: a chain that no longer reaches it was cut, and replacing the mark would hide that.
    """
    anchors = [chain.Anchor(saved_head, "the saved head")] if saved_head else []
    recorded = recorded_head()
    if recorded:
        anchors.append(chain.Anchor(recorded, RECORDED_HEAD))
    mark = read_mark()
    if mark is not None and mark.genuine:  # a forged one vouches for nothing: the walk below replaces it
        anchors.append(chain.Anchor(mark.head, VERIFIED_MARK))
    verdict = _walk(None, anchors, None, observe)
    if verdict.intact and verdict.head:
        save_mark(verdict.head, replace=True, full=True)
        return verdict
    if _behind_the_mark(verdict.problem, read_mark()):
        # A row the mark vouched for was changed or removed: the mark goes back to the last row found intact, so
        # the web's check (which starts at the mark) meets the break too instead of going on saying intact. The mark
        # is read again: a check in another process may have moved it during the walk.
        move_mark_back(verdict.problem.row_id, verdict.head)
    if verdict.problem is not None:
        # Kept until a full walk finds the chain intact: a row put back as it was reads intact to the web's check,
        # which must not then name an earlier, passed full check as the last one.
        save_failed_full_check(verdict.problem, verdict.head)
    return verdict


def _behind_the_mark(problem: chain.ChainBreak | None, mark: Mark | None) -> bool:
    """A break in the rows a genuine mark covers, found by a full walk (a cut tail or a moved head the web's
    check finds by itself: the mark's row, or the recorded head, no longer matches)."""
    return (
        problem is not None
        and mark is not None
        and mark.genuine
        and problem.kind in ("changed", "removed", "out_of_place")
        and problem.row_id is not None
        and problem.row_id <= mark.head.id
    )


@dataclass(frozen=True)
class FullCheck:
    """The last full walk: it found rows 1 to row_id intact, at `at` (naive UTC); and, when `problem` is set, a break
    at `break_row` (what `problem` says) after them."""

    row_id: int
    at: datetime
    break_row: int | None = None
    problem: str | None = None

    @property
    def found_break(self) -> bool:
        return self.problem is not None


@dataclass(frozen=True)
class Mark:
    head: chain.Head
    sealed_at: datetime | None
    genuine: bool
    full: FullCheck | None = None  # None when no full check is on record (or its seal does not match)


def read_mark() -> Mark | None:
    """The sealed "verified up to here" mark, or None when no check has finished yet."""
    row = db.session.execute(select(AuditMark).where(AuditMark.id == 1)).scalar_one_or_none()
    if row is None or not row.row_id:
        return None
    head = chain.Head(row.row_id, row.row_hash)
    genuine = row.sealed_at is not None and hmac.compare_digest(
        chain.seal_mark(_key(), head, row.sealed_at), row.seal or ""
    )
    return Mark(head, row.sealed_at, genuine, _full_check(row))


def read_full_check() -> FullCheck | None:
    """The last full walk, passed or failed, whether or not a mark stands (a break at row 1 leaves none); None when
    none is on record or its seal does not match."""
    row = db.session.execute(select(AuditMark).where(AuditMark.id == 1)).scalar_one_or_none()
    return _full_check(row) if row is not None else None


def _full_check(row: AuditMark) -> FullCheck | None:
    if row.full_row_id is None or row.full_at is None:
        return None
    sealed = chain.seal_full_check(_key(), row.full_row_id, row.full_at, row.full_break_row, row.full_break)
    if not hmac.compare_digest(sealed, row.full_seal or ""):
        return None
    return FullCheck(row.full_row_id, row.full_at, row.full_break_row, row.full_break)


def save_mark(head: chain.Head, *, replace: bool = False, since: chain.Head | None = None, full: bool = False) -> None:
    """Move the mark forward to a row just found intact, in a transaction of its own.

    An incremental check (`since`: the mark it started from, None when there was none) moves it only if it is still
    that mark: a full walk in another process may have moved it back behind a changed row meanwhile, and moving it
    forward again would hide the break. A full walk (replace=True) writes it whatever was there, so it also clears a
    forged mark; with full=True it is also recorded as the last full check, which the web's badge names.
    """
    at = utcnow()
    seal = chain.seal_mark(_key(), head, at)
    table = AuditMark.__table__
    values = {"row_id": head.id, "row_hash": head.hash, "sealed_at": at, "seal": seal}
    if full:
        values |= {
            "full_row_id": head.id,
            "full_at": at,
            "full_seal": chain.seal_full_check(_key(), head.id, at),
            "full_break_row": None,
            "full_break": None,
        }
    with db.engine.begin() as conn:
        if replace:
            where = (table.c.id == 1,)
        elif since is not None:
            where = (table.c.id == 1, table.c.row_id == since.id, table.c.row_hash == since.hash)
        else:  # there was no mark: an empty row (or none) only
            where = (table.c.id == 1, or_(table.c.row_id.is_(None), table.c.row_id == 0))
        moved = conn.execute(table.update().where(*where).values(**values)).rowcount
        if moved == 0 and since is None and conn.execute(select(table.c.id).where(table.c.id == 1)).first() is None:
            conn.execute(table.insert().values(id=1, **values))


def move_mark_back(problem_row: int, head: chain.Head | None) -> None:
    """After a full walk found `problem_row` changed or removed: the mark to the last row before it (None: no mark),
    if it still stands at or past that row (an incremental check may not have moved it meanwhile: see save_mark)."""
    table = AuditMark.__table__
    with db.engine.begin() as conn:
        where = (table.c.id == 1, table.c.row_id >= problem_row)
        if head is None:  # emptied, not deleted: the row also keeps the last full check
            values = {"row_id": 0, "row_hash": chain.GENESIS, "sealed_at": None, "seal": ""}
            conn.execute(table.update().where(*where).values(**values))
            return
        at = utcnow()
        values = {"row_id": head.id, "row_hash": head.hash, "sealed_at": at, "seal": chain.seal_mark(_key(), head, at)}
        conn.execute(table.update().where(*where).values(**values))


FULL_BREAK_CHARS = 512  # the column's size; a break's words are a line


def save_failed_full_check(problem: chain.ChainBreak, intact_to: chain.Head | None) -> None:
    """Record a full walk that found a break, sealed, in place of the last full check (passed or not), in a
    transaction of its own; the mark itself is left as it is (move_mark_back's business)."""
    at = utcnow()
    row_id = intact_to.id if intact_to else 0
    words = problem.message[:FULL_BREAK_CHARS]
    table = AuditMark.__table__
    values = {
        "full_row_id": row_id,
        "full_at": at,
        "full_break_row": problem.row_id,
        "full_break": words,
        "full_seal": chain.seal_full_check(_key(), row_id, at, problem.row_id, words),
    }
    with db.engine.begin() as conn:
        if conn.execute(table.update().where(table.c.id == 1).values(**values)).rowcount == 0:
            conn.execute(table.insert().values(id=1, row_id=0, row_hash=chain.GENESIS, seal="", **values))


def check_recent(limit: int | None = None) -> chain.Verdict:
    """Check only the rows after the sealed mark (at most `limit`), and that the chain reaches the recorded head.

    For web pages: a full walk of a big log takes seconds, so a page never does one. A mark that is not
    sealed with the audit key is refused (someone changed the ops database), and nothing is trusted.
    """
    limit = limit or CHECK_LIMIT
    mark = read_mark()
    if mark is not None and not mark.genuine:
        problem = chain.ChainBreak(
            mark.head.id,
            "forged_mark",
            f"the verified-up-to mark (row {mark.head.id}) was not sealed with the audit key: "
            "someone changed the ops database; run `flask rewind audit verify` for a full check",
        )
        return chain.Verdict(0, None, problem)
    after = mark.head if mark else None
    recorded = recorded_head()
    anchors = [chain.Anchor(recorded, RECORDED_HEAD)] if recorded else []
    if after is not None:
        stored = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.id == after.id))
        if stored is None:
            end = head()
            problem = chain.ChainBreak(
                after.id,
                "tail_cut",
                f"the tail was cut: row {after.id} was verified before but the log ends at "
                f"{f'row {end.id}' if end else 'no rows'}",
            )
            return chain.Verdict(0, end, problem, since=after.id)
        if stored != after.hash:
            return chain.Verdict(0, None, chain.changed(after.id))
    verdict = _walk(after, anchors, limit, None)
    if verdict.intact and verdict.head and (after is None or verdict.head.id > after.id):
        save_mark(verdict.head, since=after)
    return verdict
