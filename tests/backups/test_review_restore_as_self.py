"""Review of the restore test filled as Rewind's own user (app/backups/restore.py, `as_self`)."""

from __future__ import annotations

import psycopg
import pytest

from app.backups.catalog import Catalog
from app.backups.restore import restore_scratch
from app.backups.setup import setup_of
from app.targets import registry
from tests.backups.test_restore_roles import _not_the_owner, _role
from tests.deployments.test_runbooks import log_text, run
from tests.support.sinks import Lines


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_review_a_test_copy_filled_as_rewind_s_user_keeps_live_s_connect_restrictions(app, runner, data_target):
    """Live lets only named roles connect; its test copy (production's data) must not let every role in.

    Filled as Rewind's own user, the copy is made without live's ACL (`acl=None`), i.e. PUBLIC may CONNECT."""
    name, _, rewind_user = _not_the_owner(app, data_target)
    stranger, _ = _role(data_target, "stranger")
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute(f'REVOKE ALL ON DATABASE "{live}" FROM PUBLIC')
    data_target.execute(f'GRANT CONNECT ON DATABASE "{live}" TO {rewind_user}')
    scratch = "review_as_self_scratch"
    with app.app_context():
        setup = setup_of(registry.current().open(data_target.name))
        restore_scratch(setup, setup.catalog.get(name), scratch, Lines(), settings=False)
    try:
        with psycopg.connect(data_target.pg_url) as conn:
            may = dict(
                conn.execute(
                    "SELECT datname, has_database_privilege(%s, datname, 'CONNECT') FROM pg_database "
                    "WHERE datname IN (%s, %s)",
                    (stranger, live, scratch),
                ).fetchall()
            )
    finally:
        with psycopg.connect(data_target.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
    assert may[live] is False
    assert may[scratch] is False, f"{stranger} may connect to the test copy of {live}, as it may not to {live}"


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_review_a_test_copy_filled_as_rewind_s_user_gets_live_s_search_path(app, runner, data_target):
    """Live finds its key tables through its own search_path (ALTER DATABASE … SET): a good backup must pass.

    Filled as Rewind's own user, the copy is Rewind's: it may give it live's database-wide settings. They are
    checked against live instead (which Rewind, not its owner, may not alter), refused, and the copy goes without
    them: its key tables are not found, and a good backup fails its restore test."""
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute("CREATE SCHEMA shop")
    for table in ("user", "orders"):
        data_target.execute(f'ALTER TABLE public."{table}" SET SCHEMA shop')
    data_target.execute(f'ALTER DATABASE "{live}" SET search_path = shop, public')
    data_target.execute(f'ALTER DATABASE "{live}" SET log_statement = none')  # superuser-only: not for Rewind's
    name, _, _ = _not_the_owner(app, data_target)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert "user 20, orders 20" in Catalog(data_target.backup_dir).get(name).restore_tested["detail"]
    assert "the test copy goes without `ALTER DATABASE" in text and "log_statement" in text  # said, not fatal
