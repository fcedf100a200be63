"""Fetch from a real remote, and release commands between a code change and the restart."""

import json
import sys

from sqlalchemy import select

from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs.engine import current_targets
from tests.deployments.test_runbooks import health, log_text, run
from tests.support.targets import commit, git, write_targets_file


def with_remote(toml: str) -> str:
    return toml.replace('branch = "main"', 'branch = "main"\nremote = "origin"', 1)


def with_release(toml: str, *commands: list[str], env: dict[str, str] | None = None) -> str:
    if env:
        pairs = ", ".join(f"{key} = {json.dumps(value)}" for key, value in env.items())
        toml = toml.replace("pid_file =", f"env = {{ {pairs} }}\npid_file =", 1)
    return toml + f"\n[targets.staging.release]\ncommands = {json.dumps([list(c) for c in commands])}\n"


def remote_with_new_branch(tmp_path, code_target) -> str:
    """A bare remote the target knows as origin, and a colleague's clone that pushes a new branch there."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(code_target.repo), str(bare))
    git(code_target.repo, "remote", "add", "origin", str(bare))
    colleague = tmp_path / "colleague"
    git(tmp_path, "clone", "-q", str(bare), str(colleague))
    git(colleague, "checkout", "-q", "-b", "feature/notes")
    sha = commit(colleague, "Add release notes", **{"NOTES.md": "notes from the remote\n"})
    git(colleague, "push", "-q", "origin", "feature/notes")
    return sha


def pid_of(app) -> int:
    with app.app_context():
        return current_targets().open("staging").process().status().pid


# --- fetch ----------------------------------------------------------------------------------------


def test_fetch_brings_remote_branches_without_moving_the_deployed_one(app, runner, tmp_path, code_target):
    pushed = remote_with_new_branch(tmp_path, code_target)
    write_targets_file(app, with_remote(code_target.toml()))
    before = code_target.head()
    job, view = run(app, "fetch")
    assert job.state == "succeeded", job.result
    assert "origin/feature/notes" in log_text(view)
    assert git(code_target.repo, "rev-parse", "refs/remotes/origin/feature/notes") == pushed
    assert code_target.head() == before and not (code_target.repo / "NOTES.md").exists()


def test_deploy_of_a_remote_branch_fetches_first_then_merges_it(app, runner, tmp_path, code_target):
    pushed = remote_with_new_branch(tmp_path, code_target)
    write_targets_file(app, with_remote(code_target.toml()))
    assert run(app, "fetch")[0].state == "succeeded"
    job, view = run(app, "deploy", ref="origin/feature/notes")
    assert job.state == "succeeded", job.result
    assert [s.title for s in view.steps][:4] == ["Fetch from the remote", "Schema gate", "Record a checkpoint", "Merge"]
    assert view.steps[0].state == "succeeded"
    assert code_target.head() == pushed and code_target.file("NOTES.md") == "notes from the remote\n"
    assert health(code_target)[0] == 200


def test_a_commit_the_fetch_brought_in_can_be_deployed_by_id(app, runner, tmp_path, code_target):
    pushed = remote_with_new_branch(tmp_path, code_target)
    write_targets_file(app, with_remote(code_target.toml()))
    assert run(app, "fetch")[0].state == "succeeded"
    job, _ = run(app, "deploy", ref=pushed[:10])
    assert job.state == "succeeded", job.result
    assert code_target.head() == pushed


def test_a_failing_fetch_is_a_clear_error_and_changes_nothing(app, runner, tmp_path, code_target):
    git(code_target.repo, "remote", "add", "origin", str(tmp_path / "gone.git"))
    write_targets_file(app, with_remote(code_target.toml()))
    before, pid = code_target.head(), pid_of(app)
    job, view = run(app, "fetch")
    assert job.state == "failed"
    assert "fetching from 'origin' failed" in job.result and "nothing was changed" in job.result
    job, view = run(app, "deploy", ref="feature/bad")  # not on main yet: the fetch runs first
    assert job.state == "failed"
    assert "fetching from 'origin' failed" in job.result
    assert [s.state for s in view.steps][:3] == ["failed", "not_run", "not_run"]
    assert code_target.head() == before and pid_of(app) == pid
    with app.app_context():
        assert db.session.scalars(select(Checkpoint)).all() == []


def test_fetch_without_a_remote_is_skipped_saying_why(app, runner, code_target):
    job, view = run(app, "fetch")
    assert job.state == "succeeded"
    assert view.steps[0].state == "skipped"
    assert view.steps[0].message == "no remote is configured (repo.remote): nothing to fetch"


# --- release commands ---------------------------------------------------------------------------


def recorder(out, label: str) -> list[str]:
    """A release command that notes its label, its folder, one env value and the deployed CHANGES.md."""
    code = (
        "import os, pathlib, sys\n"
        f"line = {label!r} + '|' + os.getcwd() + '|' + os.environ.get('RELEASE_MARK', '-') + '|' "
        "+ str('REWIND_SECRET_KEY' in os.environ) + '|' + pathlib.Path('CHANGES.md').read_text().splitlines()[-1]\n"
        f"open({str(out)!r}, 'a').write(line + '\\n')\n"
        f"print('release step', {label!r}, 'done')\n"
    )
    return [sys.executable, "-c", code]


def test_release_commands_run_in_order_in_the_new_checkout_with_the_target_env(app, runner, tmp_path, code_target):
    out = tmp_path / "release.log"
    toml = with_release(code_target.toml(), recorder(out, "one"), recorder(out, "two"), env={"RELEASE_MARK": "m1"})
    write_targets_file(app, toml)
    job, view = run(app, "revert", commits=code_target.commits[3][:8])  # CHANGES.md back to its first line
    assert job.state == "succeeded", job.result
    titles = [s.title for s in view.steps][3:7]
    assert titles[0:2] == ["Revert", "Run the release commands"]
    assert titles[2:4] == ["Upgrade the schema (migrate_on_deploy)", "Restart the application"]
    assert view.steps[4].state == "succeeded"
    repo = str(code_target.repo.resolve())
    assert out.read_text().splitlines() == [
        f"one|{repo}|m1|False|1.0 first release",
        f"two|{repo}|m1|False|1.0 first release",
    ]
    text = log_text(view)
    assert text.index("release step one done") < text.index("release step two done") < text.index("started pid")


def test_a_failing_release_command_puts_the_code_back_and_never_restarts(app, runner, tmp_path, code_target):
    out = tmp_path / "release.log"
    failing = [sys.executable, "-c", "import sys; print('pip says no: resolver conflict'); sys.exit(3)"]
    write_targets_file(app, with_release(code_target.toml(), recorder(out, "one"), failing, recorder(out, "three")))
    before, pid = code_target.head(), pid_of(app)
    job, view = run(app, "revert", commits=code_target.commits[2][:8])  # "Greet in French"
    assert job.state == "failed"
    assert "release command 2 of 3" in job.result and "exited with status 3" in job.result
    assert "pip says no: resolver conflict" in job.result
    assert f"put back at {before[:12]}" in job.result and "Nothing was restarted" in job.result
    assert [s.state for s in view.steps][4:] == ["failed", "not_run", "not_run", "not_run", "not_run"]
    assert out.read_text().splitlines()[0].startswith("one|")  # the first ran; the third never did
    assert len(out.read_text().splitlines()) == 1
    assert code_target.head() == before and git(code_target.repo, "status", "--porcelain") == ""
    assert pid_of(app) == pid and health(code_target) == (200, {"status": "healthy", "greeting": "bonjour"})
    (tag,) = git(code_target.repo, "tag", "--list", "rewind/failed-release/*").splitlines()
    assert git(code_target.repo, "log", "-1", "--format=%s", tag).startswith('Revert "Greet in French"')
    assert f"the failed code is kept as tag {tag}" in job.result


def test_a_failing_release_after_a_reset_goes_forward_to_the_old_head_again(app, runner, tmp_path, code_target):
    failing = [sys.executable, "-c", "raise SystemExit(1)"]
    write_targets_file(app, with_release(code_target.toml(), failing))
    before, pid = code_target.head(), pid_of(app)
    job, _ = run(app, "reset", commit=code_target.commits[0][:10])
    assert job.state == "failed"
    assert f"put back at {before[:12]}" in job.result
    assert code_target.head() == before and pid_of(app) == pid
    assert git(code_target.repo, "tag", "--list", "rewind/pre-reset/*")  # the reset's own safety tag is kept


def test_a_missing_release_program_names_the_key(app, runner, tmp_path, code_target):
    write_targets_file(app, with_release(code_target.toml(), [str(tmp_path / "no-such-pip"), "install"]))
    before = code_target.head()
    job, _ = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "failed"
    assert "could not run" in job.result and "release.commands" in job.result
    assert code_target.head() == before


def test_a_cancel_during_the_release_commands_puts_the_code_back(app, runner, tmp_path, code_target):
    from app.jobs import runbook as runbooks
    from app.jobs import service
    from app.jobs.models import Job
    from tests.conftest import wait_for
    from tests.deployments.test_runbooks import ADMIN

    started = tmp_path / "release-started"
    slow = [sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"]
    write_targets_file(app, with_release(code_target.toml(), slow))
    before, pid = code_target.head(), pid_of(app)
    with app.app_context():
        book = runbooks.get("revert")
        params = book.parse_params({"commits": code_target.commits[2][:8]}, "staging")
        job_id = service.enqueue(book, "staging", params, ADMIN).id
    wait_for(started.exists, timeout=30)
    assert code_target.head() != before  # the revert is in, its release command runs
    with app.app_context():
        service.cancel(db.session.get(Job, job_id), ADMIN)

    def ended():
        with app.app_context():
            job = db.session.get(Job, job_id)
            return job if job.job_state.is_final else None

    job = wait_for(ended, timeout=60)
    assert job.state == "cancelled"
    assert code_target.head() == before and git(code_target.repo, "status", "--porcelain") == ""
    assert pid_of(app) == pid


def test_a_failed_deploy_rolls_back_although_its_release_rewrote_a_tracked_file(app, runner, code_target):
    # Release commands that build into tracked files (compiled assets, translations) leave the checkout
    # changed; the deploy started from a clean one, so the automatic rollback may undo those changes.
    stamp = [sys.executable, "-c", "open('CHANGES.md', 'a').write('built by the release\\n')"]
    write_targets_file(app, with_release(code_target.toml(auto_rollback=True), stamp))
    before = code_target.head()
    job, view = run(app, "deploy", ref="feature/bad")
    assert job.state == "failed"
    assert f"Rolled back automatically to {before[:12]}, which is healthy again" in job.result, job.result
    assert code_target.head() == before
    assert "undid what the release commands changed: CHANGES.md" in log_text(view)
    # The deploy's stamp was undone; the old commit's own release run stamped it once again.
    changes = git(code_target.repo, "show", f"{before}:CHANGES.md") + "\nbuilt by the release"
    assert (code_target.repo / "CHANGES.md").read_text().strip() == changes
    assert health(code_target)[1]["status"] == "healthy"
