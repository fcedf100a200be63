"""Upgrade and downgrade runbooks, what a downgrade destroys, and the silent `flask db` exit."""

import re
import shlex
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from app.checkpoints.models import Checkpoint, KnownGood
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs.engine import current_targets, engine
from app.jobs.models import Job
from app.jobs.runbook import ParamError
from app.schema import migrate
from app.schema.runbooks import CODE_TO_MATCH
from app.schema.state import check_schema, read_state
from app.targets import flask_db
from app.targets.schema_db import current_revisions
from tests.deployments.test_runbooks import log_text, run
from tests.schema.apps import make_migrate_app
from tests.schema.conftest import both_target_databases
from tests.support.apps import post
from tests.support.jobs import finished
from tests.support.pages import form_fields
from tests.support.sinks import Lines
from tests.support.targets import commit, write_targets_file


def parse(app, name, **params):
    with app.app_context():
        return runbooks.get(name).parse_params({k: str(v) for k, v in params.items()}, "shop")


@both_target_databases
def test_upgrade_to_the_heads_checks_the_table_and_marks_known_good(app, runner, shop_target):
    job, view = run(app, "schema_upgrade", "shop", revision="heads")
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"d4000004"}
    assert job.verification == "passed"
    assert "code and schema match" in log_text(view)
    with app.app_context():
        (checkpoint,) = db.session.scalars(select(Checkpoint)).all()
        assert checkpoint.captures["schema"] == {"revisions": ["b2000002"]}
        assert db.session.scalars(select(KnownGood.commit)).all() == [shop_target.commits["posts and index"]]


def test_an_upgrade_to_a_pending_revision_short_of_the_heads_is_a_plain_success(app, runner, shop_target):
    """One revision at a time is a way up, not a place left wrong: no warning telling anyone to move the code."""
    job, view = run(app, "schema_upgrade", "shop", revision="c3aaaaa3")
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"c3aaaaa3"}
    assert "But:" not in job.result and CODE_TO_MATCH not in job.result
    assert job.verification == "passed" and "not marked known good: code and schema differ" in log_text(view)


def test_an_upgrade_to_every_head_of_intentional_branches_matches_as_deploy_verification_says(app, runner, shop_target):
    """Two heads on purpose: the database at both is what a deploy's verification accepts, so the upgrade's must too."""
    two_heads = shop_target.add_revisions("a second head", "e5000005", down="c3aaaaa3")
    job, view = run(app, "schema_upgrade", "shop", revision="heads")
    assert job.state == "succeeded" and job.verification == "passed", job.result
    assert shop_target.versions() == {"d4000004", "e5000005"}
    assert "code and schema differ" not in log_text(view) and "code and schema match" in log_text(view)
    with app.app_context():
        target = current_targets().open("shop")
        assert check_schema(target) == (True, "schema at head d4000004, e5000005")
        assert read_state(target).matches
        assert db.session.scalars(select(KnownGood.commit)).all() == [two_heads]
    status = app.test_cli_runner().invoke(args=["rewind", "schema", "status", "shop"])
    assert status.exit_code == 0 and "code and schema match" in status.output and "2 heads" in status.output

    shop_target.execute("DELETE FROM alembic_version WHERE version_num = 'e5000005'")  # at one head of the two
    with app.app_context():
        target = current_targets().open("shop")
        assert check_schema(target)[0] is False and not read_state(target).matches


def test_an_upgrade_the_app_fails_after_says_so_in_short_and_how_to_move_the_schema_back(app, runner, shop_target):
    with app.app_context():
        current_targets().open("shop").process().stop()
    job, view = run(app, "schema_upgrade", "shop", revision="heads")
    assert job.state == "failed" and job.verification == "failed"
    assert shop_target.versions() == {"d4000004"}, "the upgrade itself was done"
    (failed,) = [s for s in view.steps if s.state == "failed"]
    assert failed.error.startswith("shop did not become healthy: the application is not running")
    assert ". Next: move the schema back to the revision the checkpoint recorded (upgrade or downgrade)" in failed.error
    assert "\n" not in failed.error and job.result.startswith(f"“Verify health and schema” failed: {failed.error}")


