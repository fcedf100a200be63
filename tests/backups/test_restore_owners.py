"""A database whose owner is not Rewind's user, whose application role was granted only some of it, with default
privileges and role settings: after a restore and its undo, everyone may do what they could before, no more."""

from __future__ import annotations

import secrets

import psycopg
import pytest

from tests.backups.shapes import change, contents, foreign_backup, privileges, shaped_target, write_as_the_app
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run
from tests.support.targets import write_targets_file


def _superuser(pg_server, *statements: str, dbname: str = "postgres") -> None:
    with psycopg.connect(pg_server.url(dbname), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _as(pg_server, url: str, role: str) -> str:
    return url.replace(f"://{pg_server.user}@", f"://{role}:{role}@")


class Roles:
    """The roles of an application: the owner (its migrations run as it) and the role it serves as."""

    def __init__(self) -> None:
        suffix = secrets.token_hex(3)
        self.owner, self.app = f"shop_owner_{suffix}", f"shop_app_{suffix}"


def _grant_the_app_some(pg_server, url: str, roles: Roles, dbname: str) -> None:
    """What a careful DBA gives the serving role: all it needs of the shop, only reading of billing."""
    _superuser(
        pg_server,
        f'GRANT CONNECT ON DATABASE "{dbname}" TO {roles.app}',
        f"SET ROLE {roles.owner}",
        f"GRANT USAGE ON SCHEMA billing TO {roles.app}",
        f'GRANT SELECT, INSERT, UPDATE ON "user", "Orders", events TO {roles.app}',
        f"GRANT SELECT ON billing.invoices, billing.revenue TO {roles.app}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {roles.app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {roles.owner} IN SCHEMA public GRANT SELECT ON TABLES TO {roles.app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {roles.owner} IN SCHEMA billing GRANT SELECT ON TABLES TO {roles.app}",
        "RESET ROLE",
        f"ALTER ROLE {roles.app} SET search_path = billing, public",
        dbname=dbname,
    )


def _the_app_can_do_what_it_could(pg_server, url: str, roles: Roles) -> None:
    with psycopg.connect(_as(pg_server, url, roles.app), autocommit=True) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("billing, public",)
        assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] > 0  # found through its search_path
        assert conn.execute('UPDATE "Orders" SET qty = qty WHERE id = 1').rowcount == 1
        conn.execute("INSERT INTO events (at, what) VALUES ('2024-03-03', 'the app writes')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM events")  # never granted
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO billing.audit (invoice_id, what) VALUES (1, 'x')")
    with psycopg.connect(_as(pg_server, url, roles.owner), autocommit=True) as conn:  # its migrations, as the owner
        conn.execute("CREATE TABLE billing.later (id serial PRIMARY KEY)")
    with psycopg.connect(_as(pg_server, url, roles.app), autocommit=True) as conn:  # default privileges at work
        assert conn.execute("SELECT count(*) FROM billing.later").fetchone() == (0,)
    with psycopg.connect(_as(pg_server, url, roles.owner), autocommit=True) as conn:
        conn.execute("DROP TABLE billing.later")


def _round_trip(app, pg_server, target, roles: Roles, made_by: str) -> str:
    """Backup, change, restore, undo, each checked; the restore's log."""
    before, granted = contents(target.url), privileges(target.url)
    name = backup_now(app, target) if made_by == "rewind" else foreign_backup(target, pg_server, made_by)
    change(target.url)
    changed, changed_grants = contents(target.url), privileges(target.url)

    job, view = run(app, "restore_backup", target.name, backup=name)
    restored = log_text(view)
    assert job.state == "succeeded", (job.result, restored)
    assert contents(target.url) == before
    assert privileges(target.url) == granted  # every owner and grant as backed up
    _the_app_can_do_what_it_could(pg_server, target.url, roles)
    with psycopg.connect(_as(pg_server, target.url, roles.owner), autocommit=True) as conn:
        assert write_as_the_app(conn, "after the restore")["user"] == 9

    (pre,) = copies(target)
    undo, view = run(app, "undo_restore", target.name, pre_restore=pre)
    assert undo.state == "succeeded", (undo.result, log_text(view))
    assert contents(target.url) == changed and privileges(target.url) == changed_grants
    _the_app_can_do_what_it_could(pg_server, target.url, roles)
    return restored


MADE_BY = pytest.mark.parametrize("made_by", ["rewind", "plain"])


