"""A restore done by a database user other than the application's: the restored copy stays the application's."""

from __future__ import annotations

import io
import secrets
import subprocess
from dataclasses import replace

import psycopg
import pytest

from app.backups.catalog import Catalog
from app.backups.restore import RestoreFailed, check_owner, restore_scratch
from app.backups.setup import setup_of
from app.jobs.engine import current_targets
from app.targets.dbadmin import Postgres
from tests.backups.conftest import RECIPIENT
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run
from tests.support.sinks import Lines
from tests.support.targets import write_targets_file


def _role(data_target, prefix: str) -> tuple[str, str]:
    role = f"{prefix}_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    data_target.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    return role, password


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_the_application_role_owns_and_reads_its_tables_after_a_restore(app, runner, data_target):
    role, password = _role(data_target, "shop_app")
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute(f'ALTER DATABASE "{live}" OWNER TO {role}')
    for table in ("user", "orders", "alembic_version"):
        data_target.execute(f'ALTER TABLE "{table}" OWNER TO {role}')
    app_url = data_target.url.replace("://rewind@", f"://{role}:{password}@")

    name = backup_now(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))

    with psycopg.connect(data_target.pg_url) as conn:
        owner, encoding = conn.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s",
            (live,),
        ).fetchone()
    assert owner == role and encoding == "UTF8"
    with psycopg.connect(app_url) as conn:  # the application's own queries, as its own role
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 20
        conn.execute("INSERT INTO orders VALUES (1000, 1, 5)")
        tables = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"))
    assert set(tables.values()) == {role}


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_user_that_cannot_act_as_the_owner_is_refused_before_anything_is_made(app, data_target):
    owner, _ = _role(data_target, "shop_owner")
    rewind_user, password = _role(data_target, "rewind_limited")
    data_target.execute(f"ALTER ROLE {rewind_user} CREATEDB")
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute(f'ALTER DATABASE "{live}" OWNER TO {owner}')
    db = Postgres(data_target.url.replace("://rewind@", f"://{rewind_user}:{password}@"), {})
    with pytest.raises(RestoreFailed) as refused:
        check_owner(db)
    assert f"{live} belongs to {owner}" in refused.value.message
    assert refused.value.fix == f"GRANT {owner} TO {rewind_user}; or put {owner}'s login in database.url"
    data_target.execute(f"GRANT {owner} TO {rewind_user}")
    assert check_owner(db) == owner


def _plain_backup(data_target, pg_server) -> str:
    """The written procedure's `pg_dump db | gpg -e > backup_YYYYMMDD_HHMMSS.sql.gpg`: OWNER TO statements and all."""
    pg_dump = [str(pg_server.bin / "pg_dump"), "--dbname", data_target.url]
    dump = subprocess.run(pg_dump, capture_output=True, check=True)
    assert b" OWNER TO " in dump.stdout and b"ALTER DEFAULT PRIVILEGES FOR ROLE" in dump.stdout
    out = io.BytesIO()
    data_target.home.encrypt(dump.stdout, out, [RECIPIENT])
    data_target.backup_dir.mkdir(exist_ok=True)
    name = "backup_20240101_000000.sql.gpg"
    (data_target.backup_dir / name).write_bytes(out.getvalue())
    return name


