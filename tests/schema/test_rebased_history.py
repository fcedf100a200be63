"""Rebased histories with dates out of order: which commit's migration scripts and which adding commit Rewind picks
is decided by place in history, never by commit date (git log's default order)."""

import subprocess

from app.jobs.engine import current_targets
from app.schema.gate import scripts_for
from app.targets.git import GitRepo
from app.targets.migrations import read_files
from tests.schema.apps import revision_file
from tests.support.targets import git, write_targets_file

EMAIL = "migrations/versions/e5000005_x.py"
FAILS = "migrations/versions/f6000006_x.py"
LATE, EARLY = "2031-03-01T12:00:00+00:00", "2021-03-01T12:00:00+00:00"


def git_dated(repo, when: str, *args: str) -> str:
    """git with author and committer dates set, as a rebase or an amend by someone's clock leaves them."""
    env = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid", "GIT_COMMITTER_NAME": "Dev"}
    env |= {"GIT_COMMITTER_EMAIL": "dev@example.invalid", "PATH": "/usr/bin:/bin", "HOME": str(repo.parent)}
    env |= {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    env |= {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "maintenance.auto", "GIT_CONFIG_VALUE_0": "false"}
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


def commit_dated(repo, when: str, message: str, **files: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git_dated(repo, when, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_the_downgrade_scripts_come_from_the_deployed_history_not_the_branch_as_it_was_before_its_rebase(app, shop):
    """e5000005 was written on a branch off `tokens` (down_revision b2000002), with a clock ahead; rebased onto main
    (which had gained d4000004) it was amended to come after d4000004, then deployed, its downgrade fixed, and then
    its file deleted. The database is at e5000005: the scripts that take it down are main's last ones, not those of
    the branch as it was before the rebase (still kept as a branch), whose e5000005 comes after b2000002."""
    repo = shop.repo
    git(repo, "checkout", "-q", "-b", "feature/email", shop.commits["tokens"])
    before_rebase = commit_dated(repo, LATE, "Add user.email", **{EMAIL: revision_file("e5000005", down="b2000002")})
    git(repo, "branch", "feature/email-before-rebase")
    git_dated(repo, EARLY, "rebase", "-q", "main")
    (repo / EMAIL).write_text(revision_file("e5000005", down="d4000004"))
    git(repo, "add", "-A")
    git_dated(repo, EARLY, "commit", "-q", "--amend", "--no-edit")  # the rebase's fix: after main's head
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "feature/email")
    fixed_text = revision_file("e5000005", down="d4000004").replace('drop_column("email")', 'drop_column("email")  #')
    fixed = commit_dated(repo, EARLY, "Fix the email downgrade", **{EMAIL: fixed_text})
    git(repo, "rm", "-q", EMAIL)
    commit_dated(repo, EARLY, "Take user.email out again")
    assert git(repo, "log", "-1", "--format=%ct", before_rebase) > git(repo, "log", "-1", "--format=%ct", fixed)

    write_targets_file(app, shop.toml())
    with app.app_context():
        sha, graph, files = scripts_for(current_targets().open(shop.name), {"e5000005"})
    assert sha == fixed, git(repo, "log", "-1", "--format=%s", sha)
    assert graph.revisions["e5000005"].down == ("d4000004",)
    assert files["e5000005_x.py"] == fixed_text
    assert not read_files(files, "the picked commit").unknown({"e5000005"})


def test_the_commit_that_added_a_file_is_the_newest_add_by_place_in_history_not_by_date(app, shop):
    """e5000005 was added, deleted, then added again on main (written anew), while a side branch from the first add
    (its dates ahead) added another migration and was merged: git log's default order, by date, lists the first add
    before the second; the file main has is the second add's."""
    repo = shop.repo
    first = commit_dated(repo, LATE, "Add user.email", **{EMAIL: revision_file("e5000005")})
    git(repo, "checkout", "-q", "-b", "side")
    commit_dated(repo, LATE, "A migration on the side", **{FAILS: revision_file("f6000006")})
    git(repo, "checkout", "-q", "main")
    git(repo, "rm", "-q", EMAIL)
    commit_dated(repo, EARLY, "Drop user.email for now")
    again = commit_dated(repo, EARLY, "Add user.email again", **{EMAIL: revision_file("e5000005", down="c3aaaaa3")})
    git_dated(repo, EARLY, "merge", "-q", "--no-ff", "-m", "Merge side", "side")
    assert git(repo, "log", "-1", "--format=%ct", first) > git(repo, "log", "-1", "--format=%ct", again)
    added = GitRepo(repo, "main").added_by("migrations/versions")
    assert added[EMAIL].sha == again, added[EMAIL].subject