def test_unknown_ambiguous_and_not_applied_revisions_are_refused_before_anything_runs(app, shop_target):
    with pytest.raises(ParamError, match="no revision 'zz'"):
        parse(app, "schema_upgrade", revision="zz")
    with pytest.raises(ParamError, match=r"ambiguous.*choose one of: c3aaaaa3, c3bbbbb3"):
        parse(app, "schema_upgrade", revision="c3")
    with pytest.raises(ParamError, match="revision a1000001 is already applied: there is nothing to upgrade"):
        parse(app, "schema_upgrade", revision="a1000001")
    with pytest.raises(ParamError, match="not applied"):
        parse(app, "schema_downgrade", revision="c3aaaaa3")
    assert parse(app, "schema_upgrade", revision="c3a")["revision"] == "c3aaaaa3"
    assert shop_target.versions() == {"b2000002"}


def test_an_upgrade_to_the_heads_from_a_page_drawn_before_someone_else_s_says_the_database_is_there(
    app, shop_target, as_role
):
    """The Upgrade button of a page drawn while revisions were pending, pressed after another upgrade: refused in
    words about the database, not as if "heads" were a revision's name."""
    client = as_role(runbooks.Role.ADMIN)
    assert 'name="runbook" value="schema_upgrade"' in client.get("/targets/shop/migrations").get_data(as_text=True)
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)  # someone else's upgrade
    fields = {"runbook": "schema_upgrade", "target": "shop", "revision": "heads", "next": "/targets/shop/migrations"}
    refused = post(client, "/jobs", fields)
    assert refused.status_code == 303
    page = client.get("/targets/shop/migrations").get_data(as_text=True)
    assert "the database is already at the code&#39;s heads (d4000004): there is nothing to upgrade" in page
    assert "heads is already applied" not in page
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == [], "nothing was queued"


def test_downgrade_minus_one_on_a_merge_is_refused_with_the_choices(app, shop_target):
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)
    with pytest.raises(ParamError) as caught:
        parse(app, "schema_downgrade", revision="-1")
    assert caught.value.problem == (
        "downgrade -1 is ambiguous: d4000004 merges c3aaaaa3, c3bbbbb3; choose one of: c3aaaaa3, c3bbbbb3"
    )


