"""A live database using ICU keeps ICU (and its locale) through a restore: the scratch copy is made like it."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from app.targets.dbadmin import Postgres
from app.targets.environment import inherited_env
from tests.backups.conftest import DataTarget, _fill, serving
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run
from tests.support.targets import make_code_target

ICU_LOCALE = "sv-SE"
NAMES = ["zeta", "Beta", "alpha", "örn", "Östen"]


def _locale(pg_url: str, dbname: str) -> tuple[str, str | None]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT datlocprovider::text, daticulocale FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()


def _sorted_names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute('SELECT name FROM "user" WHERE id > 100 ORDER BY name')]


def _icu_database(pg_server, name: str) -> str:
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'").fetchone()[0] > 0, (
            "the test server was built without ICU"
        )
        conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{ICU_LOCALE}'")
    return pg_server.url(name)


@pytest.fixture
def icu_target(app, tmp_path, gpg_homes, pg_server):
    """A running app whose PostgreSQL database sorts by ICU's Swedish rules, not the server's libc locale."""
    name = f"shop_icu_{uuid.uuid4().hex[:8]}"
    url = _icu_database(pg_server, name)
    target = DataTarget(
        make_code_target(tmp_path / "t"), "postgresql", url, tmp_path / "backups", gpg_homes[0], pg_url=pg_server.url()
    )
    _fill(target)
    for i, who in enumerate(NAMES, start=101):
        target.execute('INSERT INTO "user" VALUES (?, ?, ?)', (i, who, "2020-01-01 00:00:00+00"))
    with serving(app, target):
        yield target


def test_a_copy_made_like_an_icu_database_has_its_provider_and_locale(pg_server):
    live = f"shop_icu_{uuid.uuid4().hex[:8]}"
    _icu_database(pg_server, live)
    db = Postgres(pg_server.url(live), inherited_env())
    db.create(f"{live}_restore_x", like=live)
    assert _locale(pg_server.url(), f"{live}_restore_x") == ("i", ICU_LOCALE)
    db.drop(f"{live}_restore_x")
    plain = f"shop_libc_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(plain)
    db.create(f"{plain}_restore_x", like=plain)  # libc stays libc
    assert _locale(pg_server.url(), f"{plain}_restore_x") == ("c", None)
    db.drop(f"{plain}_restore_x")


def test_an_icu_live_database_is_still_icu_and_sorts_the_same_after_a_restore(app, runner, icu_target):
    live = icu_target.url.rsplit("/", 1)[1]
    order = _sorted_names(icu_target.url)
    assert order == ["alpha", "Beta", "zeta", "örn", "Östen"]  # ICU's Swedish: case-blind, ö after z
    before = icu_target.snapshot()
    name = backup_now(app, icu_target)

    job, view = run(app, "verify_backup", icu_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", (job.result, log_text(view))

    job, view = run(app, "restore_backup", icu_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert icu_target.snapshot() == before
    assert _locale(icu_target.pg_url, live) == ("i", ICU_LOCALE)  # the restored copy, now live
    assert _sorted_names(icu_target.url) == order
    (pre,) = copies(icu_target)
    assert _locale(icu_target.pg_url, pre) == ("i", ICU_LOCALE)
