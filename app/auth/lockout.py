"""Sign-in lock-out: five failures in fifteen minutes per user name, twenty per address.

An address is often shared by a whole on-call team (an office, a VPN's exit): one person's mistyped password must
not lock everyone else out mid-incident, so the address limit only stops guessing across many names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from app.audit.models import AuditEvent
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


@dataclass(frozen=True)
class Lock:
    """Sign-in is shut until `until`: for this account (its name's failures), this address (failures across
    names), or both."""

    until: datetime
    account: bool
    address: bool


def lock_of(username: str, address: str, *, counting_this_try: bool = False) -> Lock | None:
    """What shuts sign-in for this name from this address, and until when; None when it is open now.

    counting_this_try: the caller's own try is already noted as failed (note_attempt before the password is
    checked), so one more failure than LIMIT locks."""
    extra = 1 if counting_this_try else 0
    now = utcnow()
    by_name = _name_locked_until(username, LIMIT + extra, now)
    by_address = _locked_until(LoginAttempt.address == address, now - WINDOW, ADDRESS_LIMIT + extra)
    by_address = by_address if by_address and by_address > now else None
    if by_name is None and by_address is None:
        return None
    return Lock(max(t for t in (by_name, by_address) if t), by_name is not None, by_address is not None)


def names_locked_until(usernames: list[str]) -> dict[str, datetime]:
    """The names among these whose own lock (their failures, whatever the address) holds now, with when it ends.

    For the users page: an admin sees which account is locked, and unlocks it there. Two queries for the whole
    page, not two per account."""
    return _names_locked_until(usernames, LIMIT, utcnow())


def _name_locked_until(username: str, limit: int, now: datetime) -> datetime | None:
    return _names_locked_until([username], limit, now).get(username)


def _names_locked_until(usernames: list[str], limit: int, now: datetime) -> dict[str, datetime]:
    """Each name's lock: `limit` failures in the window since its last successful sign-in."""
    since = now - WINDOW
    successes = dict(
        db.session.execute(
            select(LoginAttempt.username, func.max(LoginAttempt.at))
            .where(LoginAttempt.username.in_(usernames), LoginAttempt.succeeded.is_(True))
            .group_by(LoginAttempt.username)
        ).all()
    )
    newest = (
        select(LoginAttempt.username, LoginAttempt.at)
        .where(LoginAttempt.username.in_(usernames), LoginAttempt.at > since, LoginAttempt.succeeded.is_(False))
        .order_by(LoginAttempt.at.desc())
    )
    if len(usernames) == 1:  # a sign-in reads one name: its newest `limit` failures decide, however many there are
        newest = newest.limit(limit)
    failures: dict[str, list[datetime]] = {}
    for name, at in db.session.execute(newest):
        if at > max(since, successes.get(name) or since):  # failures before a success no longer count
            failures.setdefault(name, []).append(at)
    locked = {name: ats[limit - 1] + WINDOW for name, ats in failures.items() if len(ats) >= limit}
    return {name: until for name, until in locked.items() if until > now}  # the oldest of them leaves the window


def locked_until(username: str, address: str, *, counting_this_try: bool = False) -> datetime | None:
    """When sign-in opens again for this name or address, or None when it is open now."""
    lock = lock_of(username, address, counting_this_try=counting_this_try)
    return lock.until if lock else None


def note_attempt(username: str, address: str, succeeded: bool) -> LoginAttempt:
    attempt = LoginAttempt(username=username[:64], address=address[:64], succeeded=succeeded)
    db.session.add(attempt)
    return attempt


def unlock(username: str) -> int:
    """Forget the name's recent failures, so its owner may sign in again now; how many were forgotten.

    The failures stay in the audit log; only the count that drives the lock-out goes."""
    return _forget(LoginAttempt.username == username)


def unlock_address(address: str) -> int:
    """Forget the address's recent failures, whatever names they tried; how many were forgotten."""
    return _forget(LoginAttempt.address == address)


def _forget(condition) -> int:
    since = utcnow() - WINDOW
    gone = db.session.execute(
        delete(LoginAttempt).where(condition, LoginAttempt.succeeded.is_(False), LoginAttempt.at > since)
    )
    return gone.rowcount


def recent_failures(address: str) -> int:
    """The address's failures in the window, across names: ADDRESS_LIMIT of them lock it."""
    since = utcnow() - WINDOW
    return db.session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.address == address, LoginAttempt.succeeded.is_(False), LoginAttempt.at > since)
    )


def addresses_tried(username: str) -> list[str]:
    """The addresses this name tried to sign in from in the window: its noted attempts, and its refusals in the
    audit log (a try at a locked address is refused before it is noted)."""
    since = utcnow() - WINDOW
    noted = db.session.scalars(
        select(LoginAttempt.address).where(LoginAttempt.username == username, LoginAttempt.at > since).distinct()
    )
    audited = db.session.scalars(
        select(AuditEvent.address)
        .where(
            AuditEvent.actor_name == username,
            AuditEvent.action.in_(("auth.login", "auth.lockout")),
            AuditEvent.ts > since,
            AuditEvent.address.is_not(None),
        )
        .distinct()
    )
    return sorted({*noted, *audited})


def locked_addresses(username: str) -> list[tuple[str, int]]:
    """The addresses this name recently tried from that are locked now (by failures across names), each with
    its count of failures."""
    now = utcnow()
    locked = []
    for address in addresses_tried(username):
        until = _locked_until(LoginAttempt.address == address, now - WINDOW, ADDRESS_LIMIT)
        if until is not None and until > now:
            locked.append((address, recent_failures(address)))
    return locked
