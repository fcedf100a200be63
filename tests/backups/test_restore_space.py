"""The space check before the scratch copy: when the free space cannot be read, the check step says so and why."""

from __future__ import annotations

import secrets

import psycopg
import pytest

from app.targets.dbadmin import Postgres, SpaceUnknown
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run
from tests.support.ports import free_port
from tests.support.targets import write_targets_file


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_free_space_the_server_will_not_tell_is_said_in_the_check_step_and_the_restore_goes_on(
    app, runner, data_target
):
    """Rewind's user owns the database but may not read data_directory (no pg_read_all_settings)."""
    live = data_target.url.rsplit("/", 1)[1]
    role, password = f"shop_owner_{secrets.token_hex(4)}", secrets.token_hex(8)
    data_target.execute(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
    data_target.execute(f'ALTER DATABASE "{live}" OWNER TO {role}')
    for table in ("user", "orders", "alembic_version"):
        data_target.execute(f'ALTER TABLE "{table}" OWNER TO {role}')
    name = backup_now(app, data_target)
    write_targets_file(
        app,
        data_target.toml().replace(data_target.url, data_target.url.replace("://rewind@", f"://{role}:{password}@")),
    )
    data_target.execute("DELETE FROM orders WHERE id > 10")

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    (said,) = [line for line in log_text(view).splitlines() if "free space" in line]
    assert said.startswith("  ! the free space on the data directory of "), said
    assert f"could not be read: the server does not tell {role} where its data directory is" in said, said
    assert "pg_read_all_settings" in said and "the restore goes on without the space check" in said, said
    assert f"to have it checked: GRANT pg_read_all_settings TO {role}" in said, said
    assert len(data_target.rows("orders")) == 20 and len(copies(data_target)) == 1

    data_target.execute(f"GRANT pg_read_all_settings TO {role}")  # the fix it names: now the space is checked
    tested, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert tested.state == "succeeded", (tested.result, log_text(view))
    assert "iB free on the data directory of " in log_text(view), log_text(view)
    assert "could not be read" not in log_text(view)


def test_a_server_on_another_host_says_its_disks_are_not_seen_from_here():
    with pytest.raises(SpaceUnknown) as unknown:
        Postgres("postgresql://rewind@db.example.invalid/shop", {}).data_directory_free()
    assert (
        unknown.value.message
        == "the server is on db.example.invalid, not on this host: its disks are not seen from here"
    )


def test_a_server_that_refuses_the_connection_is_said_to_and_no_grant_is_advised():
    port = free_port()  # nothing listens there
    with pytest.raises(SpaceUnknown) as unknown:
        Postgres(f"postgresql://rewind@127.0.0.1:{port}/shop", {}).data_directory_free()
    assert unknown.value.message.startswith(
        f"could not connect: cannot connect to database 'postgres' on 127.0.0.1:{port}"
    )
    assert "GRANT" not in unknown.value.message and "GRANT" not in unknown.value.fix
    assert unknown.value.fix == "check database.url (host, port, user, password) and that the server is running"


def test_a_login_the_server_refuses_is_said_to_and_no_grant_is_advised(pg_server):
    nobody = f"nobody_{secrets.token_hex(4)}"  # no such role: the server refuses the login itself
    url = pg_server.url().replace("://rewind@", f"://{nobody}:wrong@")
    with pytest.raises(SpaceUnknown) as unknown:
        Postgres(url, {}).data_directory_free()
    assert unknown.value.message.startswith("could not connect: "), unknown.value.message
    assert f'role "{nobody}" does not exist' in unknown.value.message
    assert "GRANT" not in unknown.value.message and "GRANT" not in unknown.value.fix


def test_a_user_without_the_setting_s_privilege_is_advised_the_grant(pg_server):
    role = f"plain_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    with pytest.raises(SpaceUnknown) as unknown:
        Postgres(pg_server.url().replace("://rewind@", f"://{role}@"), {}).data_directory_free()
    assert unknown.value.message.startswith(f"the server does not tell {role} where its data directory is")
    assert "could not connect" not in unknown.value.message
    assert unknown.value.fix == f"GRANT pg_read_all_settings TO {role}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"GRANT pg_read_all_settings TO {role}")
    assert Postgres(pg_server.url().replace("://rewind@", f"://{role}@"), {}).data_directory_free() > 0
