"""The database's own settings and privileges, which a dump without --create leaves out, survive a restore."""

from __future__ import annotations

import secrets

import psycopg
import pytest

from app.targets.dbadmin import split_setting_list
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run


def _role(data_target, prefix: str) -> tuple[str, str]:
    role = f"{prefix}_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    data_target.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    return role, password


def _config(data_target, live: str) -> tuple[list[tuple], list[tuple]]:
    """(settings as (role, entry), grants as (grantee, privilege, grantable)) of the database named `live`."""
    with psycopg.connect(data_target.pg_url) as conn:
        settings = conn.execute(
            "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*'), c FROM pg_db_role_setting s "
            "JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c WHERE d.datname = %s ORDER BY 1, 2",
            (live,),
        ).fetchall()
        grants = conn.execute(
            "SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC'), a.privilege_type, a.is_grantable "
            "FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1, 2",
            (live,),
        ).fetchall()
    return settings, grants


def _as(data_target, role: str, password: str) -> str:
    return data_target.url.replace("://rewind@", f"://{role}:{password}@")


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_settings_and_privileges_of_the_live_database_survive_a_restore_and_its_undo(app, runner, data_target):
    live = data_target.url.rsplit("/", 1)[1]
    app_role, app_password = _role(data_target, "shop_app")
    reporter, reporter_password = _role(data_target, "reporter")
    stranger, stranger_password = _role(data_target, "stranger")
    for statement in (
        f'ALTER DATABASE "{live}" SET search_path TO "$user", public, "odd, name"',
        f"ALTER DATABASE \"{live}\" SET statement_timeout = '5min'",
        f'ALTER DATABASE "{live}" SET "shop.greeting" = \'it\'\'s "quoted"\'',
        f"ALTER ROLE {app_role} IN DATABASE \"{live}\" SET work_mem = '8MB'",
        f'ALTER ROLE {app_role} IN DATABASE "{live}" SET search_path TO public',
        f'REVOKE CONNECT, TEMPORARY ON DATABASE "{live}" FROM PUBLIC',
        f'GRANT CONNECT ON DATABASE "{live}" TO {reporter}',
        f'GRANT CONNECT, CREATE ON DATABASE "{live}" TO {app_role} WITH GRANT OPTION',
    ):
        data_target.execute(statement)
    before = _config(data_target, live)
    assert len(before[0]) == 5 and ("PUBLIC", "CONNECT", False) not in before[1]

    name = backup_now(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert "with 5 setting(s) of" in log_text(view) and "its privileges (" in log_text(view)
    (pre,) = copies(data_target)
    assert _config(data_target, live) == before  # the restored copy under the live name
    with psycopg.connect(_as(data_target, reporter, reporter_password)) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5min",)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public, "odd, name"',)
        assert conn.execute("SHOW shop.greeting").fetchone() == ('it\'s "quoted"',)
    with psycopg.connect(_as(data_target, app_role, app_password)) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(_as(data_target, stranger, stranger_password)).close()

    undo, view = run(app, "undo_restore", data_target.name, pre_restore=pre)
    assert undo.state == "succeeded", (undo.result, log_text(view))
    assert _config(data_target, live) == before


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_setting_rewind_may_not_copy_is_refused_in_the_check_step_before_anything_is_made(app, runner, data_target):
    """Rewind's user may act as the owner but not set another role's defaults: refused with the way out."""
    live = data_target.url.rsplit("/", 1)[1]
    owner, _ = _role(data_target, "shop_owner")
    other, _ = _role(data_target, "shop_reader")
    limited, password = _role(data_target, "rewind_limited")
    data_target.execute(f"ALTER ROLE {limited} CREATEDB")
    data_target.execute(f"GRANT {owner} TO {limited}")
    data_target.execute(f'ALTER DATABASE "{live}" OWNER TO {owner}')
    for table in ("user", "orders", "alembic_version"):
        data_target.execute(f'ALTER TABLE "{table}" OWNER TO {owner}')
    data_target.execute(f"ALTER ROLE {other} IN DATABASE \"{live}\" SET statement_timeout = '1min'")
    name = backup_now(app, data_target)
    before = data_target.snapshot()

    from app.jobs.engine import current_targets
    from tests.support.targets import write_targets_file

    write_targets_file(app, data_target.toml().replace(data_target.url, _as(data_target, limited, password)))
    with app.app_context():
        assert current_targets().config(data_target.name).database.url.startswith(f"postgresql://{limited}:")
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert view.steps[0].state == "failed" and view.steps[1].state == "not_run"
    assert f"`ALTER ROLE {other} IN DATABASE {live} SET statement_timeout = 1min`" in job.result, job.result
    assert f"{limited} may not give a copy of {live} its setting" in job.result, job.result
    assert f"ALTER ROLE {other} IN DATABASE {live} RESET statement_timeout" in job.result, job.result
    assert copies(data_target) == [] and data_target.snapshot() == before
    assert _config(data_target, live)[0] == [(other, "statement_timeout=1min")]  # the dry run changed nothing

    # a restore test's copy is dropped at its end: it does not need the settings, and the backup stays good
    tested, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert tested.state == "succeeded", (tested.result, log_text(view))
    assert copies(data_target) == []


@pytest.mark.parametrize(
    ("stored", "names"),
    [
        ('"$user", public', ["$user", "public"]),
        ('public,"odd, name" , "say ""hi"""', ["public", "odd, name", 'say "hi"']),
        ('""', [""]),
        ("a", ["a"]),
    ],
)
def test_a_list_setting_splits_as_the_server_stores_it(stored, names):
    assert split_setting_list(stored) == names


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_restore_test_finds_the_key_tables_where_the_live_database_s_search_path_does(app, runner, data_target):
    """The application's tables in their own schema, found through the database's search_path: a good backup."""
    live = data_target.url.rsplit("/", 1)[1]
    data_target.execute("CREATE SCHEMA shop")
    for table in ("user", "orders", "alembic_version"):
        data_target.execute(f'ALTER TABLE "{table}" SET SCHEMA shop')
    data_target.execute(f'ALTER DATABASE "{live}" SET search_path TO shop')
    name = backup_now(app, data_target)

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", (job.result, log_text(view))
    assert "user 20, orders 20; revision ab12cd34ef56" in job.result, job.result
    assert copies(data_target) == [] and _config(data_target, live)[0] == [("*", "search_path=shop")]


def test_a_fix_to_paste_quotes_the_names_that_need_it():
    from app.targets.dbadmin import Setting

    plain = Setting(None, "statement_timeout", "1min")
    assert plain.words("shop") == "ALTER DATABASE shop SET statement_timeout = 1min"
    odd = Setting('Report "team"', "search_path", "app")
    assert odd.reset("Shop-1") == 'ALTER ROLE "Report ""team""" IN DATABASE "Shop-1" RESET search_path'
