"""Migration projects and env files as real targets have them."""

from __future__ import annotations

import io
import sqlite3

import pytest
from dotenv import dotenv_values

from app.auth.roles import Role
from app.jobs import runbook as runbooks
from app.jobs.engine import current_targets
from app.jobs.runbook import ParamError
from app.schema import migrate
from app.schema.state import CODE_BEHIND, check_schema, read_state
from app.targets import flask_db, migrations
from tests.deployments.test_runbooks import log_text, run
from tests.schema.apps import REVISION
from tests.schema.conftest import both_target_databases
from tests.support.targets import commit, git, write_targets_file

# A BOM, CRLF, `export`, a quoted value followed by a comment, `#` and `=` inside quotes, a value over two lines.
MESSY_ENV = (
    '\ufeffexport DATABASE_URL="{url}" # the live one\r\n'
    "SECRET_KEY='s3cr#t=x'\r\n"
    'GREETING="two\r\nlines"\r\n'
    "BARE\r\n"
    "EMPTY=\r\n"
)


def with_env_file(shop, env_path) -> str:
    """The shop's targets-file section with DATABASE_URL only in its env file, as most apps keep it."""
    text = shop.toml().replace(f"[targets.{shop.name}.repo]", f'env_file = "{env_path}"\n[targets.{shop.name}.repo]')
    return text.replace(f'DATABASE_URL = "{shop.url}", ', "")


def test_flask_db_reads_the_env_file_as_the_application_does(tmp_path):
    env = tmp_path / "app.env"
    env.write_text(MESSY_ENV.format(url="sqlite:////srv/app.db"), newline="")
    expected = {k: v for k, v in dotenv_values(stream=io.StringIO(env.read_bytes().decode())).items() if v is not None}
    assert flask_db.read_env_file(env) == expected
    assert expected["DATABASE_URL"] == "sqlite:////srv/app.db" and expected["SECRET_KEY"] == "s3cr#t=x"
    assert flask_db.read_env_file(tmp_path / "none.env") == {}, "no env file: nothing from it"


def test_an_upgrade_runs_on_the_database_url_of_a_messy_env_file(app, runner, shop, tmp_path):
    env = tmp_path / "app.env"
    env.write_text(MESSY_ENV.format(url=shop.url), newline="")
    write_targets_file(app, with_env_file(shop, env))
    with app.app_context():
        assert flask_db.environment(current_targets().open("shop"))["DATABASE_URL"] == shop.url
    if shop.url.startswith("sqlite:///"):
        sqlite3.connect(shop.url.removeprefix("sqlite:///")).close()  # the app's empty database
    job, _ = run(app, "schema_upgrade", "shop", revision="b2000002")
    assert shop.versions() == {"b2000002"}, job.result  # the app is not running: verification may fail after


@both_target_databases
def test_tables_without_an_alembic_version_table_are_named_and_never_upgraded(app, shop_target, as_role):
    shop_target.execute("DROP TABLE alembic_version")  # made by create_all, or a restored dump without it
    page = as_role(Role.OPERATOR).get("/targets/shop/migrations").get_data(as_text=True)
    assert "The database has 1 table(s) (user) but no alembic_version table" in page
    assert "flask db stamp REVISION" in page
    assert 'name="runbook" value="schema_upgrade"' not in page, "no upgrade button to create the tables again"
    status = app.test_cli_runner().invoke(args=["rewind", "schema", "status", "shop"])
    assert status.exit_code == 1 and "but no alembic_version table" in status.output
    assert "revision(s) the database lacks" not in status.output, "not told to upgrade"
    with app.app_context(), pytest.raises(ParamError) as caught:
        runbooks.get("schema_upgrade").parse_params({"revision": "heads"}, "shop")
    assert "no alembic_version table" in caught.value.problem and "Nothing was changed." in caught.value.problem
    assert shop_target.versions() == set()


