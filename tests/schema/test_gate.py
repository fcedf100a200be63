"""The schema gate on revert, reset and deploy; migrate on deploy; verification that knows the schema."""

import json
import sys

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs.engine import current_targets
from app.jobs.runbook import ParamError
from app.schema.destroys import Loss
from app.targetpage import timeline
from app.targets import flask_db
from app.targets.migration_ops import Operation
from tests.deployments.test_runbooks import log_text, run
from tests.schema.conftest import both_target_databases
from tests.support.targets import commit, git, write_targets_file


def parse(app, name, **params):
    with app.app_context():
        return runbooks.get(name).parse_params({k: str(v) for k, v in params.items()}, "shop")


def step(view, title: str):
    (found,) = [s for s in view.steps if s.title.startswith(title)]
    return found


def upgrade_to_heads(app) -> None:
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)


def branch_with(shop, branch: str, message: str, *revs: str) -> str:
    git(shop.repo, "checkout", "-q", "-b", branch)
    sha = shop.add_revisions(message, *revs)
    git(shop.repo, "checkout", "-q", "main")
    return sha


@both_target_databases
def test_a_reset_behind_the_schema_is_refused_with_the_plan(app, shop_target):
    shop_target.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a'), ('bob', NULL), ('cy', 'c')")
    before = shop_target.commits["posts and index"]
    with pytest.raises(ParamError) as caught:
        parse(app, "reset", commit=shop_target.commits["the app"])
    assert caught.value.param == "commit"
    assert caught.value.problem == (
        f"the database is at b2000002 (add user.token), which commit {shop_target.commits['the app'][:12]} "
        "does not have: the code would fall behind the schema. Plan: downgrade to a1000001 first "
        "(drops user.token, holding 2 non-null values), then reset. "
        "The runbook downgrade_then_reset does both. An admin can override the gate with a typed reason."
    )
    assert git(shop_target.repo, "rev-parse", "HEAD") == before
    assert parse(app, "reset", commit=shop_target.commits["tokens"])["commit"] == shop_target.commits["tokens"]


def test_a_revert_that_would_remove_applied_revisions_is_refused(app, shop_target):
    upgrade_to_heads(app)
    with pytest.raises(ParamError) as caught:
        parse(app, "revert", commits=shop_target.commits["posts and index"])
    assert caught.value.param == "commits"
    assert "the database is at d4000004 (merge post and index), which the revert of" in caught.value.problem
    assert "Plan: downgrade to b2000002 first (destroys no data), then revert." in caught.value.problem


def test_a_revert_that_takes_out_a_migration_a_later_one_builds_on_says_so_and_what_would_work(app, shop_target):
    """Reverting the tokens commit alone would leave the later migrations pointing at a file that is gone: not "a
    missing file" to restore, but the revert's own doing, with the two ways through it."""
    with pytest.raises(ParamError) as caught:
        parse(app, "revert", commits=shop_target.commits["tokens"])
    problem = caught.value.problem
    assert f"the revert of {shop_target.commits['tokens'][:12]} takes out migration b2000002 (add user.token), " in (
        problem
    )
    assert "which migration c3aaaaa3 (" in problem and "builds on, and the revert keeps c3aaaaa3" in problem
    posts = shop_target.commits["posts and index"][:7]
    assert (
        f"revert {posts} (which added c3aaaaa3_x.py) too, in the same revert; or take the database below b2000002 "
        in problem
    ), problem
    assert "restore the missing migration file" not in problem


@pytest.mark.parametrize("merge", [False, True], ids=["fast-forward", "merge"])
def test_a_deploy_of_a_branch_that_deleted_an_applied_revision_is_refused(app, shop_target, merge):
    """The branch reverted the migration commit: the union of both sides' files would still hold it."""
    upgrade_to_heads(app)
    emails = shop_target.add_revisions("emails", "e5000005")
    upgrade_to_heads(app)
    git(shop_target.repo, "checkout", "-q", "-b", "feature/undo")
    git(shop_target.repo, "revert", "--no-edit", emails)
    git(shop_target.repo, "checkout", "-q", "main")
    if merge:  # main moved on too: the deploy is a real merge, not a fast-forward
        commit(shop_target.repo, "docs", **{"README": "the shop\n"})
    with pytest.raises(ParamError) as caught:
        parse(app, "deploy", ref="feature/undo")
    assert caught.value.param == "ref"
    assert "the database is at e5000005 (add user.email), which the deploy of" in caught.value.problem
    assert "Plan: downgrade to d4000004 first (destroys no data), then deploy." in caught.value.problem


