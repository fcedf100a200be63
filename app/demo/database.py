"""The demo app's database (SQLite file or PostgreSQL database): built by its own Alembic migrations, then filled."""

from __future__ import annotations

from app.demo.command import run
from app.demo.sample import insert_sample_rows
from app.demo.target import DemoTarget, OnLine


def build_database(t: DemoTarget, say: OnLine) -> None:
    """`alembic upgrade head` in the app's folder with the app's environment, as its operator would run it."""
    ini = t.migrations_dir / "alembic.ini"
    output = run(
        [t.python, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        env=t.app_env(),
        cwd=t.app_dir,
        what=f"{t.name}: alembic upgrade head",
    )
    applied = sum("Running upgrade" in line for line in output.splitlines())
    counts = insert_sample_rows(t.database_url if t.pg_port else t.db_path, seed=f"{t.name}:{t.port}")
    rows = ", ".join(f"{n} {table}" for table, n in counts.items())
    where = f"PostgreSQL database {t.name} on 127.0.0.1:{t.pg_port}" if t.pg_port else str(t.db_path)
    say(f"{t.name}: database {where} migrated to head ({applied} revisions) with {rows}")
