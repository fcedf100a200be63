"""Feature flags, read from the feature_flags table on every request (flip one and the next page sees it)."""

from sqlalchemy import text

from .db import engine


def all_flags() -> list[tuple[str, bool]]:
    with engine().connect() as conn:
        rows = conn.execute(text("SELECT name, enabled FROM feature_flags ORDER BY name")).all()
    return [(name, bool(enabled)) for name, enabled in rows]


def is_enabled(name: str) -> bool:
    with engine().connect() as conn:
        value = conn.execute(text("SELECT enabled FROM feature_flags WHERE name = :name"), {"name": name}).scalar()
    return bool(value)
