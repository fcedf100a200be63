"""Review: what the plain-SQL guard lets through to psql."""

from __future__ import annotations

import io

import pytest

from app.backups.sqlguard import guard

PASSED_BUT_ACT_OUTSIDE = [
    b"SELECT 1; DROP DATABASE shop WITH (FORCE);\n",  # psql splits at ';' and runs the DROP on its own
    b"SELECT 1; \\connect shop\n",  # a meta-command after a statement on the same line
    b"/* x */ DROP DATABASE shop;\n",  # a comment first
    b"CREATE FUNCTION f() RETURNS void AS $$\nCOPY t FROM stdin;\n$$ LANGUAGE sql;\n\\connect shop\n",
    b"ALTER ROLE app PASSWORD 'x';\n",  # cluster-wide, not one database
]


@pytest.mark.parametrize("sql", PASSED_BUT_ACT_OUTSIDE)
def test_the_guard_refuses_sql_acting_outside_the_scratch(sql):
    out = io.BytesIO()
    assert guard(io.BytesIO(sql), out) is not None, f"passed to psql: {sql!r}"


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_plain_backup_cannot_drop_live_with_a_statement_after_another(app, runner, data_target, pg_server):
    import subprocess

    from tests.backups.conftest import RECIPIENT
    from tests.backups.test_runbooks import backup_now  # noqa: F401
    from tests.deployments.test_runbooks import log_text, run

    live = data_target.url.rsplit("/", 1)[1]
    dump = subprocess.run([str(pg_server.bin / "pg_dump"), "--dbname", data_target.url], capture_output=True, check=True)
    body = dump.stdout + f'SELECT 1; DROP DATABASE "{live}" WITH (FORCE);\n'.encode()
    out = io.BytesIO()
    data_target.home.encrypt(body, out, [RECIPIENT])
    data_target.backup_dir.mkdir(exist_ok=True)
    name = "backup_20240101_000000.sql.gpg"
    (data_target.backup_dir / name).write_bytes(out.getvalue())

    job, view = run(app, "verify_backup", data_target.name, backup=name)
    print("verify:", job.state, job.result)
    assert live in data_target.databases(), "a verify_backup of a foreign plain file dropped the live database"
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    print("restore:", job.state, job.result)
    assert live in data_target.databases(), f"the live database {live} was dropped by a restore: {job.result}"