def test_a_deploy_that_merges_a_branch_keeps_the_revisions_main_added_since(app, shop_target):
    upgrade_to_heads(app)
    git(shop_target.repo, "checkout", "-q", "-b", "feature/docs")
    commit(shop_target.repo, "docs", **{"README": "the shop\n"})
    git(shop_target.repo, "checkout", "-q", "main")
    shop_target.add_revisions("emails", "e5000005")
    upgrade_to_heads(app)
    assert parse(app, "deploy", ref="feature/docs")["ref"]  # the branch lacks e5000005 but never deleted it


def test_an_admin_override_is_audited_with_its_reason_and_verification_still_tells_the_truth(app, runner, shop_target):
    job, view = run(app, "reset", "shop", commit=shop_target.commits["the app"], gate_override="incident 7: bad code")
    assert git(shop_target.repo, "rev-parse", "HEAD") == shop_target.commits["the app"]
    assert "SCHEMA GATE OVERRIDDEN by oncall: incident 7: bad code" in log_text(view)
    with app.app_context():
        (event,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "schema.gate_override")).all()
        details = json.loads(event.details)
        assert details["reason"] == "incident 7: bad code"
        assert "the code would fall behind the schema. Plan: downgrade to a1000001 first" in details["refused"]
        # On the timeline in words, not as the audit row's keys ("…, refused the database is at …" on a row "done")
        (row,) = [e for e in timeline.page("shop").items if e.event.action == "schema.gate_override"]
        said = f"Schema gate overridden for “Reset to a commit” (job #{job.id}): “incident 7: bad code”"
        assert row.text.startswith(said + " — the gate had said: the database is at b2000002"), row.text
    assert job.state == "failed"
    assert job.verification == "failed"
    assert "the schema does not match the deployed code" in job.result
    assert "The database is at b2000002, a revision the deployed code does not have" in job.result


def test_a_non_admin_cannot_override_the_gate(app, shop_target, as_role):
    from tests.support.apps import csrf_token

    client = as_role(runbooks.Role.OPERATOR)
    response = client.post(
        "/jobs",
        data={
            "runbook": "revert",
            "target": "shop",
            "commits": shop_target.commits["tokens"],
            "gate_override": "trust me",
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 400
    assert "only an admin can override the schema gate" in response.get_data(as_text=True)
    assert queued_and_refused(app) == ([], [("operator", "only an admin can override the schema gate", None)])


def queued_and_refused(app) -> tuple[list[str], list[tuple[str, str, str | None]]]:
    """The jobs queued, and the refused job.queued rows (who, why, through which door)."""
    from app.jobs.models import Job

    with app.app_context():
        jobs = [job.runbook for job in db.session.scalars(select(Job))]
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "job.queued")).all()
        details = [(row.actor_name, json.loads(row.details)) for row in rows if row.outcome == "denied"]
        return jobs, [(name, d["reason"], d.get("via")) for name, d in details]


def test_a_non_admin_cannot_override_the_gate_from_the_cli_either(app, users, shop_target):
    """Outside a web request the role was once not asked: the job was queued, to fail only at its gate step."""
    from app.statuses import ExitStatus

    args = ["run", "shop", "revert", f"commits={shop_target.commits['tokens']}", "gate_override=trust me"]
    result = app.test_cli_runner().invoke(args=["rewind", *args, "--as", "operator"])
    assert result.exit_code == ExitStatus.REFUSED, result.output
    # the parameter was given, and rightly named: the runbook's list of them would only suggest otherwise
    assert result.stderr == "rewind: only an admin can override the schema gate\n"
    assert queued_and_refused(app) == ([], [("operator", "only an admin can override the schema gate", "cli")])


def test_an_admin_override_is_queued_whatever_the_door(app, users, shop_target):
    from app.audit.store import Actor
    from app.auth.roles import Role
    from app.jobs import service

    with app.app_context():
        book = runbooks.get("revert")
        params = book.parse_params({"commits": shop_target.commits["tokens"], "gate_override": "incident 7"}, "shop")
        with pytest.raises(ParamError, match="only an admin can override the schema gate"):
            service.enqueue(book, "shop", params, Actor(users[Role.OPERATOR], "operator"), via="cli")
        job = service.enqueue(book, "shop", params, Actor(users[Role.ADMIN], "admin"), via="cli")
        assert job.params["gate_override"] == "incident 7"