def test_tables_before_the_first_revision_are_no_drift(app, shop_target):
    """An app that has just run `flask db init` (no revision yet) over tables made by create_all: there is nothing
    to stamp or upgrade, and verification of its deploys must pass as it did, not fail for ever."""
    for path in (shop_target.repo / "migrations" / "versions").glob("*.py"):
        path.unlink()
    git(shop_target.repo, "add", "-A")
    git(shop_target.repo, "commit", "-q", "-m", "migrations start again")
    shop_target.execute("DROP TABLE alembic_version")
    with app.app_context():
        target = current_targets().open("shop")
        state = read_state(target)
        assert state.drift == [] and state.matches, [d.words for d in state.drift]
        assert check_schema(target)[0]


def test_a_failed_migration_quotes_the_error_not_sqlalchemys_aside(app, shop_target):
    shop_target.execute("DROP TABLE alembic_version")
    with app.app_context(), pytest.raises(migrate.MigrationFailed) as caught:
        migrate.apply(current_targets().open("shop"), "upgrade", "heads", {"d4000004"}, None)
    said = caught.value.message
    assert "OperationalError" in said and "already exists" in said, said
    assert "Background on this error" not in said


def test_the_telling_line_of_a_traceback():
    assert migrate.telling_line(["Traceback (most recent call last):", '  File "x"', "KeyError: 'DATABASE_URL'"]) == (
        "KeyError: 'DATABASE_URL'"
    )
    logged = ["ERROR [flask_migrate] Error: cannot go back", "(Background on this error at: x)"]
    assert migrate.telling_line(logged) == "ERROR [flask_migrate] Error: cannot go back"
    assert migrate.telling_line(["starting", "no error named here"]) == "no error named here"
    assert migrate.telling_line(["(Background on this error at: x)"]) == ""


def test_a_deploy_onto_tables_without_alembic_version_puts_the_code_back_before_any_upgrade(app, runner, shop_target):
    before = git(shop_target.repo, "rev-parse", "HEAD")
    git(shop_target.repo, "checkout", "-q", "-b", "feature/email")
    shop_target.add_revisions("emails", "e5000005")
    git(shop_target.repo, "checkout", "-q", "main")
    shop_target.execute("DROP TABLE alembic_version")
    job, view = run(app, "deploy", "shop", ref="feature/email", auto_rollback="on")
    assert job.state == "failed"
    assert "but no alembic_version table" in job.result and f"The code was put back to {before[:12]}" in job.result
    assert "db upgrade" not in log_text(view), "flask db was never run"
    assert git(shop_target.repo, "rev-parse", "HEAD") == before
    assert shop_target.versions() == set()


def add_revision(shop, rev: str, downgrade: str) -> str:
    """A revision after the merge whose upgrade() makes a table, with the downgrade() given."""
    (shop.repo / f"migrations/versions/{rev}_x.py").write_text(
        REVISION.format(
            message="make table t7",
            rev=rev,
            down="d4000004",
            docstring_down="d4000004",
            depends=None,
            upgrade='    op.create_table("t7", sa.Column("id", sa.Integer, primary_key=True))',
            downgrade="    " + downgrade,
        )
    )
    return commit(shop.repo, f"add {rev}")


