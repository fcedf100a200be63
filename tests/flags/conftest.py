"""A real flags table in a real application database: a SQLite file, or a database on the session's PostgreSQL."""

from __future__ import annotations

import html
import itertools
import json
import re
import sqlite3
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db as ops_db
from app.targets.config import FlagColumns
from app.targets.flags import FlagTable
from tests.support.targets import write_targets_file

_counter = itertools.count(1)

TABLE = {
    "sqlite": """CREATE TABLE feature_flags (
        name VARCHAR(80) PRIMARY KEY,
        enabled BOOLEAN NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        team TEXT,
        CHECK (length(description) <= 40))""",
    "postgresql": """CREATE TABLE feature_flags (
        name VARCHAR(80) PRIMARY KEY,
        enabled BOOLEAN NOT NULL DEFAULT false,
        description TEXT NOT NULL DEFAULT '',
        updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        team TEXT,
        CHECK (length(description) <= 40))""",
}


class FlagDb:
    """The application's database, reached on a connection of its own: the "other writer" in tests."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url

    def connect(self):
        if self.kind == "sqlite":
            return sqlite3.connect(self.url[len("sqlite:///") :], isolation_level=None, timeout=10)
        return psycopg.connect(self.url, autocommit=True)

    def sql(self, text: str) -> str:
        return text.replace("%s", "?") if self.kind == "sqlite" else text

    def execute(self, text: str, args: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            cur = conn.execute(self.sql(text), args)
            return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def add(self, name: str, enabled: bool, description: str = "", team: str | None = None, at: datetime | None = None):
        self.execute(
            "INSERT INTO feature_flags (name, enabled, description, updated_at, team) VALUES (%s, %s, %s, %s, %s)",
            (name, enabled, description, self.stamp(at or datetime(2026, 1, 1)), team),
        )

    def stamp(self, at: datetime):
        return at.isoformat(sep=" ", timespec="microseconds") if self.kind == "sqlite" else at

    def states(self) -> dict[str, bool]:
        return {name: bool(on) for name, on in self.execute("SELECT name, enabled FROM feature_flags ORDER BY name")}

    def outside_change(self, name: str, enabled: bool, at: datetime) -> None:
        """The application (not Rewind) flips a flag and stamps it."""
        self.execute(
            "UPDATE feature_flags SET enabled = %s, updated_at = %s WHERE name = %s", (enabled, self.stamp(at), name)
        )

    def table(self, **columns) -> FlagTable:
        return FlagTable(self.url, "feature_flags", FlagColumns(**columns))


def refuse_at_commit(flagdb: FlagDb, events: str) -> None:
    """A deferred trigger that refuses the commit of any such change (PostgreSQL): the application says no late."""
    flagdb.execute(
        "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the application refuses this change'; END $$"
    )
    flagdb.execute(
        f"CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER {events} ON feature_flags "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
    )


def make_flag_db(kind: str, tmp_path, pg_server=None, create: bool = True) -> FlagDb:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / f'app-{next(_counter)}.db'}"
    else:
        url = pg_server.create_database(f"flagsapp_{next(_counter)}")
    db = FlagDb(kind, url)
    if create:
        db.execute(TABLE[kind])
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def flagdb(request, tmp_path) -> FlagDb:
    server = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    db = make_flag_db(request.param, tmp_path, server)
    db.add("checkout_v2", True, "The new checkout", team="payments")
    db.add("dark_mode", False, "Dark colours", team="web")
    db.add("search_beta", True, "The new search", team="web")
    return db


HTMX = {"HX-Request": "true"}


def targets_toml(url: str, tmp_path, **columns) -> str:
    cols = "".join(f'{k} = "{v}"\n' for k, v in columns.items())
    text = ""
    for name, protected in (("web", False), ("prod", True)):
        text += f"""
[targets.{name}]
protected = {str(protected).lower()}

[targets.{name}.repo]
path = "{tmp_path / "repo"}"

[targets.{name}.database]
url = "{url}"
flags_table = "feature_flags"
"""
        if cols:
            text += f"\n[targets.{name}.database.flags_columns]\n{cols}"
    return text


@pytest.fixture
def flag_app(app, flagdb, tmp_path):
    write_targets_file(app, targets_toml(flagdb.url, tmp_path, tag="team"))
    return app


def audit_rows(app, action: str) -> list[tuple[str, str, dict]]:
    with app.app_context():
        rows = ops_db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return [(r.actor_name, r.outcome, json.loads(r.details)) for r in rows]


def plan_page(client, query: str):
    return client.get(f"/targets/web/flags/restore?{query}", follow_redirects=True).get_data(as_text=True)


def seen_of(page: str) -> str:
    assert "Restore flags as of" in page, page
    found = re.search(r'name="seen" value="([^"]*)"', page)
    if found is None:  # a plan with nothing to change offers no form to confirm, and says so
        assert "there is nothing to restore" in page, page
        return "{}"
    return html.unescape(found.group(1))


def confirm_of(page: str) -> dict[str, str]:
    """What the plan page's confirming form carries of the plan: the changes seen and the table's fingerprint."""
    return {"seen": seen_of(page), "fingerprint": re.search(r'name="fingerprint" value="([0-9a-f]+)"', page).group(1)}
