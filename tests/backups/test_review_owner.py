"""Review: the application's own role after a restore done by Rewind's (different) database user."""

from __future__ import annotations

import psycopg
import pytest

from tests.backups.test_runbooks import backup_now
from tests.deployments.test_runbooks import log_text, run


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_the_app_role_can_read_its_tables_after_a_restore(app, runner, data_target):
    role = "rev_app_" + data_target.url.rsplit("_", 1)[1]
    data_target.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute(f'ALTER DATABASE "{live}" OWNER TO {role}')
    for table in ("user", "orders", "alembic_version"):
        data_target.execute(f'ALTER TABLE "{table}" OWNER TO {role}')
    app_url = data_target.url.replace("://rewind@", f"://{role}:pw@")
    with psycopg.connect(app_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 20

    name = backup_now(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    with psycopg.connect(data_target.pg_url) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (live,)
        ).fetchone()[0]
    print("live database owner after the restore:", owner)
    with psycopg.connect(app_url) as conn:
        conn.execute("SELECT count(*) FROM orders")  # the application's own query
