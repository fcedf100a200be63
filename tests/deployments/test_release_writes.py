"""Release commands that rewrite tracked files: Rewind takes exactly what they wrote as its own, nothing else."""

import json
import sys

from sqlalchemy import select

from app.auth.roles import Role
from app.checkpoints.models import KnownGood
from app.extensions import db
from app.jobs.engine import engine
from tests.deployments.test_release import with_release
from tests.deployments.test_runbooks import health, log_text, run
from tests.support.apps import build_app
from tests.support.targets import commit, git, write_targets_file

# A build step that rewrites a tracked file, as compiled assets or a regenerated lock file do.
SCRIPT = "import pathlib; f = pathlib.Path('CHANGES.md'); f.write_text(f.read_text() + 'built\\n')"
BUILD = [sys.executable, "-c", SCRIPT]
HAND_EDIT = b"1.0 first release\r\nhot-fix by hand \xe2\x9c\x93\n"


def released(app, code_target) -> str:
    """Revert "Greet in French" with the build as release command: CHANGES.md is left changed, by the release."""
    write_targets_file(app, with_release(code_target.toml(), BUILD))
    job, view = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "succeeded", job.result
    assert git(code_target.repo, "status", "--porcelain") == "M CHANGES.md"
    assert "the release commands changed tracked files: CHANGES.md" in log_text(view)
    return code_target.head()


def assert_runs_with_a_fresh_build(code_target, greeting: str) -> None:
    assert health(code_target) == (200, {"status": "healthy", "greeting": greeting})
    committed = git(code_target.repo, "show", "HEAD:CHANGES.md")
    assert code_target.file("CHANGES.md") == committed + "\nbuilt\n"  # built once, on the new commit


def test_a_revert_after_a_release_that_rewrote_a_tracked_file_puts_it_back_and_goes_on(app, runner, code_target):
    released(app, code_target)
    job, view = run(app, "revert", commits=code_target.commits[3][:8])  # "Note 1.1 in the changelog"
    assert job.state == "succeeded", job.result
    assert "putting back what the release commands wrote, before the revert" in log_text(view)
    assert "CHANGES.md" in log_text(view)
    assert git(code_target.repo, "log", "-1", "--format=%s").startswith('Revert "Note 1.1')
    assert_runs_with_a_fresh_build(code_target, "hello")
    assert "1.1 french" not in code_target.file("CHANGES.md")


def test_a_reset_after_such_a_release_succeeds(app, runner, code_target):
    old = released(app, code_target)
    job, view = run(app, "reset", commit=code_target.commits[2][:10])
    assert job.state == "succeeded", job.result
    assert code_target.head() == code_target.commits[2]
    assert "putting back what the release commands wrote, before the reset" in log_text(view)
    (tag,) = git(code_target.repo, "tag", "--list", "rewind/pre-reset/*").splitlines()
    assert git(code_target.repo, "rev-parse", f"{tag}^{{commit}}") == old
    assert_runs_with_a_fresh_build(code_target, "bonjour")


def test_a_deploy_after_such_a_release_succeeds(app, runner, code_target):
    git(code_target.repo, "checkout", "-q", "-b", "feature/notes")
    notes = commit(code_target.repo, "Add notes", **{"NOTES.md": "notes\n"})
    git(code_target.repo, "checkout", "-q", "main")
    released(app, code_target)
    job, view = run(app, "deploy", ref="feature/notes")
    assert job.state == "succeeded", job.result
    assert "putting back what the release commands wrote, before the merge" in log_text(view)
    git(code_target.repo, "merge-base", "--is-ancestor", notes, "HEAD")  # raises unless deployed
    assert code_target.file("NOTES.md") == "notes\n"
    assert_runs_with_a_fresh_build(code_target, "hello")


def test_the_same_file_changed_by_hand_after_the_release_is_refused_and_kept(app, runner, code_target):
    before = released(app, code_target)
    (code_target.repo / "CHANGES.md").write_bytes(HAND_EDIT)
    for name, params in (("revert", {"commits": code_target.commits[3][:8]}), ("reset", {"commit": before[:10]})):
        job, _ = run(app, name, **params)
        assert job.state == "failed", name
        assert "uncommitted changes to CHANGES.md" in job.result and "nothing is lost" in job.result
        assert (code_target.repo / "CHANGES.md").read_bytes() == HAND_EDIT
        assert code_target.head() == before
    assert git(code_target.repo, "tag", "--list", "rewind/pre-reset/*") == ""


