"""Account changes shared by the admin pages and `flask rewind users`.

Each change and its audit row commit together; each refusal raises
AccountError with a message an admin can act on.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from app.audit.store import Actor, record
from app.auth import sessions
from app.auth.models import User, hash_password
from app.auth.roles import Role
from app.extensions import db

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 12


class AccountError(Exception):
    """A refused account change; `status` is the HTTP status a page should answer with."""

    status = 400


class StaleForm(AccountError):
    status = 409

    def __init__(self, user: User) -> None:
        super().__init__(
            f"{user.name} was changed by someone else after this page was loaded; "
            "nothing was saved. Reload the page and try again."
        )


class UnknownUser(AccountError):
    status = 404

    def __init__(self, ref: str | int) -> None:
        super().__init__(f"there is no user {ref!r}")


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")


_dummy_hash: list[str] = []


def password_matches(user: User | None, password: str) -> bool:
    """Check a sign-in password; an unknown name is hashed against a dummy so it answers as slowly as a known one."""
    if user is not None:
        return check_password_hash(user.password_hash, password)
    if not _dummy_hash:
        _dummy_hash.append(hash_password(secrets.token_hex(16)))  # the same method: as slow as a real check
    check_password_hash(_dummy_hash[0], password)
    return False


def find_user(ref: str | int) -> User:
    user = db.session.get(User, ref) if isinstance(ref, int) else db.session.scalar(select(User).filter_by(name=ref))
    if user is None:
        raise UnknownUser(ref)
    return user


def _check_version(user: User, expected_version: int | None) -> None:
    if expected_version is not None and user.version != expected_version:
        raise StaleForm(user)


def _active_admins() -> int:
    return db.session.scalar(
        select(func.count()).select_from(User).where(User.role_value == int(Role.ADMIN), User.disabled.is_(False))
    )


def last_active_admin() -> User | None:
    """The one active admin when there is only one: the page greys its role change and Disable, which would be
    refused (_keep_an_admin), instead of offering them."""
    admins = db.session.scalars(
        select(User).where(User.role_value == int(Role.ADMIN), User.disabled.is_(False)).limit(2)
    ).all()
    return admins[0] if len(admins) == 1 else None


def _keep_an_admin(user: User) -> None:
    if user.role == Role.ADMIN and not user.disabled and _active_admins() <= 1:
        raise AccountError(f"{user.name} is the last active admin; make another admin first")


def create_user(name: str, role: Role, actor: Actor, password: str | None = None) -> tuple[User, str]:
    """Add an account; returns it with its password (generated when none is given) to show once."""
    name = name.strip()
    if not NAME_PATTERN.match(name):
        raise AccountError("a user name is 1-64 letters, digits, '.', '_' or '-'")
    if db.session.scalar(select(User.id).filter_by(name=name)) is not None:
        raise AccountError(f"a user named {name!r} already exists")
    password = password or generate_password()
    check_password_rules(password)
    user = User(name=name, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    record("user.create", actor=actor, details={"user": name, "user_id": user.id, "role": role.label})
    db.session.commit()
    return user, password


def set_role(user: User, role: Role, actor: Actor, expected_version: int | None = None) -> None:
    _check_version(user, expected_version)
    if role == user.role:
        raise AccountError(f"{user.name} already has the {role.label} role")
    if role < Role.ADMIN:
        _keep_an_admin(user)
    before = user.role
    user.role = role
    user.version += 1
    sessions.end_all_for(user.id)
    record("user.set_role", actor=actor, details={"user": user.name, "from": before.label, "to": role.label})
    db.session.commit()


def set_password(user: User, actor: Actor, password: str | None = None, expected_version: int | None = None) -> str:
    _check_version(user, expected_version)
    password = password or generate_password()
    check_password_rules(password)
    user.set_password(password)
    user.version += 1
    sessions.end_all_for(user.id)
    record("user.set_password", actor=actor, details={"user": user.name})
    db.session.commit()
    return password


def set_disabled(user: User, disabled: bool, actor: Actor, expected_version: int | None = None) -> None:
    _check_version(user, expected_version)
    if user.disabled == disabled:
        raise AccountError(f"{user.name} is already {'disabled' if disabled else 'enabled'}")
    if disabled:
        if actor.id == user.id:
            raise AccountError("you cannot disable your own account")
        _keep_an_admin(user)
    user.disabled = disabled
    user.version += 1
    sessions.end_all_for(user.id)
    record("user.disable" if disabled else "user.enable", actor=actor, details={"user": user.name})
    db.session.commit()


def ensure_initial_admin(password_file) -> str | None:
    """Create `admin` when there are no users; returns the password, also saved 0600 to password_file."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    _, password = create_user("admin", Role.ADMIN, Actor.system())
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


@dataclass(frozen=True)
class Unlocked:
    forgotten: int  # the name's recent failures, no longer counted
    addresses: dict[str, int]  # each address asked for: its recent failures (across names), no longer counted
    still_locked: list[tuple[str, int]]  # addresses the name recently tried from, locked still: (address, failures)


def unlock(user: User, actor: Actor, addresses: tuple[str, ...] = (), expected_version: int | None = None) -> Unlocked:
    """Let a locked-out user sign in again now: their recent failures, and those of `addresses` (across names), no
    longer count. Says which addresses the name recently tried from are locked still (by other names' failures)."""
    from app.auth import lockout

    _check_version(user, expected_version)

    forgotten = lockout.unlock(user.name)
    by_address = {address: lockout.unlock_address(address) for address in dict.fromkeys(addresses)}
    details = {"user": user.name, "failures_forgotten": forgotten}
    if by_address:
        details["addresses"] = by_address
    record("user.unlock", actor=actor, details=details)
    db.session.commit()
    return Unlocked(forgotten, by_address, lockout.locked_addresses(user.name))
