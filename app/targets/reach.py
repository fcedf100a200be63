"""Can each part of a target be reached? Used by `targets check`; never raises."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from app.targets.git import GitError
from app.targets.target import Target


def reach(target: Target) -> list[tuple[str, bool, str]]:
    results = []
    try:
        repo = target.git()
        repo.check()
        results.append(("repo", True, f"{target.config.repo.branch} at {repo.head()[:12]}"))
    except GitError as exc:
        results.append(("repo", False, exc.message))
    if (check := target.health()) is not None:
        probe = check.probe(request_timeout_s=3)
        results.append(("health", probe.ok, str(probe)))
    if (database := target.config.database) is not None:
        results.append(("database", *database_reachable(database.url)))
    if (control := target.process()) is not None:
        status = control.status()
        running = {True: "running", False: "not running", None: "state unknown"}[status.running]
        results.append(("process", status.running is not False, f"{running} {status.note}".strip()))
    return results


def database_reachable(url: str) -> tuple[bool, str]:
    """Connect and run SELECT 1 (read-only for SQLite); never raises."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return False, f"{path} does not exist"
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=3) as conn:
                conn.execute("SELECT 1")
        except sqlite3.Error as exc:
            return False, str(exc)
        return True, f"sqlite {path}"
    try:
        with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return True, "postgresql reachable"
