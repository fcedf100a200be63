"""Shared fixtures: real ops databases (SQLite files and a PostgreSQL server this session starts)."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from app.auth import models as auth_models
from app.auth.roles import Role
from tests.support import gpg as gpg_support
from tests.support.apps import PostgresTemplate, SqliteTemplate, add_role_users, build_app, login
from tests.support.postgres import PostgresUnavailable, TempPostgres

# The suite makes and signs in thousands of throwaway accounts: scrypt's 0.1 s a hash would be minutes of it.
# Sign-in still runs the real check, against hashes made this cheap way. Servers and CLIs the tests start as
# processes keep the real method (tests/auth/test_passwords.py).
auth_models.HASH_METHOD = "pbkdf2:sha256:1"

TARGETS = """\
[targets.staging.repo]
path = "repos/staging"

[targets.production]
protected = true

[targets.production.repo]
path = "repos/production"
"""


def pytest_collection_finish(session: pytest.Session) -> None:
    """The suite is bound by CPU, and a worker spent a fifth of its own in the garbage collector: everything
    imported and collected so far lives to the end anyway, so it is moved out of the collector's sight, and the
    young generation is collected a fourteenth as often (each test makes and drops an app's worth of objects)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll until predicate() is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"gave up after {timeout} s waiting for {getattr(predicate, '__name__', 'a condition')}")


@pytest.fixture(scope="session")
def locked_home():
    """A real GnuPG home whose key has a passphrase (tests.support.gpg.PASSPHRASE); stop its agent to forget it."""
    with gpg_support.locked_home() as home:
        yield home


@pytest.fixture
def runner(app):
    """This app's in-process job runner, as gunicorn would start it."""
    from app.jobs.engine import engine

    running = engine(app).start_runner()
    yield running
    running.stop(wait=True)


@pytest.fixture(scope="session")
def pg_server():
    try:
        # No autovacuum: a table's statistics change only when a test changes them (tests/backups/test_built_counts.py
        # asks whether a restore's index builds still hold a table's count, which an autovacuum ANALYZE ends).
        server = TempPostgres("autovacuum=off").start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    server.stop()


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path: gpg-agent's sockets live in a GnuPG home, and socket
    paths stop at 107 bytes, which pytest's own folders (longer still under xdist) can pass."""
    root = Path(tempfile.mkdtemp(prefix="rw-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def sqlite_users_template(tmp_path_factory):
    """The same, with the three role accounts already made (password hashing is slow on purpose)."""
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-users-template"), seed=add_role_users)


@pytest.fixture(scope="session")
def pg_template(pg_server, tmp_path_factory):
    return PostgresTemplate(pg_server, tmp_path_factory.mktemp("pg-template"))


@pytest.fixture
def app(request, tmp_path, sqlite_template):
    """A migrated app on SQLite; tests parametrised with `ops_db` may ask for PostgreSQL."""
    kind = getattr(request, "param", "sqlite")
    if kind == "postgresql":
        url = request.getfixturevalue("pg_template").new_url(tmp_path)
    elif "users" in request.fixturenames:
        url = request.getfixturevalue("sqlite_users_template").new_url(tmp_path)
    else:
        url = sqlite_template.new_url(tmp_path)
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "rewind.toml").write_text(TARGETS)
    application = build_app(instance, url, REWIND_RUNBOOKS="tests.support.runbooks")
    yield application
    if (monitor := application.extensions["rewind"].started_health) is not None:
        monitor.stop()  # else its thread probes this torn-down app's targets for the rest of the session
    application.extensions["rewind"].bus.close()
    with application.app_context():
        from app.extensions import db

        db.session.remove()
        db.engine.dispose()
    if (instance / "gpg").is_dir():  # Rewind's own GnuPG home (env file versions): its agent outlives the test
        from app.envconfig import keys

        keys.gpg_home(instance).stop_agent()


both_databases = pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def users(app):
    """One account per role, named after it, all with the same password."""
    with app.app_context():
        from sqlalchemy import select

        from app.auth.models import User
        from app.extensions import db

        existing = {u.name: u.id for u in db.session.scalars(select(User))}
    if all(role.label in existing for role in Role):
        return {role: existing[role.label] for role in Role}
    return add_role_users(app)


@pytest.fixture
def as_role(app, users):
    """A signed-in test client for a role name."""

    def signed_in(role: Role):
        c = app.test_client()
        response = login(c, role.label)
        assert response.status_code == 302, response.get_data(as_text=True)
        return c

    return signed_in