@both_target_databases
def test_a_deploy_that_adds_a_revision_upgrades_before_the_restart(app, runner, shop_target):
    upgrade_to_heads(app)
    branch_with(shop_target, "feature/email", "emails", "e5000005")
    job, view = run(app, "deploy", "shop", ref="feature/email")
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"e5000005"}
    assert step(view, "Upgrade the schema").index < step(view, "Restart").index
    assert step(view, "Upgrade the schema").state == "succeeded"
    assert "schema gate: the deploy of" in log_text(view)


def test_a_failed_upgrade_in_a_deploy_puts_the_code_back(app, runner, shop_target):
    upgrade_to_heads(app)
    before = git(shop_target.repo, "rev-parse", "HEAD")
    branch_with(shop_target, "feature/broken", "a broken migration", "f6000006")
    job, view = run(app, "deploy", "shop", ref="feature/broken", auto_rollback="on")
    assert job.state == "failed"
    assert "alembic_version says d4000004, not f6000006 as asked" in job.result
    assert f"The code was put back to {before[:12]}" in job.result
    assert git(shop_target.repo, "rev-parse", "HEAD") == before
    assert shop_target.versions() == {"d4000004"}
    assert step(view, "Restart").state == "not_run"


def test_an_upgrade_that_fails_part_way_keeps_the_code_that_has_the_revisions_it_applied(app, runner, shop_target):
    """A transaction per migration: e5000005 stays applied when the next one fails; the old code lacks it."""
    shop = shop_target.repo / "shop.py"
    shop.write_text(
        shop.read_text().replace("render_as_batch=True", "render_as_batch=True, transaction_per_migration=True")
    )
    commit(shop_target.repo, "a transaction per migration")
    upgrade_to_heads(app)
    git(shop_target.repo, "checkout", "-q", "-b", "feature/email")
    shop_target.add_revisions("emails", "e5000005")
    broken = shop_target.add_revisions("a broken migration on top", "f6000006", down="e5000005")
    git(shop_target.repo, "checkout", "-q", "main")
    job, view = run(app, "deploy", "shop", ref="feature/email", auto_rollback="on")
    assert job.state == "failed"
    assert "alembic_version says e5000005, not f6000006 as asked (it moved from d4000004)" in job.result
    assert "The code was not put back: the database is at e5000005 (add user.email), which commit" in job.result
    assert "it still runs the old code — finish or undo the migration before its next restart" in job.result
    assert git(shop_target.repo, "rev-parse", "HEAD") == broken
    assert shop_target.versions() == {"e5000005"}
    assert step(view, "Restart").state == "not_run"


def test_the_put_back_after_a_failed_upgrade_runs_the_old_commit_s_release_again(app, runner, shop_target, tmp_path):
    """The new commit's release wrote its build: the old commit's release writes it again, as a rollback does."""
    from tests.support.targets import write_targets_file

    ran = tmp_path / "releases.log"
    note = f"import subprocess; open({str(ran)!r}, 'a').write(subprocess.run(['git', 'rev-parse', 'HEAD'], "
    note += "capture_output=True, text=True, check=True).stdout)"
    release = f"\n[targets.{shop_target.name}.release]\ncommands = {json.dumps([[sys.executable, '-c', note]])}\n"
    write_targets_file(app, shop_target.toml() + release)
    upgrade_to_heads(app)
    before = git(shop_target.repo, "rev-parse", "HEAD")
    branch_with(shop_target, "feature/broken", "a broken migration", "f6000006")
    job, _ = run(app, "deploy", "shop", ref="feature/broken", auto_rollback="on")
    assert job.state == "failed" and f"The code was put back to {before[:12]}" in job.result
    deployed, again = ran.read_text().split()
    assert deployed != before and again == before, "the old commit's release ran after the put-back"
    assert "release commands failed" not in job.result


