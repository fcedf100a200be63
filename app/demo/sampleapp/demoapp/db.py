"""The database: one SQLAlchemy engine per app, a fresh connection per request (SQLite or PostgreSQL)."""

import sqlite3
from urllib.parse import quote

from flask import Flask, current_app
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool


def sqlalchemy_url(url: str) -> str:
    """postgresql://… as the app's .env writes it (and pg tools read it), driven by psycopg 3."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        # Open the existing file only: a missing database is an error, never a new empty one.
        return create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, check_same_thread=False),
            poolclass=NullPool,
        )
    return create_engine(sqlalchemy_url(url), poolclass=NullPool)


def init_app(app: Flask) -> None:
    app.extensions["demo_engine"] = make_engine(app.config["DATABASE_URL"])


def engine() -> Engine:
    return current_app.extensions["demo_engine"]
