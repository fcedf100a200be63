"""Revert, reset and deploy on checkouts as an incident finds them: a lock a killed git left, someone's rebase
half done, a remote force-pushed or gone. Each job refuses before anything changes, and says why and what to do;
the Deployments tab and the target page show what is in the way."""

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from app.auth.roles import Role
from app.checkpoints.models import Checkpoint
from app.extensions import db
from tests.conftest import wait_for
from tests.deployments.test_release import remote_with_new_branch, with_remote
from tests.deployments.test_runbooks import log_text, run
from tests.support.apps import post
from tests.support.jobs import finished
from tests.support.targets import commit, git, write_targets_file


def no_change(code_target, before: str) -> None:
    assert code_target.head() == before and git(code_target.repo, "rev-parse", "HEAD") == before
    assert git(code_target.repo, "status", "--porcelain") == ""
    assert git(code_target.repo, "tag", "--list", "rewind/*") == "", "no safety tag for a change not made"


def jobs_a_person_runs(code_target) -> dict[str, dict]:
    return {
        "revert": {"commits": code_target.commits[2][:8]},
        "reset": {"commit": code_target.commits[0]},
        "deploy": {"ref": "feature/bad"},
    }


@pytest.mark.parametrize("runbook", ["revert", "reset", "deploy"])
def test_a_stale_lock_fails_the_job_before_the_change_naming_the_file_and_the_fix(app, runner, code_target, runbook):
    lock = code_target.repo / ".git" / "index.lock"
    lock.write_text("")
    before = code_target.head()
    job, view = run(app, runbook, **jobs_a_person_runs(code_target)[runbook])
    assert job.state == "failed"
    assert f"git's lock file {lock} exists" in job.result, job.result
    assert "a git that was killed or crashed left it behind" in job.result and f"`rm {lock}`" in job.result
    assert lock.exists()
    no_change(code_target, before)
    failed = [s.title for s in view.steps if s.state == "failed"]
    assert failed == [{"revert": "Revert", "reset": "Tag the current head", "deploy": "Merge"}[runbook]], failed
    assert "Restart the application" not in [s.title for s in view.steps if s.state == "succeeded"]


@pytest.mark.parametrize("runbook", ["revert", "reset", "deploy"])
def test_a_rebase_left_half_done_fails_the_job_naming_it_and_its_fix(app, runner, code_target, runbook):
    repo = code_target.repo
    git(repo, "checkout", "-q", "-b", "hotfix", code_target.commits[1])
    commit(repo, "Edit the changelog on the server", **{"CHANGES.md": "1.0 hot-fixed\n"})
    subprocess.run(["git", "-C", str(repo), "rebase", "main"], capture_output=True, check=False)
    assert (repo / ".git" / "rebase-merge").exists(), "the rebase did not stop on its conflict"
    job, _ = run(app, runbook, **jobs_a_person_runs(code_target)[runbook])
    assert job.state == "failed"
    assert f"{repo} is in the middle of a rebase started by hand" in job.result, job.result
    assert f"`git -C {repo} rebase --abort`" in job.result and "detached HEAD" not in job.result
    assert (repo / ".git" / "rebase-merge").exists(), "the rebase is the person's to finish or abort"
    assert code_target.head() == code_target.commits[3]


def test_the_deployments_tab_and_the_target_page_show_what_is_in_the_way(app, as_role, code_target):
    repo = code_target.repo
    git(repo, "bisect", "start", code_target.commits[3], code_target.commits[0])
    lock = repo / ".git" / "HEAD.lock"
    lock.write_text("")
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/staging/deployments")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="checkout-obstacles"' in text
    assert f"git&#39;s lock file {lock} exists" in text and f"`rm {lock}`" in text
    assert "in the middle of a bisect started by hand" in text and f"`git -C {repo} bisect reset`" in text
    assert client.get("/targets/staging").status_code == 200
    assert client.get("/").status_code == 200


def test_a_clean_checkout_shows_no_obstacles(app, as_role, code_target):
    text = as_role(Role.OPERATOR).get("/targets/staging/deployments").get_data(as_text=True)
    assert 'id="checkout-obstacles"' not in text


# --- the deploy's fetch ----------------------------------------------------------------------------


def test_a_deploy_of_a_remote_branch_force_pushed_since_it_was_chosen_changes_nothing(
    app, runner, code_target, tmp_path
):
    chosen = remote_with_new_branch(tmp_path, code_target)
    write_targets_file(app, with_remote(code_target.toml()))
    job, _ = run(app, "fetch")
    assert job.state == "succeeded", job.result
    colleague = tmp_path / "colleague"  # rewrites feature/notes and force-pushes it
    git(colleague, "reset", "-q", "--hard", "HEAD~1")
    rewritten = commit(colleague, "Release notes, take two", **{"NOTES.md": "rewritten\n"})
    git(colleague, "push", "-q", "--force", "origin", "feature/notes")
    before = code_target.head()
    job, view = run(app, "deploy", ref="origin/feature/notes")  # still `chosen` as Rewind last fetched it
    assert job.state == "failed"
    assert f"origin/feature/notes was at {chosen[:12]} when this deploy was chosen, and is now at {rewritten[:12]}" in (
        job.result
    )
    assert "force-pushed" in job.result and "nothing was changed (main was not touched)" in job.result
    assert f"origin/feature/notes was force-pushed: {chosen[:12]} -> {rewritten[:12]}" in log_text(view)
    no_change(code_target, before)
    assert not (code_target.repo / "NOTES.md").exists()
    with app.app_context():
        assert db.session.scalars(select(Checkpoint)).all() == [], "refused at the fetch, before the checkpoint"