@both_target_databases
def test_a_downgrade_that_destroys_data_shows_the_counts_and_needs_a_backup(app, runner, shop_target, as_role):
    shop_target.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a'), ('bob', NULL), ('cy', 'c')")
    page = as_role(runbooks.Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=-1")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "drops user.token, holding 2 non-null values" in text and "I have a backup" in text
    with pytest.raises(ParamError, match=r"destroys data \(drops user.token, holding 2 non-null values\)"):
        parse(app, "schema_downgrade", revision="-1")
    job, view = run(app, "schema_downgrade", "shop", revision="-1", backup_confirmed="yes")
    assert job.state == "warning", job.result  # healthy, but the code still needs b2000002: not a plain success
    assert "But: The deployed code has 4 revision(s) the database lacks:" in job.result
    assert job.result.endswith(CODE_TO_MATCH)
    assert shop_target.versions() == {"a1000001"}
    log = log_text(view)
    assert "DESTROYS drops user.token, holding 2 non-null values" in log, log
    assert "NO BACKUP was taken by this runbook" in log
    assert "schema is behind the code" in log  # the code still has b2000002 and on
    assert job.verification == "passed"
    with app.app_context():
        assert db.session.scalars(select(KnownGood.commit)).all() == []  # code and schema differ


def test_a_protected_target_needs_its_name_typed_for_a_downgrade(app, shop):
    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    with pytest.raises(ParamError, match="type its name, shop"):
        parse(app, "schema_downgrade", revision="a1000001")
    assert parse(app, "schema_downgrade", revision="a1000001", confirm="shop")["revision"] == "a1000001"


def test_the_silent_exit_still_gives_a_clear_message(app, tmp_path):
    shop = make_migrate_app(tmp_path / "quiet", f"sqlite:///{tmp_path / 'quiet.db'}", silent=True)
    write_targets_file(app, shop.toml())
    with app.app_context():
        target = current_targets().open("shop")
        flask_db.run(target, "upgrade", "b2000002", None)
        assert migrate.apply(target, "upgrade", "c3aaaaa3", {"c3aaaaa3"}, None) == {"c3aaaaa3"}
        shop.execute("UPDATE alembic_version SET version_num = 'ffff0000'")  # a revert deleted its file
        sink = Lines()
        with pytest.raises(migrate.MigrationFailed) as caught:
            migrate.apply(target, "upgrade", "heads", {"d4000004"}, sink)
    assert sink.of("out") == [] and sink.of("err") == []  # flask db said nothing at all
    assert caught.value.message == (
        "flask db upgrade heads exited with status 1 and it printed nothing (the application's alembic.ini "
        "logging may hide errors); alembic_version says ffff0000, not d4000004 as asked (it did not move)"
    )
    # The exact command to run by hand, where to run it: a silent tool leaves nothing else to go on.
    assert caught.value.fix.startswith(f"run `{shlex.join(flask_db.flask_argv(target))} db upgrade --directory ")
    assert f"-- heads` by hand in {shop.repo}, in the application's environment" in caught.value.fix
    assert current_revisions(shop.url) == {"ffff0000"}


PART_WAY_DOWNGRADE = """\
\"\"\"drop the name index, then fail

Revision ID: e5aaaaa5
Revises: d4000004
Create Date: 2001-01-01 00:00:00
\"\"\"
from alembic import op
import sqlalchemy as sa

revision = "e5aaaaa5"
down_revision = "d4000004"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index("ix_user_name", table_name="user")
    if op.get_bind().execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() >= 0:
        raise RuntimeError("user.name is still referenced")
"""


@both_target_databases
def test_a_failed_downgrade_that_committed_part_of_its_work_says_the_schema_changed(app, shop):
    # alembic_version rolls back with the failed migration, but the index dropped in its autocommit block stays
    # dropped: "it did not move" alone read as "nothing changed", and the Migrations tab shows code and schema match.
    (shop.migrations / "versions" / "e5aaaaa5_x.py").write_text(PART_WAY_DOWNGRADE)
    commit(shop.repo, "a downgrade that fails part-way")
    write_targets_file(app, shop.toml())
    with app.app_context():
        target = current_targets().open("shop")
        flask_db.run(target, "upgrade", "heads", None)
        assert shop.versions() == {"e5aaaaa5"}
        with pytest.raises(migrate.MigrationFailed) as caught:
            migrate.apply(target, "downgrade", "d4000004", {"d4000004"}, Lines())
    assert shop.versions() == {"e5aaaaa5"}
    assert caught.value.message.endswith(
        "alembic_version says e5aaaaa5, not d4000004 as asked (it did not move, yet the schema changed: index "
        "ix_user_name on user is gone — the migration committed part of its work before it failed, so the "
        "database is between e5aaaaa5 and d4000004)"
    )
    assert "it said: ERROR [flask_migrate] Error: user.name is still referenced;" in caught.value.message
    assert caught.value.fix.endswith("; the database is part-way: check it before anything else")
    # A table the failed part made is said once, not again through each of its columns, indexes and constraints.
    before = {"table user", "column user.id"}
    made = before | {"table audit", "column audit.id", "index audit_pkey on audit", "constraint audit_pkey on audit"}
    assert migrate._changed(before, made) == "table audit was added"
    assert migrate._changed(made, made - {"index audit_pkey on audit"}) == "index audit_pkey on audit is gone"


def test_an_env_py_that_exits_1_without_a_word_names_the_command_to_run(app, tmp_path):
    shop = make_migrate_app(tmp_path / "exits", f"sqlite:///{tmp_path / 'exits.db'}")
    write_targets_file(app, shop.toml())
    env_py = shop.repo / "migrations" / "env.py"
    with app.app_context():
        target = current_targets().open("shop")
        flask_db.run(target, "upgrade", "a1000001", None)
        env_py.write_text("import sys\n\nsys.exit(1)\n" + env_py.read_text())
        sink = Lines()
        with pytest.raises(migrate.MigrationFailed) as caught:
            migrate.apply(target, "upgrade", "b2000002", {"b2000002"}, sink)
    assert sink.of("out") == [] and sink.of("err") == []
    assert caught.value.message.startswith("flask db upgrade b2000002 exited with status 1 and it printed nothing")
    assert "alembic_version says a1000001, not b2000002 as asked" in caught.value.message, caught.value.message
    assert caught.value.fix.startswith(f"run `{shlex.join(flask_db.flask_argv(target))} db upgrade --directory ")


def test_a_failed_upgrade_fails_the_job_and_says_where_the_database_is(app, runner, shop_target):
    shop_target.add_revisions("a broken migration", "f6000006")
    job, view = run(app, "schema_upgrade", "shop", revision="f6000006")
    assert job.state == "failed"
    assert "alembic_version says d4000004, not f6000006 as asked" in job.result
    assert "no_such_table" in job.result or "no_such_table" in log_text(view)
    assert shop_target.versions() == {"d4000004"}


def test_a_bad_revision_posted_from_the_page_is_refused_and_nothing_is_queued(app, shop_target, as_role):
    from app.jobs.models import Job
    from tests.support.apps import csrf_token

    client = as_role(runbooks.Role.OPERATOR)
    form = {"runbook": "schema_upgrade", "target": "shop", "revision": "zz", "csrf_token": csrf_token(client)}
    response = client.post("/jobs", data=form)
    assert response.status_code == 400
    assert "there is no revision" in response.get_data(as_text=True)
    form["runbook"] = "schema_downgrade"
    form["revision"] = "a1000001"
    assert client.post("/jobs", data=form).status_code == 403  # downgrades are for admins
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []
    assert shop_target.versions() == {"b2000002"}


def test_downgrade_minus_one_with_several_heads_applied_is_refused_with_the_choices(app, shop_target):
    with app.app_context():
        target = current_targets().open("shop")
        flask_db.run(target, "upgrade", "c3aaaaa3", None)
        flask_db.run(target, "upgrade", "c3bbbbb3", None)
    assert shop_target.versions() == {"c3aaaaa3", "c3bbbbb3"}
    with pytest.raises(ParamError) as caught:
        parse(app, "schema_downgrade", revision="-1")
    assert caught.value.param == "revision"
    assert caught.value.problem == (
        "downgrade -1 is ambiguous: the database is at 2 heads (c3aaaaa3, c3bbbbb3); choose one of: b2000002"
    )
    assert parse(app, "schema_downgrade", revision="b2000002")["revision"] == "b2000002"  # named, it is fine
    assert shop_target.versions() == {"c3aaaaa3", "c3bbbbb3"}


def test_a_restart_whose_start_script_migrates_says_the_schema_moved(app, users, runner, shop_target):
    """A start script that runs `flask db upgrade` before the server (a common start.sh): a restart after a downgrade
    upgraded the schema back, and the job said only "All steps succeeded". It now says what moved, as a warning."""
    script = shop_target.root / "start.sh"
    script.write_text(f'set -e\n"{sys.executable}" -m flask db upgrade heads\nexec "{sys.executable}" "$@"\n')
    toml = shop_target.toml().replace('command = ["', f'command = ["/bin/sh", "{script}", "', 1)
    toml = toml.replace(f'"{sys.executable}", "-m", "flask", "run"', '"-m", "flask", "run"', 1)
    write_targets_file(app, toml)
    assert shop_target.versions() == {"b2000002"}
    job, view = run(app, "restart", "shop")
    assert shop_target.versions() == {"d4000004"}, log_text(view)
    assert job.state == "warning", (job.state, job.result)
    said = "While shop restarted, its schema changed (b2000002 → d4000004): its start command migrates, or someone"
    assert said in job.result and said in log_text(view), job.result
    job, view = run(app, "restart", "shop")  # nothing moved this time: nothing said
    assert job.state == "succeeded" and "its schema changed" not in log_text(view), job.result
    # From the command line: exit 8, and the state in the words the job page uses, not the enum's "warning"
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "downgrade", "b2000002", None)
    result = app.test_cli_runner().invoke(args=["rewind", "run", "shop", "restart", "--as", "admin", "--follow"])
    assert result.exit_code == 8, result.output
    assert re.search(r"^job #\d+ succeeded with warnings: All steps succeeded\. But: While shop", result.output, re.M)