@MADE_BY
def test_a_database_owned_by_the_application_s_owner_role_keeps_its_grants_through_restore_and_undo(
    app, runner, tmp_path, gpg_homes, pg_server, made_by
):
    roles = Roles()

    def prepare(dbname: str) -> str:
        _superuser(
            pg_server,
            f"CREATE ROLE {roles.owner} LOGIN PASSWORD '{roles.owner}'",
            f"CREATE ROLE {roles.app} LOGIN PASSWORD '{roles.app}'",
            f'ALTER DATABASE "{dbname}" OWNER TO {roles.owner}',
            f'REVOKE ALL ON DATABASE "{dbname}" FROM PUBLIC',
        )
        return roles.owner

    with shaped_target(app, tmp_path, gpg_homes, pg_server, prepare=prepare) as target:
        _grant_the_app_some(pg_server, target.url, roles, target.url.rsplit("/", 1)[1])
        _round_trip(app, pg_server, target, roles, made_by)


@MADE_BY
def test_as_a_login_that_is_no_superuser_but_may_act_as_the_owner_the_same_comes_back(
    app, runner, tmp_path, gpg_homes, pg_server, made_by
):
    """The login the security notes advise: CREATEDB and membership in the owner's role, never a superuser."""
    roles = Roles()
    limited = f"rewind_limited_{secrets.token_hex(3)}"

    def prepare(dbname: str) -> str:
        _superuser(
            pg_server,
            f"CREATE ROLE {roles.owner} LOGIN PASSWORD '{roles.owner}'",
            f"CREATE ROLE {roles.app} LOGIN PASSWORD '{roles.app}'",
            f"CREATE ROLE {limited} LOGIN PASSWORD '{limited}' CREATEDB",
            f"GRANT {roles.owner} TO {limited}",
            f'ALTER DATABASE "{dbname}" OWNER TO {roles.owner}',
            f'REVOKE ALL ON DATABASE "{dbname}" FROM PUBLIC',
        )
        return roles.owner

    with shaped_target(app, tmp_path, gpg_homes, pg_server, prepare=prepare) as target:
        _grant_the_app_some(pg_server, target.url, roles, target.url.rsplit("/", 1)[1])
        write_targets_file(app, target.toml().replace(target.url, _as(pg_server, target.url, limited)))
        said = _round_trip(app, pg_server, target, roles, made_by)
    # change() wrote a large object as the session's superuser: a plain dump says nothing of owners, so live's are said
    warned = f"! not known from the backup: in live, roles other than {roles.owner} own objects ({pg_server.user} owns"
    assert (warned in said) is (made_by == "plain"), said


@MADE_BY
def test_tables_owned_by_a_role_that_does_not_own_the_database_stay_its_own(
    app, runner, tmp_path, gpg_homes, pg_server, made_by
):
    """The DBA made the database (it is the superuser's); the application's migrations made the tables as its
    owner role. A restore must not give them to the database's owner: the role would lose what it owned."""
    roles = Roles()

    def prepare(dbname: str) -> str:
        _superuser(
            pg_server,
            f"CREATE ROLE {roles.owner} LOGIN PASSWORD '{roles.owner}'",
            f"CREATE ROLE {roles.app} LOGIN PASSWORD '{roles.app}'",
            f'GRANT CREATE ON DATABASE "{dbname}" TO {roles.owner}',
        )
        _superuser(pg_server, f"GRANT CREATE ON SCHEMA public TO {roles.owner}", dbname=dbname)
        return roles.owner

    with shaped_target(app, tmp_path, gpg_homes, pg_server, prepare=prepare) as target:
        _grant_the_app_some(pg_server, target.url, roles, target.url.rsplit("/", 1)[1])
        _round_trip(app, pg_server, target, roles, made_by)