def test_an_automatic_rollback_never_puts_the_code_behind_the_schema_its_deploy_upgraded(app, runner, shop_target):
    """The deploy migrated, then failed verification: the old code alone would restart against e5000005."""
    upgrade_to_heads(app)
    before = git(shop_target.repo, "rev-parse", "HEAD")
    git(shop_target.repo, "checkout", "-q", "-b", "feature/email")
    shop_target.add_revisions("emails", "e5000005")
    shop = shop_target.repo / "shop.py"
    shop.write_text(shop.read_text().replace('jsonify(status="healthy")', 'jsonify(status="broken"), 500'))
    deployed = commit(shop_target.repo, "emails break health")
    git(shop_target.repo, "checkout", "-q", "main")
    job, view = run(app, "deploy", "shop", ref="feature/email", auto_rollback="on")
    assert job.state == "failed" and job.verification == "failed"
    assert "It was not rolled back automatically: the database is at e5000005 (add user.email)" in job.result
    assert "Plan: downgrade to d4000004 first (destroys no data), then reset" in job.result
    assert f"“Downgrade then reset” to {before[:12]} does both" in job.result
    assert git(shop_target.repo, "rev-parse", "HEAD") == deployed  # code and schema still together
    assert shop_target.versions() == {"e5000005"}
    assert "rolling back to" not in log_text(view)


def test_verification_fails_when_the_schema_does_not_match_the_deployed_code(app, runner, shop_target):
    write_targets_file(app, shop_target.toml(migrate_on_deploy=False))
    upgrade_to_heads(app)
    branch_with(shop_target, "feature/email", "emails", "e5000005")
    job, view = run(app, "deploy", "shop", ref="feature/email", auto_rollback="off")
    assert job.state == "failed"
    assert job.verification == "failed"
    assert "the schema does not match the deployed code" in job.result
    assert "1 revision(s) the database lacks: e5000005 (add user.email)" in job.result
    assert shop_target.versions() == {"d4000004"}
    assert "migrate_on_deploy is off" in step(view, "Upgrade the schema").message


@both_target_databases
def test_downgrade_then_reset_puts_code_and_schema_back_together(app, runner, shop_target):
    shop_target.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a'), ('bob', NULL), ('cy', 'c')")
    the_app = shop_target.commits["the app"]
    with pytest.raises(ParamError, match=r"destroys data \(drops user.token, holding 2 non-null values\)"):
        parse(app, "downgrade_then_reset", commit=the_app)
    with pytest.raises(ParamError, match="nothing to downgrade first, a plain reset will do"):
        parse(app, "downgrade_then_reset", commit=shop_target.commits["tokens"])
    job, view = run(app, "downgrade_then_reset", "shop", commit=the_app, backup_confirmed="yes")
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"a1000001"}
    assert git(shop_target.repo, "rev-parse", "HEAD") == the_app
    assert job.verification == "passed"
    log = log_text(view)
    assert "the migration scripts come from" in log and "NO BACKUP was taken by this runbook" in log
    assert log.index("Running downgrade b2000002 -> a1000001") < log.index("HEAD is now at")


def test_downgrade_then_reset_runs_the_release_commands_before_the_restart(app, runner, tmp_path, shop_target):
    """As a plain reset does: the release commands see the reset checkout, and run before the restart."""
    out = tmp_path / "released"
    note = [
        "python3",
        "-c",
        f"import subprocess; open({str(out)!r}, 'w').write(subprocess.check_output("
        "['git', 'rev-parse', 'HEAD'], text=True))",
    ]
    write_targets_file(app, shop_target.toml() + f"\n[targets.shop.release]\ncommands = [{json.dumps(note)}]\n")
    the_app = shop_target.commits["the app"]
    job, view = run(app, "downgrade_then_reset", "shop", commit=the_app, backup_confirmed="yes")
    assert job.state == "succeeded", job.result
    assert out.read_text().strip() == the_app  # ran in the checkout as the reset left it
    titles = [s.title for s in view.steps]
    assert (
        titles.index("Reset the code")
        < titles.index("Run the release commands")
        < titles.index("Restart the application")
    )


def test_a_release_that_fails_after_downgrade_then_reset_leaves_the_code_matching_the_downgraded_schema(
    app, runner, shop_target
):
    """Put back at the deployed commit, the code wanted the revisions the downgrade had removed: the next restart
    would have started it against a schema behind it, and only "Already done before that" said the schema moved."""
    silent = [sys.executable, "-c", "raise SystemExit(1)"]  # a tool that exits 1 and says nothing
    write_targets_file(app, shop_target.toml() + f"\n[targets.shop.release]\ncommands = [{json.dumps(silent)}]\n")
    deployed = git(shop_target.repo, "rev-parse", "HEAD")
    the_app = shop_target.commits["the app"]
    job, view = run(app, "downgrade_then_reset", "shop", commit=the_app, backup_confirmed="yes")
    assert job.state == "failed"
    assert shop_target.versions() == {"a1000001"}
    assert git(shop_target.repo, "rev-parse", "HEAD") == the_app, "the code stays where the reset put it"
    assert f"The code stays at {the_app[:12]}, which matches the database, downgraded to a1000001 before" in job.result
    assert f"shop was not restarted, and its process, started on {deployed[:12]}, runs against that database" in (
        job.result
    )
    assert "upgrade the schema back and reset the code to" in job.result
    assert [s.state for s in view.steps][-3:] == ["failed", "not_run", "not_run"]  # no restart, no verify
    assert "put the code back" not in log_text(view)


