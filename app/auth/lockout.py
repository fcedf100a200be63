"""Sign-in lock-out: five failures in fifteen minutes per user name, twenty per address.

An address is often shared by a whole on-call team (an office, a VPN's exit): one person's mistyped password must
not lock everyone else out mid-incident, so the address limit only stops guessing across many names."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from app.auth.models import LoginAttempt
from app.clock import utcnow
from app.extensions import db

WINDOW = timedelta(minutes=15)
LIMIT = 5
ADDRESS_LIMIT = 20


def _locked_until(condition, since: datetime, limit: int) -> datetime | None:
    failures = db.session.scalars(
        select(LoginAttempt.at)
        .where(condition, LoginAttempt.at > since, LoginAttempt.succeeded.is_(False))
        .order_by(LoginAttempt.at.desc())
        .limit(limit)
    ).all()
    if len(failures) < limit:
        return None
    return failures[-1] + WINDOW  # when the oldest of the last `limit` failures leaves the window


def locked_until(username: str, address: str, *, counting_this_try: bool = False) -> datetime | None:
    """When sign-in opens again for this name or address, or None when it is open now.

    counting_this_try: the caller's own try is already noted as failed (note_attempt before the password is
    checked), so one more failure than LIMIT locks."""
    extra = 1 if counting_this_try else 0
    limit, address_limit = LIMIT + extra, ADDRESS_LIMIT + extra
    since = utcnow() - WINDOW
    last_success = db.session.scalar(
        select(func.max(LoginAttempt.at)).where(LoginAttempt.username == username, LoginAttempt.succeeded.is_(True))
    )
    by_name = _locked_until(LoginAttempt.username == username, max(since, last_success or since), limit)
    by_address = _locked_until(LoginAttempt.address == address, since, address_limit)
    candidates = [t for t in (by_name, by_address) if t and t > utcnow()]
    return max(candidates) if candidates else None


def note_attempt(username: str, address: str, succeeded: bool) -> LoginAttempt:
    attempt = LoginAttempt(username=username[:64], address=address[:64], succeeded=succeeded)
    db.session.add(attempt)
    return attempt


def unlock(username: str) -> int:
    """Forget the name's recent failures, so its owner may sign in again now; how many were forgotten.

    The failures stay in the audit log; only the count that drives the lock-out goes."""
    since = utcnow() - WINDOW
    gone = db.session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.username == username, LoginAttempt.succeeded.is_(False), LoginAttempt.at > since
        )
    )
    return gone.rowcount