def _not_the_owner(
    app, data_target, pg_server=None, *, test_as_own_user: bool = True, probe: bool = False
) -> tuple[str, str, str]:
    """Live belongs to a role Rewind's database user is no member of; the targets file says that user's login
    (and, with `test_as_own_user`, lets a restore test fill its copy as that user).

    The backup is made first, as the session's user (a plain one by pg_dump when `pg_server` is given); the
    owner also has default privileges and grants, which a dump carries and only a member of the owner's role may
    give back. `probe`: the owner's table also has an index on a function of the owner's that refuses to run as
    anyone else, as code in a backup could do anything else in that user's name.
    """
    owner, _ = _role(data_target, "shop_owner")
    reader, _ = _role(data_target, "reader")
    rewind_user, password = _role(data_target, "rewind_limited")
    data_target.execute(f"ALTER ROLE {rewind_user} CREATEDB")
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute(f'ALTER DATABASE "{live}" OWNER TO {owner}')
    for table in ("user", "orders", "alembic_version"):
        data_target.execute(f'ALTER TABLE "{table}" OWNER TO {owner}')
        data_target.execute(f'GRANT SELECT ON "{table}" TO {reader}, {rewind_user}')
    data_target.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT ON TABLES TO {reader}")
    if probe:
        data_target.execute(
            "CREATE FUNCTION probe(n bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
            f"IF current_user <> '{owner}' THEN RAISE EXCEPTION 'the backup''s code ran as %%', current_user; END IF; "
            "RETURN n; END $$"
        )
        data_target.execute(f"ALTER FUNCTION probe(bigint) OWNER TO {owner}")
        data_target.execute("CREATE INDEX orders_probed ON orders ((probe(id)))")  # built as the table's owner
    name = _plain_backup(data_target, pg_server) if pg_server else backup_now(app, data_target)
    limited = replace(data_target, url=data_target.url.replace("://rewind@", f"://{rewind_user}:{password}@"))
    write_targets_file(app, limited.toml(extra="test_as_own_user = true" if test_as_own_user else ""))
    return name, owner, rewind_user


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_restore_test_is_not_filled_as_rewind_s_own_user_unless_the_target_says_so(app, runner, data_target):
    """Filled as Rewind's user, the backup's code would run as that user: refused, and the fix says so."""
    name, owner, rewind_user = _not_the_owner(app, data_target, test_as_own_user=False, probe=True)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    said = f"{job.result}\n{log_text(view)}"
    assert job.state == "failed" and job.verification == "failed", said
    assert f"Rewind's database user {rewind_user} cannot act as {owner}" in said
    assert f"GRANT {owner} TO {rewind_user}" in said and "backups.test_as_own_user = true" in said
    assert "the test copy is filled as" not in said and "ran as" not in said  # nothing was made, nothing ran
    assert copies(data_target) == []
    assert Catalog(data_target.backup_dir).get(name).restore_tested["ok"] is False


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_with_the_opt_in_the_backup_s_code_runs_as_rewind_s_own_user(app, runner, data_target):
    """What the opt-in allows, shown: the owner's index function runs as Rewind's user in the test copy (and here
    refuses to, so the test fails and its copy is dropped)."""
    name, _, rewind_user = _not_the_owner(app, data_target, probe=True)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    said = f"{job.result}\n{log_text(view)}"
    assert job.state == "failed", said
    assert f"the backup's code ran as {rewind_user}" in said
    assert copies(data_target) == []


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_restore_test_fills_its_copy_as_rewind_s_own_user_when_it_cannot_act_as_the_owner(app, runner, data_target):
    name, owner, rewind_user = _not_the_owner(app, data_target)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert job.verification == "passed"
    assert f"cannot act as {owner}: the test copy is filled as {rewind_user} instead" in text
    assert f"GRANT {owner} TO {rewind_user}" in text  # what a real restore will need, said now
    tested = Catalog(data_target.backup_dir).get(name)
    assert tested.state == "verified" and tested.restore_tested["ok"] is True
    assert "user 20, orders 20" in tested.restore_tested["detail"]
    assert copies(data_target) == []  # the test copy was dropped


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_plain_sql_backup_s_restore_test_leaves_out_what_only_the_owner_may_run(app, runner, data_target, pg_server):
    name, _, rewind_user = _not_the_owner(app, data_target, pg_server)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert f"the test copy is filled as {rewind_user} instead" in text
    tested = Catalog(data_target.backup_dir).get(name)
    assert tested.restore_tested["ok"] is True and "user 20, orders 20" in tested.restore_tested["detail"]
    assert copies(data_target) == []


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_real_restore_still_refuses_when_rewind_s_user_cannot_act_as_the_owner(app, runner, data_target):
    before = data_target.snapshot()
    name, owner, rewind_user = _not_the_owner(app, data_target)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "failed", (job.result, text)
    said = f"{job.result}\n{text}"
    assert f"Rewind's database user {rewind_user} cannot act as {owner}" in said
    assert f"GRANT {owner} TO {rewind_user}; or put {owner}'s login in database.url" in said
    assert copies(data_target) == [] and data_target.snapshot() == before
    assert Catalog(data_target.backup_dir).get(name).restore_tested is None


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_test_copy_filled_as_rewind_s_user_keeps_live_s_connect_restrictions(app, runner, data_target):
    """Live lets only named roles connect; its test copy (production's data) must not let every role in.

    Filled as Rewind's own user, the copy is made without live's ACL (`acl=None`), i.e. PUBLIC may CONNECT."""
    name, _, rewind_user = _not_the_owner(app, data_target)
    stranger, _ = _role(data_target, "stranger")
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute(f'REVOKE ALL ON DATABASE "{live}" FROM PUBLIC')
    data_target.execute(f'GRANT CONNECT ON DATABASE "{live}" TO {rewind_user}')
    scratch = "as_self_scratch"
    with app.app_context():
        setup = setup_of(current_targets().open(data_target.name))
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
def test_a_test_copy_filled_as_rewind_s_user_gets_live_s_search_path(app, runner, data_target):
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


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_plain_backup_with_default_privileges_of_several_kinds_passes_its_restore_test(
    app, runner, data_target, pg_server
):
    _, owner, _ = _not_the_owner(app, data_target)
    app_role, _ = _role(data_target, "shop_app")
    data_target.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE "
        f"ON TABLES TO {app_role}"
    )
    name = _plain_backup(data_target, pg_server)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", (job.result, log_text(view))
    assert Catalog(data_target.backup_dir).get(name).restore_tested["ok"] is True