def test_a_deploy_on_a_target_whose_application_migrates_itself_is_no_warning(app, users, runner, shop_target):
    """Review: with database.migrate_on_deploy off (the application migrates itself, as the README documents), every
    deploy bringing a migration ended "succeeded with warnings", and the shell exited 8: it is the way it works."""
    from tests.support.targets import git

    script = shop_target.root / "start.sh"
    script.write_text(f'set -e\n"{sys.executable}" -m flask db upgrade heads\nexec "{sys.executable}" "$@"\n')
    toml = shop_target.toml(migrate_on_deploy=False).replace('command = ["', f'command = ["/bin/sh", "{script}", "', 1)
    toml = toml.replace(f'"{sys.executable}", "-m", "flask", "run"', '"-m", "flask", "run"', 1)
    write_targets_file(app, toml)
    git(shop_target.repo, "reset", "--quiet", "--hard", shop_target.commits["tokens"])  # the code where the schema is
    job, view = run(app, "deploy", "shop", ref=shop_target.commits["posts and index"])
    assert job.state == "succeeded", (job.state, job.result)
    assert shop_target.versions() == {"d4000004"}, log_text(view)
    assert "shop's own start moved its schema to the deployed code (b2000002 → d4000004), as it does" in log_text(view)


def test_a_verification_that_cannot_read_the_schema_says_so_and_points_at_the_database_not_the_code(
    app, runner, shop_target
):
    """The database gone (dropped, a typo in its URL): the app's /health, which never touches it, answers 200. The
    job said the schema "does not match the deployed code" and "Next: roll back to a known-good commit", which
    cannot help: it says the schema cannot be checked, and to make the database reachable (or restore it)."""
    Path(shop_target.url.removeprefix("sqlite:///")).unlink()
    job, _ = run(app, "verify", "shop")
    assert job.state == "failed" and job.verification == "failed", job.result
    assert "healthy, but the schema cannot be checked: the migration state cannot be read: " in job.result, job.result
    assert "does not exist" in job.result and "does not match the deployed code" not in job.result, job.result
    assert (
        "Next: make the schema readable again (its database reachable; one that is gone can be restored" in job.result
    )
    assert "roll back to a known-good commit" not in job.result, job.result


