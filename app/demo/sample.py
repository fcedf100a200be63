"""Sample rows for a demo app's database (SQLite or PostgreSQL), inserted after its migrations ran to head."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

# Made-up accounts: the demo names no real person.
USERS = tuple((f"Sample user {n}", f"user{n:02}@example.invalid") for n in range(1, 13))

SEGMENTS = (
    ("beta-testers", "Users who opted into early features", "opted_in_beta == true"),
    ("new-signups", "Signed up in the last 14 days", "created_at >= now() - 14d"),
    ("power-users", "More than 20 sessions a month", "sessions_30d > 20"),
    ("churn-risk", "No session for 21 days", "last_session <= now() - 21d"),
    ("europe", "Billing address in the EU", "country in EU"),
    ("enterprise", "On an enterprise plan", "plan == 'enterprise'"),
)

FLAGS = (
    ("new_checkout", True, "The redesigned checkout"),
    ("beta_search", False, "Search backed by the new index"),
    ("dark_mode", True, "Dark colour scheme in the web app"),
    ("legacy_export", False, "The old CSV export, kept for one customer"),
    ("payments_v2", False, "Payments through the new provider (not deployed yet: /health fails while on)"),
)

# The rest stay on the free plan (the column's default).
ENTERPRISE = ("user02@example.invalid", "user06@example.invalid")

SESSIONS_PER_USER = (3, 1, 2, 0, 1, 2, 1, 0, 2, 1, 1, 2)  # 16 sessions

# Who signed up between the demo's older and newest backup: what restoring the older one rolls back.
NEWER_USERS = tuple((f"Sample user {n}", f"user{n:02}@example.invalid") for n in range(13, 16))


def _url(database: Path | str) -> str:
    """A URL for SQLAlchemy: a path is a SQLite file; postgresql:// is driven by psycopg 3."""
    if isinstance(database, Path):
        return f"sqlite:///{database}"
    if database.startswith("postgresql://"):
        return "postgresql+psycopg://" + database[len("postgresql://") :]
    return database


def _naive(moment: datetime) -> datetime:
    """The columns are `timestamp without time zone`, holding UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def _connected(database: Path | str):
    return create_engine(_url(database), poolclass=NullPool)


def _add_users(conn: Connection, users, times: list[datetime]) -> dict[str, int]:
    """Insert users (ids from the database, so its sequence stays right); their ids by email."""
    conn.execute(
        text("INSERT INTO users (email, name, created_at) VALUES (:email, :name, :at)"),
        [{"email": email, "name": name, "at": at} for (name, email), at in zip(users, times, strict=True)],
    )
    emails = [email for _, email in users]
    rows = conn.execute(text("SELECT id, email FROM users")).all()
    return {email: id_ for id_, email in rows if email in emails}


def _add_sessions(conn: Connection, seed: str, user_id: int, count: int, now: datetime) -> int:
    rows = []
    for n in range(count):
        started = now - timedelta(days=n * 3, hours=user_id)
        token = hashlib.sha256(f"{seed}:{user_id}:{n}".encode()).hexdigest()[:40]
        rows.append({"user_id": user_id, "token": token, "at": started, "expires": started + timedelta(days=30)})
    if rows:
        conn.execute(
            text(
                "INSERT INTO sessions (user_id, token, created_at, expires_at) VALUES (:user_id, :token, :at, :expires)"
            ),
            rows,
        )
    return len(rows)


def insert_sample_rows(database: Path | str, seed: str, now: datetime | None = None) -> dict[str, int]:
    """Fill users (two on the enterprise plan), sessions, segments and feature_flags (a SQLite path or a URL)."""
    now = _naive(now or datetime.now(UTC))
    engine = _connected(database)
    try:
        with engine.begin() as conn:
            times = [now - timedelta(days=60 - 5 * i, hours=i) for i in range(1, len(USERS) + 1)]
            ids = _add_users(conn, USERS, times)
            enterprise = [{"email": email} for email in ENTERPRISE]
            conn.execute(text("UPDATE users SET plan = 'enterprise' WHERE email = :email"), enterprise)
            sessions = sum(
                _add_sessions(conn, seed, ids[email], count, now)
                for (_, email), count in zip(USERS, SESSIONS_PER_USER, strict=True)
            )
            conn.execute(
                text("INSERT INTO segments (name, description, rule, created_at) VALUES (:name, :text, :rule, :at)"),
                [
                    {"name": name, "text": about, "rule": rule, "at": now - timedelta(days=20 - 2 * i)}
                    for i, (name, about, rule) in enumerate(SEGMENTS)
                ],
            )
            conn.execute(
                text(
                    "INSERT INTO feature_flags (name, enabled, description, updated_at) "
                    "VALUES (:name, :enabled, :text, :at)"
                ),
                [
                    {"name": name, "enabled": on, "text": about, "at": now - timedelta(days=3)}
                    for name, on, about in FLAGS
                ],
            )
    finally:
        engine.dispose()
    return {"users": len(USERS), "sessions": sessions, "segments": len(SEGMENTS), "feature_flags": len(FLAGS)}


def add_newer_signups(database: Path | str, seed: str, now: datetime | None = None) -> dict[str, int]:
    """Three more users, with a session each, signed up just now: the change between two demo backups."""
    now = _naive(now or datetime.now(UTC))
    engine = _connected(database)
    try:
        with engine.begin() as conn:
            ids = _add_users(conn, NEWER_USERS, [now - timedelta(minutes=3 - i) for i in range(len(NEWER_USERS))])
            sessions = sum(_add_sessions(conn, f"{seed}:newer", ids[email], 1, now) for _, email in NEWER_USERS)
    finally:
        engine.dispose()
    return {"users": len(NEWER_USERS), "sessions": sessions}