def test_a_cancel_during_the_release_after_downgrade_then_reset_leaves_the_code_matching_the_schema_too(
    app, runner, shop_target, tmp_path
):
    from app.jobs import service
    from app.jobs.events import load_view
    from app.jobs.models import Job
    from tests.conftest import wait_for
    from tests.deployments.test_runbooks import ADMIN

    started = tmp_path / "release-started"
    slow = [sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"]
    write_targets_file(app, shop_target.toml() + f"\n[targets.shop.release]\ncommands = [{json.dumps(slow)}]\n")
    the_app = shop_target.commits["the app"]
    with app.app_context():
        params = parse(app, "downgrade_then_reset", commit=the_app, backup_confirmed="yes")
        job_id = service.enqueue(runbooks.get("downgrade_then_reset"), "shop", params, ADMIN).id
    wait_for(started.exists, timeout=60)
    with app.app_context():
        service.cancel(db.session.get(Job, job_id), ADMIN)

    def ended():
        with app.app_context():
            job = db.session.get(Job, job_id)
            return (job, log_text(load_view(job))) if job.job_state.is_final else None

    job, log = wait_for(ended, timeout=60)
    assert job.state == "cancelled"
    assert git(shop_target.repo, "rev-parse", "HEAD") == the_app and shop_target.versions() == {"a1000001"}
    assert f"The code stays at {the_app[:12]}, which matches the database, downgraded to a1000001 before" in log
    assert "The code stays at" in job.result and "or upgrade the schema back and reset the code to" in job.result


def test_after_a_revert_deleted_an_applied_revision_the_scripts_come_from_the_commit_that_has_them(
    app, runner, shop_target, as_role
):
    upgrade_to_heads(app)
    git(shop_target.repo, "revert", "--no-edit", shop_target.commits["posts and index"])  # by hand, past the gate
    reverted = git(shop_target.repo, "rev-parse", "HEAD")
    page = as_role(runbooks.Role.ADMIN).get("/targets/shop/migrations").get_data(as_text=True)
    assert "the code is behind the schema" in page
    assert f'name="commit" value="{reverted}"' in page and "Downgrade to match the deployed code" in page
    job, view = run(app, "downgrade_then_reset", "shop", commit=reverted)
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"b2000002"}
    assert git(shop_target.repo, "rev-parse", "HEAD") == reverted
    assert job.verification == "passed"
    log = log_text(view)
    assert f"with the migration scripts of commit {shop_target.commits['posts and index'][:12]}" in log
    assert "Running downgrade d4000004" in log


def test_the_gate_looks_again_when_the_job_runs(app, runner, shop_target):
    """Queued while the reset was safe; by the time it runs the schema moved on, so it is refused then."""
    from tests.schema.jobs import queue

    tokens = shop_target.commits["tokens"]
    params = parse(app, "reset", commit=tokens)  # the database is at b2000002: tokens has it
    upgrade_to_heads(app)  # someone upgrades meanwhile: now the database is at d4000004
    job, view = queue(app, "reset", params)
    assert job.state == "failed"
    assert "the database is at d4000004 (merge post and index), which commit" in job.result
    assert "Plan: downgrade to b2000002 first" in job.result
    assert step(view, "Reset").state == "not_run"
    assert git(shop_target.repo, "rev-parse", "HEAD") == shop_target.commits["posts and index"]
    assert shop_target.versions() == {"d4000004"}