@MADE_BY
def test_a_database_owned_by_one_role_whose_tables_another_role_made(
    app, runner, tmp_path, gpg_homes, pg_server, made_by
):
    """The database is the platform's role's (no superuser); the application's migrations ran as its own role."""
    roles = Roles()
    platform = f"platform_{secrets.token_hex(3)}"

    def prepare(dbname: str) -> str:
        _superuser(
            pg_server,
            f"CREATE ROLE {platform} LOGIN PASSWORD '{platform}' CREATEDB",
            f"CREATE ROLE {roles.owner} LOGIN PASSWORD '{roles.owner}'",
            f"CREATE ROLE {roles.app} LOGIN PASSWORD '{roles.app}'",
            f'ALTER DATABASE "{dbname}" OWNER TO {platform}',
            f'GRANT CREATE ON DATABASE "{dbname}" TO {roles.owner}',
        )
        _superuser(pg_server, f"GRANT CREATE ON SCHEMA public TO {roles.owner}", dbname=dbname)
        return roles.owner

    with shaped_target(app, tmp_path, gpg_homes, pg_server, prepare=prepare) as target:
        _grant_the_app_some(pg_server, target.url, roles, target.url.rsplit("/", 1)[1])
        if made_by == "plain":  # filled as the database's owner, who cannot give the tables to another role
            before = contents(target.url)
            name = foreign_backup(target, pg_server, made_by, stamp="20230101_000000")
            job, view = run(app, "restore_backup", target.name, backup=name)
            assert job.state == "failed", log_text(view)
            assert f"GRANT {roles.owner} TO {platform}, then restore again" in job.result, job.result
            assert contents(target.url) == before and copies(target) == []
            _superuser(pg_server, f"GRANT {roles.owner} TO {platform}")
        _round_trip(app, pg_server, target, roles, made_by)


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_backup_naming_an_owner_role_since_dropped_is_refused_with_the_role_and_the_grant_it_needs(
    app, runner, data_target
):
    gone = f"Gone_{secrets.token_hex(3)}"
    data_target.execute(f'CREATE ROLE "{gone}"')
    data_target.execute("CREATE TABLE ledger (id integer PRIMARY KEY)")
    data_target.execute(f'ALTER TABLE ledger OWNER TO "{gone}"')
    name = backup_now(app, data_target)
    data_target.execute(f'REASSIGN OWNED BY "{gone}" TO CURRENT_USER')
    data_target.execute(f'DROP ROLE "{gone}"')
    before = data_target.snapshot()

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert [s.state for s in view.steps[:4]] == ["succeeded", "succeeded", "failed", "not_run"]
    assert f'role "{gone}" does not exist' in f"{job.result}\n{log_text(view)}", job.result
    assert f'create them (CREATE ROLE "{gone}") and restore again' in job.result, job.result
    assert "the live database was not touched" in job.result
    assert data_target.snapshot() == before and copies(data_target) == []

    data_target.execute(f'CREATE ROLE "{gone}"')  # given the table by a superuser, never the right to make it
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    said = f"{job.result}\n{log_text(view)}"
    assert "permission denied for schema public" in said and "CREATE TABLE public.ledger" in said, said
    assert "GRANT CREATE ON SCHEMA public TO that owner in the live database" in job.result, job.result
    assert data_target.snapshot() == before and copies(data_target) == []

    data_target.execute(f'GRANT CREATE ON SCHEMA public TO "{gone}"')
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    with psycopg.connect(data_target.url) as conn:
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'ledger'").fetchone() == (gone,)


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_user_that_is_no_superuser_is_refused_before_anything_is_made_when_other_roles_own_objects(
    app, runner, data_target, pg_server
):
    """Not a superuser, Rewind fills the copy as the database's owner, whom it gives everything: a role that owned
    tables in the backup would lose them at the swap. Refused in the check step, naming the role and one object;
    a backup Rewind did not make, which records no owners, is restored with live's other owners said."""
    suffix = secrets.token_hex(3)
    owner, other, limited = f"shop_owner_{suffix}", f"reports_{suffix}", f"rewind_limited_{suffix}"
    live = data_target.url.rsplit("/", 1)[1]
    _superuser(
        pg_server,
        f"CREATE ROLE {owner}",
        f"CREATE ROLE {other}",
        f"CREATE ROLE {limited} LOGIN PASSWORD '{limited}' CREATEDB",
        f"GRANT {owner} TO {limited}",
        f'ALTER DATABASE "{live}" OWNER TO {owner}',
    )
    for table in ("user", "orders", "alembic_version"):
        data_target.execute(f'ALTER TABLE "{table}" OWNER TO {owner}')
    data_target.execute("CREATE TABLE monthly (id integer PRIMARY KEY)")
    data_target.execute(f"ALTER TABLE monthly OWNER TO {other}")
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 10")
    before = data_target.snapshot()
    write_targets_file(app, data_target.toml().replace(data_target.url, _as(pg_server, data_target.url, limited)))

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert view.steps[0].state == "failed" and view.steps[1].state == "not_run"
    assert f"{other} owns table monthly" in job.result and f"{limited} is not a superuser" in job.result, job.result
    assert f"REASSIGN OWNED BY … TO {owner}" in job.result, job.result
    assert data_target.snapshot() == before and copies(data_target) == []

    data_target.execute(f"REASSIGN OWNED BY {other} TO {owner}")  # as the fix says, then a new backup
    for made in list(data_target.backup_dir.glob(f"{name}*")):
        made.unlink()
    write_targets_file(app, data_target.toml())  # made as the session's superuser, as the first was
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 5")
    write_targets_file(app, data_target.toml().replace(data_target.url, _as(pg_server, data_target.url, limited)))
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert "as everything in it" in log_text(view)
    assert data_target.snapshot() == before