def test_a_deploy_whose_own_branch_was_force_pushed_upstream_changes_nothing(app, runner, code_target, tmp_path):
    remote_with_new_branch(tmp_path, code_target)
    write_targets_file(app, with_remote(code_target.toml()))
    assert run(app, "fetch")[0].state == "succeeded"
    colleague = tmp_path / "colleague"
    git(colleague, "checkout", "-q", "main")
    git(colleague, "reset", "-q", "--hard", code_target.commits[1])  # drops two commits of main upstream
    rewritten = commit(colleague, "Another way", **{"OTHER.md": "x\n"})
    git(colleague, "push", "-q", "--force", "origin", "main")
    before = code_target.head()
    job, _ = run(app, "deploy", ref="origin/feature/notes")
    assert job.state == "failed"
    assert f"origin/main was force-pushed: it moved from {before[:12]} to {rewritten[:12]}" in job.result, job.result
    assert "nothing was changed (main was not touched)" in job.result
    no_change(code_target, before)


def test_a_deploy_from_a_remote_that_cannot_be_reached_says_so_and_changes_nothing(app, runner, code_target):
    gone = code_target.repo.parent / "moved-away.git"
    git(code_target.repo, "remote", "add", "origin", str(gone))
    write_targets_file(app, with_remote(code_target.toml()))
    before = code_target.head()
    job, view = run(app, "deploy", ref="feature/bad")
    assert job.state == "failed"
    assert f"fetching from 'origin' failed: the remote cannot be reached at {gone}" in job.result, job.result
    assert "nothing was changed (main was not touched)" in job.result
    assert "check its URL (`git -C" in job.result
    assert view.steps[0].title == "Fetch from the remote" and view.steps[0].state == "failed"
    no_change(code_target, before)


def held_at_the_ref_update(repo, folder) -> tuple:
    """A git hook that holds the next ref update (a revert's commit) until `hold` is removed; `entered` once it
    holds (holding the hook's pid): the moment a revert has changed files but not yet the branch."""
    entered, hold = folder / "entered", folder / "hold"
    hold.write_text("")
    hook = repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = prepared ] && [ -e {hold} ] || exit 0\n'
        f"echo $$ > {entered}\n"
        f"for _ in $(seq 300); do [ -e {hold} ] || exit 0; sleep 0.1; done\n"
    )
    hook.chmod(0o755)
    return entered, hold


def test_while_a_revert_runs_the_tab_says_so_first_and_folds_its_half_done_checkout(
    app, as_role, runner, code_target, tmp_path
):
    """Mid-revert, git's lock and changed files are the job's own: shown as a mess to clean up by hand (remove the
    lock, discard the changes), a person could break the job they are watching."""
    entered, hold = held_at_the_ref_update(code_target.repo, tmp_path)
    client = as_role(Role.OPERATOR)
    started = post(client, "/jobs", {"runbook": "revert", "target": "staging", "commits": code_target.commits[2]})
    job_id = int(started.headers["Location"].rsplit("/", 1)[1])
    try:
        wait_for(entered.exists, timeout=30)
        text = client.get("/targets/staging/deployments").get_data(as_text=True)
        notice = text.index('id="busy-notice"')
        assert f"job #{job_id}</a> (Revert commits, running) is changing staging" in text
        folded = text.index('<details class="mid-change">')
        assert notice < folded < text.index('id="checkout-obstacles"') < text.index("</details>", folded)
        assert f"The checkout, read while job #{job_id} runs: most likely its own work in progress" in text
    finally:
        hold.unlink()
    job, _ = finished(app, job_id)
    assert job.state == "succeeded", job.result
    after = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert 'id="busy-notice"' not in after and "mid-change" not in after and 'id="checkout-obstacles"' not in after


def test_a_queued_job_does_not_fold_what_a_person_left(app, as_role, code_target):
    """Only a running job can have made the checkout so: behind a queued one, a lock is someone else's to clear."""
    lock = code_target.repo / ".git" / "index.lock"
    lock.write_text("")
    client = as_role(Role.OPERATOR)
    post(client, "/jobs", {"runbook": "revert", "target": "staging", "commits": code_target.commits[2]})
    text = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert "(Revert commits, queued) is changing staging" in text
    assert "mid-change" not in text and f"git&#39;s lock file {lock} exists" in text


def test_a_revert_cancelled_mid_way_says_it_changed_nothing(app, as_role, runner, code_target, tmp_path):
    """A conflict said "nothing was changed"; a cancel at the same point put everything back as well, but the job
    said only that it was cancelled, leaving the person to check the checkout by hand."""
    before = code_target.head()
    entered, hold = held_at_the_ref_update(code_target.repo, tmp_path)
    client = as_role(Role.OPERATOR)
    started = post(client, "/jobs", {"runbook": "revert", "target": "staging", "commits": code_target.commits[2]})
    job_id = int(started.headers["Location"].rsplit("/", 1)[1])
    wait_for(lambda: entered.exists() and entered.read_text().strip(), timeout=30)
    hook = int(entered.read_text())
    post(client, f"/jobs/{job_id}/cancel", {})
    wait_for(lambda: not Path(f"/proc/{hook}").exists(), timeout=30)  # the cancel stopped git, its hook with it
    hold.unlink()  # the put back updates refs too
    job, _ = finished(app, job_id)
    assert job.state == "cancelled"
    said = f"Cancelled by operator during “Revert”. The code was not changed (main is still at {before[:7]})."
    assert job.result == said, job.result
    no_change(code_target, before)
