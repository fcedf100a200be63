"""A target with a real database (PostgreSQL from the session's server, or SQLite), a real GnuPG home and app."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from app.jobs.engine import current_targets
from app.targets.gpg import GpgHome
from tests.support.gpg import LOCKED_RECIPIENT, PASSPHRASE
from tests.support.targets import CodeTarget, make_code_target, write_targets_file

RECIPIENT = "ops@example.invalid"
KEY_TABLES = ["user", "orders"]

SCHEMA = [
    'CREATE TABLE "user" (id integer PRIMARY KEY, name text NOT NULL, created_at {ts} NOT NULL)',
    "CREATE TABLE orders (id integer PRIMARY KEY, user_id integer NOT NULL, total integer NOT NULL)",
    "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('ab12cd34ef56')",
]


@pytest.fixture(scope="session")
def gpg_homes():
    """Two real GnuPG homes (short paths, for gpg-agent's sockets): the target's, and a stranger's."""
    root = Path(tempfile.mkdtemp(prefix="rwb-", dir="/tmp"))
    ours = GpgHome.create(root / "o")
    ours.generate_key("Ops", RECIPIENT)
    theirs = GpgHome.create(root / "t")
    theirs.generate_key("Stranger", "stranger@example.invalid")
    yield ours, theirs
    ours.stop_agent()
    theirs.stop_agent()
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class DataTarget:
    code: CodeTarget
    engine: str
    url: str
    backup_dir: Path
    home: GpgHome
    pg_url: str | None = None  # for reading the server's database list
    key_tables: list[str] | None = None  # the targets file's key_tables; KEY_TABLES unless said
    recipient: str = RECIPIENT
    backups_extra: str = ""  # more lines of its [backups] table (a passphrase)

    @property
    def name(self) -> str:
        return self.code.name

    def toml(self, *, protected: bool = False, reserve_mb: int = 1, extra: str = "") -> str:
        return (
            self.code.toml(protected=protected)
            + f"""
[targets.{self.name}.database]
url = "{self.url}"
key_tables = {json.dumps(self.key_tables or KEY_TABLES)}

[targets.{self.name}.backups]
dir = "{self.backup_dir}"
gpg_home = "{self.home.home}"
recipients = ["{self.recipient}"]
reserve_mb = {reserve_mb}
{extra}
""".replace("'", '"')
            + self.backups_extra
        )

    # --- the data, read and written as the application would -------------------------------

    def execute(self, statement: str, params=()) -> None:
        self.execute_all([(statement, params)])

    def execute_all(self, steps: list[tuple[str, tuple]]) -> None:
        """Statements over one connection: a connection each was half of a filled target's set-up."""
        if self.engine == "sqlite":
            with contextlib.closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as conn, conn:
                for statement, params in steps:
                    conn.execute(statement, params)
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement, params in steps:
                conn.execute(statement.replace("?", "%s"), params)

    def rows(self, table: str, url: str | None = None) -> list[tuple]:
        url = url or self.url
        query = f'SELECT * FROM "{table}" ORDER BY id'  # noqa: S608 - the test's own table names
        if self.engine == "sqlite":
            conn = sqlite3.connect(url.removeprefix("sqlite:///"))
            try:
                return conn.execute(query).fetchall()
            finally:
                conn.close()
        with psycopg.connect(url) as conn:
            return [tuple(str(v) if not isinstance(v, int) else v for v in row) for row in conn.execute(query)]

    def snapshot(self, url: str | None = None) -> dict[str, list[tuple]]:
        return {t: self.rows(t, url) for t in KEY_TABLES}

    def databases(self) -> list[str]:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            return sorted(r[0] for r in conn.execute("SELECT datname FROM pg_database"))

    def files(self) -> list[str]:
        return sorted(p.name for p in Path(self.url.removeprefix("sqlite:///")).parent.iterdir())


def _fill(target: DataTarget) -> None:
    ts = "text" if target.engine == "sqlite" else "timestamptz"
    steps = [(statement.format(ts=ts), ()) for statement in SCHEMA]
    for i in range(1, 21):
        steps.append(('INSERT INTO "user" VALUES (?, ?, ?)', (i, f"user {i}", "2020-01-01 00:00:00+00")))
        steps.append(("INSERT INTO orders VALUES (?, ?, ?)", (i, i, i * 100)))
    target.execute_all(steps)


@pytest.fixture(params=["postgresql", "sqlite"])
def data_target(request, app, tmp_path, gpg_homes):
    """A running app whose database is PostgreSQL (a fresh database in the session's server) or SQLite."""
    target = new_data_target(request, tmp_path, gpg_homes[0])
    with serving(app, target):
        yield target


def new_data_target(request, tmp_path: Path, home: GpgHome, **fields) -> DataTarget:
    """A filled database of the fixture's engine (request.param) for a target backed up with `home`."""
    code = make_code_target(tmp_path / "t")
    backup_dir = tmp_path / "backups"
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        name = f"shop_{uuid.uuid4().hex[:8]}"
        url = server.create_database(name)
        target = DataTarget(code, "postgresql", url, backup_dir, home, pg_url=server.url(), **fields)
    else:
        (tmp_path / "data").mkdir()
        target = DataTarget(code, "sqlite", f"sqlite:///{tmp_path / 'data' / 'shop.db'}", backup_dir, home, **fields)
    _fill(target)
    return target


@pytest.fixture(params=["postgresql", "sqlite"])
def locked_target(request, app, tmp_path, locked_home):
    """A running app whose backups are encrypted to a key with a passphrase, given in its targets file."""
    target = new_data_target(
        request,
        tmp_path,
        locked_home,
        recipient=LOCKED_RECIPIENT,
        backups_extra=f"passphrase = {json.dumps(PASSPHRASE)}\n",
    )
    with serving(app, target):
        yield target


@contextmanager
def serving(app, target: DataTarget) -> Iterator[DataTarget]:
    """The target in the targets file and its app running and healthy for the block; stopped after it."""
    write_targets_file(app, target.toml())
    with app.app_context():
        current_targets().open(target.name).process().start()
        assert current_targets().open(target.name).health().wait_healthy().ok, "the test app did not come up"
    try:
        yield target
    finally:
        with app.app_context():
            current_targets().open(target.name).process().stop()


DB_SERVER = """\
import http.server, json, sqlite3, sys

URL = "{url}"


def broken():
    \"\"\"The app refuses to serve a database holding the table broken_marker.\"\"\"
    try:
        if URL.startswith("sqlite:///"):
            conn = sqlite3.connect(URL[len("sqlite:///"):])
            try:
                found = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'broken_marker'")
                return bool(found.fetchone()[0])
            finally:
                conn.close()
        import psycopg
        with psycopg.connect(URL, connect_timeout=2) as conn:
            return conn.execute("SELECT to_regclass('broken_marker') IS NOT NULL").fetchone()[0]
    except Exception:
        return True


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = "broken" if broken() else "healthy"
        body = json.dumps({{"status": status}}).encode()
        self.send_response(200 if status == "healthy" else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
