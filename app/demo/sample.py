"""Sample rows for a demo app's database, inserted after its migrations ran to head."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

USERS = (
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Alan Turing", "alan@example.com"),
    ("Katherine Johnson", "katherine@example.com"),
    ("Edsger Dijkstra", "edsger@example.com"),
    ("Barbara Liskov", "barbara@example.com"),
    ("Donald Knuth", "donald@example.com"),
    ("Margaret Hamilton", "margaret@example.com"),
    ("Ken Thompson", "ken@example.com"),
    ("Frances Allen", "frances@example.com"),
    ("Dennis Ritchie", "dennis@example.com"),
    ("Radia Perlman", "radia@example.com"),
)

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

SESSIONS_PER_USER = (3, 1, 2, 0, 1, 2, 1, 0, 2, 1, 1, 2)  # 16 sessions


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def insert_sample_rows(db_path: Path, seed: str, now: datetime | None = None) -> dict[str, int]:
    """Fill users, sessions, segments and feature_flags; returns the row count of each."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO users (id, email, name, created_at) VALUES (?, ?, ?, ?)",
            [
                (i, email, name, _stamp(now - timedelta(days=60 - 5 * i, hours=i)))
                for i, (name, email) in enumerate(USERS, 1)
            ],
        )
        sessions = []
        for user_id, count in enumerate(SESSIONS_PER_USER, 1):
            for n in range(count):
                started = now - timedelta(days=n * 3, hours=user_id)
                token = hashlib.sha256(f"{seed}:{user_id}:{n}".encode()).hexdigest()[:40]
                sessions.append((user_id, token, _stamp(started), _stamp(started + timedelta(days=30))))
        conn.executemany("INSERT INTO sessions (user_id, token, created_at, expires_at) VALUES (?, ?, ?, ?)", sessions)
        conn.executemany(
            "INSERT INTO segments (name, description, rule, created_at) VALUES (?, ?, ?, ?)",
            [
                (name, text, rule, _stamp(now - timedelta(days=20 - 2 * i)))
                for i, (name, text, rule) in enumerate(SEGMENTS)
            ],
        )
        conn.executemany(
            "INSERT INTO feature_flags (name, enabled, description, updated_at) VALUES (?, ?, ?, ?)",
            [(name, int(on), text, _stamp(now - timedelta(days=3))) for name, on, text in FLAGS],
        )
    conn.close()
    return {"users": len(USERS), "sessions": len(sessions), "segments": len(SEGMENTS), "feature_flags": len(FLAGS)}
