"""Server-side sessions: the signed cookie names a session row, and only a live row signs anyone in.

A cookie signed with a leaked secret key, or copied before sign-out, is worth
nothing without a live row: logout, idle expiry, the absolute lifetime and
every account change (password, role, disable) end rows on the server.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, delete, select, update

from app.auth.models import ServerSession, User
from app.clock import utcnow
from app.extensions import db

# Refreshing last_seen at most this often keeps a busy page from writing a row per request.
TOUCH_EVERY = timedelta(seconds=30)
# Rows unused this long are dropped at the next sign-in (longer than any session can live).
KEEP_ENDED = timedelta(days=30)


class EndReason:
    LOGOUT = "logout"
    IDLE = "idle"
    LIFETIME = "lifetime"
    ACCOUNT_CHANGED = "account changed"


@dataclass(frozen=True)
class Verdict:
    """A session token checked against the server: the live row, or why there is none."""

    row: ServerSession | None
    refused: str | None = None  # unknown, ended, idle, lifetime
    user: User | None = None  # the session's user, read with it (None when the token names no session of theirs)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(user_id: int) -> str:
    """Add a live row for a fresh sign-in; returns the token for the cookie. The caller commits."""
    token = secrets.token_urlsafe(32)
    db.session.execute(delete(ServerSession).where(ServerSession.last_seen_at < utcnow() - KEEP_ENDED))
    db.session.add(ServerSession(token_hash=_digest(token), user_id=user_id))
    return token


# The session and its user in one query, built once: this runs on every request.
_SESSION_AND_USER = (
    select(ServerSession, User)
    .join(User, User.id == ServerSession.user_id)
    .where(ServerSession.token_hash == bindparam("digest"))
)


def check(token: str | None, user_id: int, *, idle: timedelta, lifetime: timedelta) -> Verdict:
    """Is this token a live session of this user? An idle or too-old one is ended here (and committed)."""
    if not token:
        return Verdict(None, "unknown")
    found = db.session.execute(_SESSION_AND_USER, {"digest": _digest(token)}).first()
    if found is None or found[0].user_id != user_id:
        return Verdict(None, "unknown")
    return _judge(*found, idle=idle, lifetime=lifetime)


def recheck(session_id: int, *, idle: timedelta, lifetime: timedelta) -> Verdict:
    """check() again for a connection that outlives its request (a job page's stream): it must not outlive the
    session either, whether that was ended (sign-out, an account change) or ran past its idle or absolute limit."""
    found = db.session.execute(
        select(ServerSession, User).join(User, User.id == ServerSession.user_id).where(ServerSession.id == session_id)
    ).first()
    if found is None:
        return Verdict(None, "unknown")
    return _judge(*found, idle=idle, lifetime=lifetime)


def _judge(row: ServerSession, user: User, *, idle: timedelta, lifetime: timedelta) -> Verdict:
    """An expired row is ended here by whoever sees it first: the end is written only while the row is still
    expired and live, so a request in another tab that just moved last_seen_at keeps it, and of two checkers
    (a page's stream and a request) only one says it expired (and has it audited)."""
    if row.ended_at is not None:
        return Verdict(None, "ended", user)
    now = utcnow()
    for reason, expired, still in (
        (EndReason.LIFETIME, now - row.created_at > lifetime, ServerSession.created_at < now - lifetime),
        (EndReason.IDLE, now - row.last_seen_at > idle, ServerSession.last_seen_at < now - idle),
    ):
        if expired:
            ended = _end((ServerSession.id == row.id) & still, reason)
            db.session.commit()
            if ended:
                return Verdict(None, reason, user)
            db.session.refresh(row)  # someone else's write came first: as it left the row
            return Verdict(None, "ended", user) if row.ended_at is not None else Verdict(row, None, user)
    return Verdict(row, None, user)


def record_expiry(user: User, reason: str, *, idle_minutes: int, session_hours: int) -> str:
    """Audit a session the server ended for idleness or age; returns the words that tell its person why
    ("signed out after 30 minutes without activity")."""
    from app.audit.store import Actor, record_and_commit

    limit = {"idle_minutes": idle_minutes} if reason == EndReason.IDLE else {"hours": session_hours}
    record_and_commit("auth.expired", actor=Actor.of(user), details={"reason": reason, **limit})
    if reason == EndReason.IDLE:
        return f"signed out after {idle_minutes} minutes without activity"
    return f"signed out: a session lasts at most {session_hours} hours"


def touch(row: ServerSession) -> None:
    """A person acted: push the idle deadline back (written at most every TOUCH_EVERY)."""
    now = utcnow()
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        db.session.commit()


def end(token: str | None, reason: str) -> None:
    """End one session (sign-out). The caller commits."""
    if token:
        _end(ServerSession.token_hash == _digest(token), reason)


def end_all_for(user_id: int, reason: str = EndReason.ACCOUNT_CHANGED) -> int:
    """End every live session of a user; returns how many. The caller commits."""
    return _end(ServerSession.user_id == user_id, reason)


def _end(condition, reason: str) -> int:
    result = db.session.execute(
        update(ServerSession)
        .where(condition, ServerSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
    )
    return result.rowcount