def test_a_deployed_migrations_folder_that_cannot_be_read_is_the_code_s_fault_not_the_database_s(
    app, runner, shop_target
):
    """Review: a revision declared twice in the deployed code's folder (a bad deploy) also read "the schema cannot be
    checked … restore it from the Backups tab": the code is what a rollback mends."""
    versions = Path(shop_target.migrations) / "versions"
    first = sorted(versions.glob("*.py"))[0]
    (versions / f"copy_of_{first.name}").write_text(first.read_text())
    job, _ = run(app, "verify", "shop")
    assert job.state == "failed", job.result
    assert (
        "healthy, but the schema does not match the deployed code: the deployed code's migrations cannot be read: "
        in (job.result)
    ), job.result
    assert "Backups tab" not in job.result and "cannot be checked" not in job.result, job.result


def test_a_downgrade_reviewed_before_someone_else_s_upgrade_is_refused_not_run_further_than_shown(
    app, shop_target, as_role
):
    """The review page lists the downgrade() functions that run from where the database was. Posted after someone
    upgraded, the same form would run more of them (one the person never saw, maybe destroying data): refused, with
    where the database is now, and nothing queued."""
    client = as_role(runbooks.Role.ADMIN)
    page = client.get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
    assert "<code>b2000002</code>" in page and "c3aaaaa3" not in page  # the plan shown: b2000002 alone
    action, fields = form_fields(page, "Downgrade")
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "c3aaaaa3", None)  # someone else's upgrade
    refused = post(client, action, fields)
    assert refused.status_code == 303
    back = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert (
        "shop&#39;s database is now at c3aaaaa3, not at b2000002 as the downgrade&#39;s review showed: "
        "nothing was changed; review the downgrade again"
    ) in back
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == [], "nothing was queued"
    assert shop_target.versions() == {"c3aaaaa3"}

    # Reviewed again from where the database is now, the same downgrade is taken; no runner yet, so it waits
    # queued while someone upgrades again: its first step finds the database moved, and nothing is downgraded.
    page = client.get("/targets/shop/migrations/downgrade?revision=a1000001").get_data(as_text=True)
    action, fields = form_fields(page, "Downgrade")
    started = post(client, action, fields)
    assert started.status_code == 302, started.get_data(as_text=True)
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)
    running = engine(app).start_runner()
    try:
        job, view = finished(app, int(started.headers["Location"].rsplit("/", 1)[1]))
    finally:
        running.stop(wait=True)
    assert job.state == "failed"
    assert (
        "shop's database is now at d4000004, not at c3aaaaa3 as the review showed when this job was queued: "
        "nothing was changed; review the downgrade again"
    ) in job.result, job.result
    assert view.steps[0].state == "failed" and {s.state for s in view.steps[1:]} == {"not_run"}
    assert shop_target.versions() == {"d4000004"}