def test_a_failed_upgrade_in_a_deploy_without_automatic_rollback_says_what_is_left(app, runner, shop_target):
    upgrade_to_heads(app)
    before = git(shop_target.repo, "rev-parse", "HEAD")
    branch_with(shop_target, "feature/broken", "a broken migration", "f6000006")
    job, view = run(app, "deploy", "shop", ref="feature/broken", auto_rollback="off")
    assert job.state == "failed"
    assert "Automatic rollback is off: the new code is checked out but the application was not restarted" in job.result
    assert git(shop_target.repo, "rev-parse", "HEAD") != before  # left for the person, as asked
    assert shop_target.versions() == {"d4000004"}
    assert step(view, "Restart").state == "not_run"


@both_target_databases
def test_downgrade_then_revert_backs_up_goes_down_and_reverts(app, runner, shop_target, shop_backups):
    from app.backups.catalog import Catalog

    upgrade_to_heads(app)
    shop_target.execute("INSERT INTO post (title) VALUES ('first'), ('second')")
    posts = shop_target.commits["posts and index"]
    with pytest.raises(ParamError, match=r"then revert\. The runbook downgrade_then_revert does both\."):
        parse(app, "revert", commits=posts)
    job, view = run(app, "downgrade_then_revert", "shop", commits=posts)
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"b2000002"}
    assert git(shop_target.repo, "log", "-1", "--format=%s") == 'Revert "posts and index"'
    assert job.verification == "passed"
    (backup,) = Catalog(shop_backups.dir).backups()
    assert backup.state == "verified" and backup.manifest["job_id"] == job.id
    assert backup.manifest["purpose"] == "taken before the downgrade to b2000002"
    assert job.result.endswith(f"Backup {backup.id} taken before the downgrade; restore it from the Backups tab.")
    log = log_text(view)
    assert "DESTROYS drops table post, holding 2 rows" in log
    assert log.index(f"backup {backup.id} taken") < log.index("Running downgrade d4000004") < log.index("reverting 1")


SECOND_HEAD = """\
\"\"\"tags, on a second head beside posts and index

Revision ID: g7000007
Revises: b2000002
Create Date: 2001-01-01 00:00:00
\"\"\"
from alembic import op
import sqlalchemy as sa

revision = "g7000007"
down_revision = "b2000002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("tag", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("tag")
"""


@both_target_databases
def test_downgrade_then_revert_of_a_second_head_takes_down_that_head_alone(app, runner, shop_target):
    # The database at two heads (d4000004, g7000007); reverting the commit that added g7000007 must take it down
    # while d4000004 stays. `flask db downgrade d4000004` does nothing there (d4000004 has nothing built on it),
    # and the job failed with "it did not move" after running the very plan Rewind had offered.
    upgrade_to_heads(app)
    (shop_target.migrations / "versions" / "g7000007_x.py").write_text(SECOND_HEAD)
    tags = commit(shop_target.repo, "tags on a second head")
    upgrade_to_heads(app)
    assert shop_target.versions() == {"d4000004", "g7000007"}
    with pytest.raises(ParamError, match=r"downgrade to d4000004 first \(destroys no data\), then revert"):
        parse(app, "revert", commits=tags)
    job, view = run(app, "downgrade_then_revert", "shop", commits=tags, backup_confirmed="1")
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"d4000004"}
    assert git(shop_target.repo, "log", "-1", "--format=%s") == 'Revert "tags on a second head"'
    log = log_text(view)
    assert "db downgrade --directory " in log and " -- g7000007@-1" in log
    assert "Running downgrade g7000007 -> b2000002" in log and "Running downgrade d4000004" not in log


SECOND_HEAD_ON_TOP = """\
\"\"\"tag colour, on top of tags on the second head

Revision ID: g8000008
Revises: g7000007
Create Date: 2001-01-01 00:00:00
\"\"\"
from alembic import op
import sqlalchemy as sa

revision = "g8000008"
down_revision = "g7000007"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("tag", sa.Column("colour", sa.String(20)))


def downgrade():
    op.drop_column("tag", "colour")
"""


def test_downgrade_then_revert_of_a_second_head_two_revisions_long_takes_both_down(app, runner, shop_target):
    # Alembic counts `R@-1` from the applied head of R's branch, not from R: with two revisions on the second head,
    # `g7000007@-1` ran only g8000008's downgrade, and the job failed with the database part-way down that branch.
    upgrade_to_heads(app)
    (shop_target.migrations / "versions" / "g7000007_x.py").write_text(SECOND_HEAD)
    (shop_target.migrations / "versions" / "g8000008_x.py").write_text(SECOND_HEAD_ON_TOP)
    tags = commit(shop_target.repo, "tags, with a colour, on a second head")
    upgrade_to_heads(app)
    assert shop_target.versions() == {"d4000004", "g8000008"}
    job, view = run(app, "downgrade_then_revert", "shop", commits=tags, backup_confirmed="1")
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"d4000004"}
    log = log_text(view)
    assert " -- g7000007@-2" in log
    assert "Running downgrade g8000008 -> g7000007" in log and "Running downgrade g7000007 -> b2000002" in log
    assert "Running downgrade d4000004" not in log


