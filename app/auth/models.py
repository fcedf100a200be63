"""Accounts and the sign-in attempts used for lock-out."""

from __future__ import annotations

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth.roles import Role
from app.clock import utcnow
from app.extensions import db

# werkzeug's method: scrypt, n=32768 (about 0.1 s a hash here, the point of it). Checks read the method back
# from each stored hash, so changing it here leaves existing passwords working. The test suite sets a cheap one
# for its throwaway accounts (tests/conftest.py).
HASH_METHOD = "scrypt"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=HASH_METHOD)


class User(UserMixin, db.Model):
    __tablename__ = "user_account"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    role_value = db.Column("role", db.Integer, nullable=False, default=int(Role.VIEWER))
    disabled = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Bumped on every change so a form rendered before someone else's edit is refused.
    version = db.Column(db.Integer, nullable=False, default=1)

    @property
    def role(self) -> Role:
        return Role(self.role_value)

    @role.setter
    def role(self, value: Role) -> None:
        self.role_value = int(value)

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users are treated as signed out.
        return not self.disabled

    def set_password(self, password: str) -> None:
        self.password_hash = hash_password(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def can(self, role: Role) -> bool:
        return not self.disabled and self.role >= role


class LoginAttempt(db.Model):
    """One sign-in try; failures in a recent window drive the lock-out."""

    __tablename__ = "login_attempt"

    id = db.Column(db.Integer, primary_key=True)
    at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    username = db.Column(db.String(64), nullable=False, index=True)
    address = db.Column(db.String(64), nullable=False, index=True)
    succeeded = db.Column(db.Boolean, nullable=False)

    def __repr__(self) -> str:
        return f"<LoginAttempt {self.username} {self.address} {self.at:%H:%M:%S} {self.succeeded}>"


class ServerSession(db.Model):
    """One sign-in, held on the server: the cookie carries only its token, so ending the row ends the session.

    Only a hash of the token is stored, so a copy of the ops database cannot be turned into a session.
    """

    __tablename__ = "auth_session"

    id = db.Column(db.Integer, primary_key=True)
    token_hash = db.Column(db.String(64), unique=True, nullable=False)
    user_id = db.Column(db.Integer, db.ForeignKey("user_account.id"), nullable=False, index=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_seen_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    ended_at = db.Column(db.DateTime, nullable=True)
    end_reason = db.Column(db.String(32), nullable=True)

    def __repr__(self) -> str:
        state = f"ended ({self.end_reason})" if self.ended_at else "live"
        return f"<ServerSession {self.id} user={self.user_id} {state}>"
