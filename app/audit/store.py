"""Writing and checking the audit log in the ops database.

record() adds its row to the caller's open transaction, so an action and its
audit row commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flask import current_app, has_request_context, request
from sqlalchemy import select, update

from app.audit import chain
from app.audit.models import AuditEvent, AuditHead
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


def record(
    action: str,
    *,
    outcome: Outcome = Outcome.OK,
    target: str | None = None,
    details: dict | None = None,
    actor: Actor | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the current transaction; the caller commits."""
    actor = actor or _current_actor()
    session = db.session
    # Taking the head row's write lock first keeps concurrent writers from forking the chain.
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_id=AuditHead.last_id + 1))
    new_id, prev_hash = session.execute(select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1)).one()
    user_agent = request.user_agent.string[:256] if has_request_context() else None
    event = AuditEvent(
        id=new_id,
        ts=utcnow(),
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        target=target,
        details=chain.canonical_details(details),
        outcome=str(Outcome(outcome)),
        address=client_address(),
        user_agent=user_agent or None,
        prev_hash=prev_hash,
    )
    event.hash = chain.row_hash(_key(), event.chain_values())
    session.add(event)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_hash=event.hash))
    return event


def record_and_commit(action: str, **kwargs) -> AuditEvent:
    """For events that stand alone (a refusal, a failed sign-in): nothing else to commit with."""
    event = record(action, **kwargs)
    db.session.commit()
    return event


def _key() -> bytes:
    return current_app.config["REWIND_AUDIT_KEY"]


def head() -> chain.Head | None:
    row = db.session.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    return chain.Head(row.id, row.hash) if row else None


def _stream_rows(batch: int = 5000) -> Iterator[tuple]:
    """All rows in id order, in keyset batches through Core (no ORM objects): verify reads a million rows."""
    table = AuditEvent.__table__
    columns = [table.c[name] for name in (*chain.FIELDS, "hash")]
    after = 0
    with db.engine.connect() as conn:
        while True:
            stmt = select(*columns).where(table.c.id > after).order_by(table.c.id).limit(batch)
            rows = conn.execute(stmt).all()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]


def verify(saved_head: chain.Head | None = None, observe: Callable[[int], None] | None = None) -> chain.Verdict:
    """Check the whole chain; observe(n) is told every 5,000 rows (for progress and cancel)."""
    rows = _stream_rows()
    if observe is not None:
        rows = _observed(rows, observe)
    return chain.verify_rows(_key(), rows, saved_head)


def _observed(rows: Iterator[tuple], observe: Callable[[int], None]) -> Iterator[tuple]:
    for count, row in enumerate(rows, start=1):
        if count % 5000 == 0:
            observe(count)
        yield row