def test_a_downgrade_that_raises_is_refused_at_every_door_before_anything_runs(app, shop_target, as_role):
    before = shop_target.commits["posts and index"]
    add_revision(shop_target, "e7000007", 'raise NotImplementedError("data cannot come back")')
    upgrade_heads(app)
    said = (
        "e7000007 cannot be downgraded: its downgrade() in e7000007_x.py raises "
        "NotImplementedError('data cannot come back') (line 21); nothing was changed. "
        "Restore a backup taken before e7000007 was applied, or move forward with a new migration instead"
    )
    with app.app_context(), pytest.raises(ParamError) as caught:
        runbooks.get("schema_downgrade").parse_params({"revision": "d4000004", "backup_confirmed": "yes"}, "shop")
    assert caught.value.problem == said
    page = as_role(Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=-1")
    assert page.status_code == 400 and said.replace("'", "&#39;") in page.get_data(as_text=True)
    assert "Downgrade</button>" not in page.get_data(as_text=True)
    with app.app_context(), pytest.raises(ParamError) as caught:
        runbooks.get("reset").parse_params({"commit": before}, "shop")
    assert "which commit" in caught.value.problem and said in caught.value.problem
    with app.app_context(), pytest.raises(ParamError) as caught:
        runbooks.get("downgrade_then_reset").parse_params({"commit": before, "backup_confirmed": "yes"}, "shop")
    assert said in caught.value.problem
    assert shop_target.versions() == {"e7000007"}


def test_a_downgrade_that_does_nothing_says_so_and_a_merge_that_does_nothing_does_not(app, shop_target, as_role):
    add_revision(shop_target, "e7000007", "pass")
    upgrade_heads(app)
    page = as_role(Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=c3aaaaa3").get_data(as_text=True)
    plan = page.split('id="downgrade-plan"', 1)[1].split("<form", 1)[0]
    e7, d4 = plan.split("<code>d4000004</code>")
    assert "its downgrade() does nothing: alembic_version moves down, but what its upgrade() made stays" in e7
    assert "does nothing" not in d4 and "drops nothing" in d4, "a merge's empty downgrade is as it should be"


def upgrade_heads(app) -> None:
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)


def test_the_commit_named_for_an_unknown_revision_is_the_one_that_added_its_file_not_a_longer_id(app, shop_target):
    upgrade_heads(app)
    added = add_revision(shop_target, "e7", "pass")  # an id that is the prefix of the next one
    (shop_target.repo / "migrations/versions/e7000007_x.py").write_text(
        (shop_target.repo / "migrations/versions/e7_x.py").read_text().replace("'e7'", "'e7000007'")
    )
    longer = commit(shop_target.repo, "add e7000007 beside it")
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "e7", None)
    assert shop_target.versions() == {"e7"}
    git(shop_target.repo, "rm", "-q", "migrations/versions/e7_x.py")
    commit(shop_target.repo, "drop e7's file (a revert)")
    with app.app_context():
        (drift,) = [d for d in read_state(current_targets().open("shop"), commits=True).drift if d.kind == CODE_BEHIND]
    assert f"(its file was added by commit {added[:7]})" in drift.words
    assert longer[:7] not in drift.words


def test_revision_files_that_import_the_application_are_read_as_written(app, runner, shop_target, as_role):
    # Real revision files import the application's own helpers, which only its environment has.
    path = shop_target.migrations / "versions" / "c3aaaaa3_x.py"
    text = path.read_text()
    path.write_text(text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\nimport shop_types\n"))
    (shop_target.repo / "shop_types.py").write_text("")  # there for the app (its cwd), not for Rewind
    graph = migrations.read_folder(shop_target.migrations)
    assert graph.heads == ["d4000004"] and graph.revisions["c3aaaaa3"].down == ("b2000002",)
    assert graph.revisions["c3aaaaa3"].message == "add post"
    page = as_role(Role.VIEWER).get("/targets/shop/migrations").get_data(as_text=True)
    assert "Migration state unreadable" not in page and "c3aaaaa3" in page
    commit(shop_target.repo, "import the app's types")
    job, _ = run(app, "schema_upgrade", "shop", revision="heads")
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"d4000004"}


def test_a_revision_file_whose_ids_are_not_plain_strings_is_named(shop):
    path = shop.migrations / "versions" / "c3aaaaa3_x.py"
    text = path.read_text().replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\nimport shop_ids\n")
    path.write_text(text.replace("down_revision = 'b2000002'", "down_revision = shop_ids.PARENT"))
    with pytest.raises(migrations.MigrationsError) as caught:
        migrations.read_folder(shop.migrations)
    assert (
        caught.value.message.startswith("the migration file c3aaaaa3_x.py in ")
        and "cannot be loaded here (ModuleNotFoundError: No module named 'shop_ids')" in caught.value.message
    )
    assert "string literals" in caught.value.fix
