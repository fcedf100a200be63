"""Review of the restore test filled as Rewind's own user (app/backups/restore.py, `as_self`)."""

from __future__ import annotations

import psycopg
import pytest

from app.backups.restore import restore_scratch
from app.backups.setup import setup_of
from app.targets import registry
from tests.backups.test_restore_roles import _not_the_owner, _role
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