def test_a_downgrade_whose_database_moves_after_its_plan_was_listed_changes_nothing(app, shop_target):
    """The job lists its plan (and decides on a backup) at its first step; a backup, its verification and the
    checkpoint come between that and the downgrade. An upgrade by hand meanwhile made the downgrade step run
    downgrade() functions the job had never listed: the step checks the database is where the plan was read."""
    import json

    from app.jobs.context import JobContext
    from app.jobs.events import EventWriter
    from app.jobs.redact import Redactor
    from app.schema.runbooks import downgrade, show_losses

    with app.app_context():
        target = current_targets().open("shop")
        flask_db.run(target, "upgrade", "c3aaaaa3", None)
        params = {"revision": "b2000002", "expect": "c3aaaaa3", "backup_confirmed": False, "skip_backup": False}
        job = Job(runbook="schema_downgrade", target="shop", mutates=True, actor_name="admin", state="running")
        job.params_json = json.dumps(params)
        db.session.add(job)
        db.session.commit()
        ctx = JobContext(job, EventWriter(job.id, engine(app).bus), Redactor(), "Downgrade the schema")
        show_losses(ctx)  # the plan listed: c3aaaaa3 alone
        flask_db.run(target, "upgrade", "heads", None)  # someone upgrades by hand during the backup
        with pytest.raises(runbooks.StepFailed) as failed:
            downgrade(ctx)
    assert "shop's database is now at d4000004, not at c3aaaaa3" in str(failed.value), failed.value
    assert "nothing was changed" in str(failed.value)
    assert shop_target.versions() == {"d4000004"}