def test_another_file_changed_by_hand_is_refused_naming_it_and_both_are_kept(app, runner, code_target):
    before = released(app, code_target)
    built = (code_target.repo / "CHANGES.md").read_bytes()
    edited = (code_target.repo / "server.py").read_bytes() + b"# hot-fix by hand\n"
    (code_target.repo / "server.py").write_bytes(edited)
    job, _ = run(app, "revert", commits=code_target.commits[3][:8])
    assert job.state == "failed"
    assert "uncommitted changes to server.py —" in job.result, job.result
    assert "accepted as the release commands' own, unchanged since they wrote them: CHANGES.md" in job.result
    assert (code_target.repo / "server.py").read_bytes() == edited
    assert (code_target.repo / "CHANGES.md").read_bytes() == built
    assert code_target.head() == before


def test_the_release_is_still_recognised_after_rewind_restarts(app, code_target):
    running = engine(app).start_runner()
    try:
        released(app, code_target)
    finally:
        running.stop(wait=True)
    settings = app.config["REWIND_SETTINGS"]
    again = build_app(settings.instance_dir, settings.database_url, REWIND_RUNBOOKS="tests.support.runbooks")
    running = engine(again).start_runner()
    try:
        job, view = run(again, "reset", commit=code_target.commits[1][:10])
    finally:
        running.stop(wait=True)
        again.extensions["rewind"].bus.close()
        with again.app_context():
            db.session.remove()
            db.engine.dispose()
    assert job.state == "succeeded", job.result
    assert "putting back what the release commands wrote" in log_text(view)
    assert code_target.head() == code_target.commits[1]
    assert_runs_with_a_fresh_build(code_target, "hello")


def test_a_release_that_rewrote_a_tracked_file_is_still_marked_known_good(app, runner, code_target):
    head = released(app, code_target)
    with app.app_context():
        assert head in db.session.scalars(select(KnownGood.commit)).all()
    # The same holds for a verification on its own, and stops holding once a person edits the file.
    job, view = run(app, "verify")
    assert job.verification == "passed" and f"{head[:12]} marked known-good" in log_text(view)
    (code_target.repo / "CHANGES.md").write_bytes(HAND_EDIT)
    job, view = run(app, "verify")
    assert "not marked known-good" in log_text(view) and "uncommitted changes to CHANGES.md" in log_text(view)


def test_the_deployments_tab_says_which_dirty_files_are_the_releases_and_which_are_not(
    app, runner, users, as_role, code_target
):
    released(app, code_target)
    client = as_role(Role.VIEWER)
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert "Written by the release commands (accepted):</strong> CHANGES.md" in page
    assert "The checkout is not the branch" not in page and "Changed by hand" not in page
    (code_target.repo / "server.py").write_text(code_target.file("server.py") + "# hot-fix\n")
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert "Written by the release commands (accepted):</strong> CHANGES.md" in page
    assert "Changed by hand (refused):</strong> server.py" in page
    assert "uncommitted changes to server.py" in page


def test_a_failed_revert_writes_back_what_the_release_had_written(app, runner, code_target):
    before = released(app, code_target)
    built = (code_target.repo / "CHANGES.md").read_bytes()
    job, view = run(app, "revert", commits=code_target.commits[1][:8])  # conflicts: CHANGES.md changed after it
    assert job.state == "failed" and "conflicts" in job.result and "CHANGES.md" in job.result
    assert "wrote back what the release commands had written: CHANGES.md" in log_text(view)
    assert code_target.head() == before and (code_target.repo / "CHANGES.md").read_bytes() == built
    assert git(code_target.repo, "status", "--porcelain") == "M CHANGES.md"
    job, _ = run(app, "revert", commits=code_target.commits[3][:8])  # still the release's own
    assert job.state == "succeeded", job.result


def test_an_automatic_rollback_keeps_a_hot_fix_made_during_the_deploy_and_refuses(app, runner, code_target, tmp_path):
    repo = code_target.repo
    git(repo, "checkout", "-q", "-b", "feature/notes")
    commit(repo, "Add notes", **{"NOTES.md": "notes\n"})
    git(repo, "checkout", "-q", "main")
    # The smoke test stands for a person editing on the server while the deploy verifies: once, then it fails.
    marker = tmp_path / "edited-once"
    edit = (
        f"import pathlib, sys; m = pathlib.Path({str(marker)!r}); f = pathlib.Path({str(repo / 'server.py')!r})\n"
        "if not m.exists(): m.write_text('x'); f.write_text(f.read_text() + '# hot-fix by hand\\n')\n"
        "sys.exit(1)"
    )
    toml = code_target.toml(auto_rollback=True) + f"smoke = {json.dumps([sys.executable, '-c', edit])}\n"
    write_targets_file(app, with_release(toml, BUILD))
    job, _ = run(app, "deploy", ref="feature/notes")
    assert job.state == "failed"
    assert marker.exists(), "the smoke test did not run"
    assert code_target.file("server.py").endswith("# hot-fix by hand\n"), "the person's edit was discarded"
    assert "server.py" in job.result and "they were kept" in job.result, job.result
    assert code_target.file("NOTES.md") == "notes\n"  # not rolled back: a person must look first
