"""Alembic environment for the demo app.

The database URL comes from `flask db …` (the app's own settings), else from
DATABASE_URL in the environment, else from the .env file beside the app.
"""

import os
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = None


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if url:
        return url
    env_file = Path(__file__).resolve().parent.parent / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key.removeprefix("export ").strip() == "DATABASE_URL":
                return value.strip().strip("'\"")
    raise RuntimeError("set DATABASE_URL (e.g. sqlite:////srv/app/data/app.db) or add it to the app's .env file")


def sqlalchemy_url(url: str) -> str:
    """postgresql://… driven by psycopg 3 (SQLAlchemy's default PostgreSQL driver is psycopg2)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def run_migrations_offline() -> None:
    context.configure(url=sqlalchemy_url(database_url()), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(database_url()), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