def test_downgrade_then_revert_is_refused_when_a_plain_revert_will_do(app, shop_target):
    with pytest.raises(ParamError, match="nothing to downgrade first, a plain revert will do") as caught:
        parse(app, "downgrade_then_revert", commits=shop_target.commits["posts and index"])  # not applied yet
    assert caught.value.param == "commits"


def test_a_dropped_index_or_constraint_reads_as_one_phrase():
    index = Operation("c3bbbbb3", "drop_index", "user", detail="index ix_user_name")
    constraint = Operation("c3bbbbb3", "drop_constraint", "user", detail="constraint fk_user_team")
    assert str(Loss(index, None)) == "drop index ix_user_name on user"  # once "drop index index ix_user_name"
    assert str(Loss(constraint, None)) == "drop constraint fk_user_team on user"


def test_a_put_back_that_is_refused_after_a_failed_upgrade_still_says_the_upgrade_failed(app, runner, shop_target):
    """The old commit tracked a file the new one generates: its build leaves it in the way of the put-back."""
    (shop_target.repo / "assets.css").write_text("committed by hand\n")
    git(shop_target.repo, "add", "assets.css")
    git(shop_target.repo, "commit", "-q", "-m", "assets by hand")
    build = [sys.executable, "-c", "open('assets.css', 'w').write('built\\n')"]
    release = f"\n[targets.{shop_target.name}.release]\ncommands = {json.dumps([build])}\n"
    write_targets_file(app, shop_target.toml() + release)
    upgrade_to_heads(app)
    before = git(shop_target.repo, "rev-parse", "HEAD")
    git(shop_target.repo, "checkout", "-q", "-b", "feature/broken")
    git(shop_target.repo, "rm", "-q", "assets.css")
    shop_target.add_revisions("a broken migration, assets built now", "f6000006")
    git(shop_target.repo, "checkout", "-q", "main")
    job, view = run(app, "deploy", "shop", ref="feature/broken", auto_rollback="on")
    assert job.state == "failed"
    assert "alembic_version says d4000004, not f6000006 as asked" in job.result, job.result
    assert f"putting the code back to {before[:12]} failed too" in job.result and "assets.css" in job.result
    assert git(shop_target.repo, "rev-parse", "HEAD") != before  # nothing forced: a person must look
    assert (shop_target.repo / "assets.css").read_text() == "built\n"
    assert step(view, "Restart").state == "not_run"


def test_the_drift_s_downgrade_to_match_from_a_page_drawn_before_the_head_moved_is_refused(app, shop_target, as_role):
    """The Migrations tab's "Downgrade to match the deployed code" resets to the commit deployed when the page was
    drawn. Pressed after someone moved the code on (here: the revert undone), it reset back past their commit with
    no word: it carries the head it showed, as the Deployments tab's forms do, and is refused."""
    from app.jobs.models import Job
    from tests.support.apps import post
    from tests.support.pages import form_fields

    upgrade_to_heads(app)
    git(shop_target.repo, "revert", "--no-edit", shop_target.commits["posts and index"])  # by hand, past the gate
    reverted = git(shop_target.repo, "rev-parse", "HEAD")
    client = as_role(runbooks.Role.ADMIN)
    page = client.get("/targets/shop/migrations").get_data(as_text=True)
    action, fields = form_fields(page, "Downgrade to match the deployed code")
    assert fields["commit"] == reverted
    git(shop_target.repo, "revert", "--no-edit", "HEAD")  # someone else puts the code back meanwhile
    fixed = git(shop_target.repo, "rev-parse", "HEAD")
    refused = post(client, action, fields)
    assert refused.status_code == 303, refused.get_data(as_text=True)
    back = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert f"shop&#39;s head is now {fixed[:12]}" in back and f"not {reverted[:12]} as the page showed" in back
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == [], "nothing was queued"
    assert git(shop_target.repo, "rev-parse", "HEAD") == fixed and shop_target.versions() == {"d4000004"}
