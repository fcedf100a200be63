"""The git adapter against real repositories in temporary folders."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.targets import git as git_module
from app.targets import procfs
from app.targets.command import CommandCancelled
from app.targets.git import GitError, GitRepo, MergeConflict, RevertConflict, UnknownCommit
from tests.support.sinks import Lines

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.invalid",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=GIT_ENV, check=True)
    return out.stdout.strip()


def commit(repo: Path, message: str, **files: str) -> str:
    """Write files (name=content) and commit them; returns the sha."""
    for name, content in files.items():
        (repo / name).write_text(content)
    git(repo, "add", "--", *files)
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def status(repo: Path) -> str:
    return git(repo, "status", "--porcelain")


def repo_of(work: Path, remote: str | None = None) -> GitRepo:
    return GitRepo(work, "main", remote)


# --- reading -----------------------------------------------------------------------------


def test_history_is_newest_first_and_pages_by_keyset(work, lines):
    repo = repo_of(work)
    everything = repo.history()
    assert [c.sha for c in everything] == [lines["c4"], lines["c3"], lines["c2"], lines["c1"]]
    newest = everything[0]
    assert (newest.subject, newest.author, newest.email) == ("four", "Dev", "dev@example.invalid")
    assert newest.parents == (lines["c3"],)
    assert newest.short == lines["c4"][: len(newest.short)]
    assert newest.time.tzinfo is UTC
    assert abs((datetime.now(UTC) - newest.time).total_seconds()) < 600
    assert everything[-1].parents == ()

    first = repo.history(limit=3)
    second = repo.history(limit=3, before=first[-1].sha)
    assert [c.sha for c in first + second] == [c.sha for c in everything]
    assert repo.history(limit=3, before=second[-1].short) == []
    with pytest.raises(UnknownCommit):
        repo.history(before="--all")


def test_taken_off_counts_what_a_reset_to_each_commit_of_a_page_drops_merged_commits_included(work, lines):
    """The reset's question says how many commits it takes off the branch: a merge's side commits count too."""
    git(work, "checkout", "--quiet", "-b", "feature")
    commit(work, "side one", h="h\n")
    commit(work, "side two", h="hh\n")
    git(work, "checkout", "--quiet", "main")
    commit(work, "main moves", i="i\n")
    git(work, "merge", "--quiet", "--no-ff", "-m", "merge feature", "feature")
    commit(work, "after the merge", j="j\n")
    repo = repo_of(work)
    everything = repo.history()  # first parents: after, merge, main moves, c4 … c1
    truth = {c.sha: int(git(work, "rev-list", "--count", f"{c.sha}..main")) for c in everything}
    assert repo.taken_off(everything) == truth
    assert truth[lines["c4"]] == 5  # after, the merge, main moves and both side commits
    first = repo.history(limit=2)
    second = repo.history(limit=3, before=first[-1].sha)  # a later page starts from its first commit's count
    assert repo.taken_off(first) | repo.taken_off(second) == {c.sha: truth[c.sha] for c in first + second}
    assert repo.taken_off([]) == {}


def test_resolve_accepts_short_and_full_ids_on_the_branch(work, lines):
    repo = repo_of(work)
    assert repo.resolve(lines["c2"]) == lines["c2"]
    assert repo.resolve(lines["c2"][:7]) == lines["c2"]
    assert repo.resolve(f"  {lines['c2'][:10].upper()} ") == lines["c2"]
    assert repo.head() == lines["c4"]
    assert repo.current_branch() == "main"


@pytest.mark.parametrize("bad", ["--help", "-abcdef1", "HEAD", "main", "abc12", "xyz1234", "", "a" * 41, "abc1234~1"])
def test_resolve_rejects_what_is_not_a_commit_id(work, lines, bad):
    with pytest.raises(UnknownCommit, match="7 to 40 hex characters"):
        repo_of(work).resolve(bad)


def test_resolve_rejects_unknown_ids_and_commits_off_the_branch(work, lines):
    git(work, "checkout", "--quiet", "-b", "side", lines["c1"])
    elsewhere = commit(work, "elsewhere", h="h\n")
    git(work, "checkout", "--quiet", "main")
    repo = repo_of(work)
    with pytest.raises(UnknownCommit, match="no commit 'deadbeef'"):
        repo.resolve("deadbeef")
    with pytest.raises(UnknownCommit, match=f"commit '{elsewhere[:8]}' is not in the history of main") as caught:
        repo.resolve(elsewhere[:8])
    assert caught.value.ref == elsewhere[:8]
    # A tag named like an id must not stand in for the commit id itself.
    git(work, "tag", "abcdef12", lines["c1"])
    with pytest.raises(UnknownCommit, match="names a tag or branch"):
        repo.resolve("abcdef12")


def test_resolve_ref_for_deploy_takes_a_branch_or_any_commit(work, lines):
    git(work, "branch", "feature", lines["c2"])
    git(work, "checkout", "--quiet", "-b", "side", lines["c1"])
    elsewhere = commit(work, "elsewhere", h="h\n")
    git(work, "checkout", "--quiet", "main")
    repo = repo_of(work)
    assert repo.resolve_ref_for_deploy("feature") == lines["c2"]
    assert repo.resolve_ref_for_deploy(elsewhere[:7]) == elsewhere
    for bad in ("nosuch", "--help", "refs/heads/main", "deadbeef"):
        with pytest.raises(UnknownCommit):
            repo.resolve_ref_for_deploy(bad)


def test_resolve_ref_for_deploy_takes_a_tag(work, lines):
    # A release is often deployed by its tag ("deploy v2.0"), which may sit on another branch than the deployed one.
    git(work, "checkout", "--quiet", "-b", "release", lines["c1"])
    released = commit(work, "release work", r="r\n")
    git(work, "tag", "v2.0")
    git(work, "tag", "-a", "-m", "annotated", "v2.0-annotated")
    git(work, "checkout", "--quiet", "main")
    repo = repo_of(work)
    assert repo.resolve_ref_for_deploy("v2.0") == released
    assert repo.resolve_ref_for_deploy("v2.0-annotated") == released  # the commit, not the tag object
    for bad in ("v3.0", "refs/tags/v2.0", "v2.0^"):
        with pytest.raises(UnknownCommit, match="is neither a branch, a tag nor a commit id"):
            repo.resolve_ref_for_deploy(bad)


def test_show_returns_message_and_diff_capped(work, lines):
    sha = commit(work, "five\n\nWhy: because.", f="c\nmore\n")
    detail = repo_of(work).show(sha[:9])
    assert detail.commit.sha == sha
    assert detail.message == "five\n\nWhy: because."
    assert "diff --git a/f b/f" in detail.diff
    assert "+more" in detail.diff
    assert not detail.truncated
    big = commit(work, "big", big="".join(f"line {i}\n" for i in range(5000)))
    capped = repo_of(work).show(big, limit=1000)
    assert capped.truncated
    assert len(capped.diff) <= 1000
    assert capped.diff.endswith("\n")
    with pytest.raises(UnknownCommit):
        repo_of(work).show("--stat")


def test_files_at_reads_every_file_of_a_folder_as_the_commit_holds_it(work, lines):
    """Non-ASCII, bytes that are not UTF-8, no final newline, an empty file, a symlink, a nested folder: each as
    `git show` gives it, the folder's own path left off; the working tree and other folders play no part."""
    folder = work / "migrations" / "versions"
    folder.mkdir(parents=True)
    (folder / "a_ünïcode.py").write_text('message = "Zürich → 東京"\n')
    (folder / "b_latin1.py").write_bytes(b"# caf\xe9\n")
    (folder / "c_no_newline.py").write_text("revision = 'c'")
    (folder / "d_empty.py").write_text("")
    (folder / "sub").mkdir()
    (folder / "sub" / "e.py").write_text("e\n")
    (work / "migrations" / "link.py").symlink_to("versions/c_no_newline.py")
    (work / "outside.py").write_text("not in the folder\n")
    git(work, "add", "--", "migrations", "outside.py")
    git(work, "commit", "--quiet", "-m", "migrations")
    sha = git(work, "rev-parse", "HEAD")
    (folder / "c_no_newline.py").write_text("changed in the working tree only")

    files = repo_of(work).files_at(sha, "migrations/")
    assert files == {
        "versions/a_ünïcode.py": 'message = "Zürich → 東京"\n',
        "versions/b_latin1.py": "# caf\ufffd\n",
        "versions/c_no_newline.py": "revision = 'c'",
        "versions/d_empty.py": "",
        "versions/sub/e.py": "e\n",
        "link.py": "versions/c_no_newline.py",
    }
    assert repo_of(work).files_at(lines["c1"], "migrations") == {}


def test_files_at_reads_a_folder_of_hundreds_of_files_with_a_fixed_number_of_git_runs(work, lines, monkeypatch):
    """The schema gate reads several commits' migrations inside the request of a button: once a `git show` per
    file, over a second per commit for an app with 300 revisions."""
    folder = work / "versions"
    folder.mkdir()
    for n in range(300):
        (folder / f"r{n:03}.py").write_text(f"revision = 'r{n:03}'\n")
    git(work, "add", "--", "versions")
    git(work, "commit", "--quiet", "-m", "300 revisions")
    runs: list[tuple[str, ...]] = []
    real = git_module.run_command
    monkeypatch.setattr(
        git_module, "run_command", lambda argv, *a, **k: runs.append(tuple(argv)) or real(argv, *a, **k)
    )

    files = repo_of(work).files_at(git(work, "rev-parse", "HEAD"), "versions")
    assert len(files) == 300 and files["r123.py"] == "revision = 'r123'\n"
    assert len(runs) <= 3, [run[-3:] for run in runs]


# --- revert --------------------------------------------------------------------------------


def test_revert_one_commit(work, lines):
    repo = repo_of(work)
    new = repo.revert([lines["c4"]])
    assert new == git(work, "rev-parse", "HEAD") != lines["c4"]
    assert not (work / "g").exists()
    assert repo.history(limit=1)[0].subject == 'Revert "four"'
    assert git(work, "log", "-1", "--format=%an <%ae>") == "Rewind <rewind@localhost>"
    assert status(work) == ""


def test_revert_two_commits_newest_first(work, lines):
    repo = repo_of(work)
    seen = Lines()
    repo.revert([lines["c4"][:7], lines["c3"]], sink=seen)
    assert (work / "f").read_text() == "b\n"
    assert not (work / "g").exists()
    assert [c.subject for c in repo.history(limit=2)] == ['Revert "three"', 'Revert "four"']
    assert seen[0][0] == "cmd"
    assert seen[0][1].startswith("$ git revert --no-edit ")


def test_revert_conflict_changes_nothing(work, lines):
    repo = repo_of(work)
    (work / "untracked.txt").write_text("keep me\n")
    for shas in ([lines["c2"]], [lines["c4"], lines["c2"]]):  # alone, and after a revert that succeeds
        with pytest.raises(RevertConflict, match=r"conflicts with later changes in f\b") as caught:
            repo.revert(shas)
        assert caught.value.files == ["f"]
        assert caught.value.at == lines["c2"]
        assert git(work, "rev-parse", "HEAD") == lines["c4"]
        assert (work / "f").read_text() == "c\n"
        assert (work / "g").read_text() == "g\n"
        assert status(work) == "?? untracked.txt"
        assert not (work / ".git" / "REVERT_HEAD").exists()
        assert not (work / ".git" / "sequencer").exists()


def test_revert_of_an_already_reverted_commit_changes_nothing(work, lines):
    repo = repo_of(work)
    repo.revert([lines["c4"]])
    head = repo.head()
    with pytest.raises(GitError, match="already undone"):
        repo.revert([lines["c4"]])
    assert repo.head() == head
    assert status(work) == ""


def test_revert_refuses_a_dirty_tree_before_touching_anything(work, lines):
    (work / "f").write_text("work in progress\n")
    with pytest.raises(GitError, match=r"uncommitted changes to f\b"):
        repo_of(work).revert([lines["c4"]])
    assert git(work, "rev-parse", "HEAD") == lines["c4"]
    assert (work / "f").read_text() == "work in progress\n"
    assert (work / "g").exists()


def test_revert_refuses_when_another_branch_is_checked_out(work, lines):
    git(work, "checkout", "--quiet", "-b", "other")
    with pytest.raises(GitError, match="has branch 'other' checked out, not 'main'"):
        repo_of(work).revert([lines["c4"]])
    assert git(work, "rev-parse", "main") == lines["c4"]


def test_revert_a_merge_commit_against_its_first_parent(work, lines):
    git(work, "checkout", "--quiet", "-b", "feature")
    commit(work, "feature", h="h\n")
    git(work, "checkout", "--quiet", "main")
    commit(work, "main moves", i="i\n")
    repo = repo_of(work)
    merged = repo.merge(repo.resolve_ref_for_deploy("feature"))
    assert (work / "h").exists()
    repo.revert([merged])
    assert not (work / "h").exists()
    assert (work / "i").exists()


# --- reset, tag ----------------------------------------------------------------------------


def test_tag_safety_then_reset_hard_keeps_the_old_head_reachable(work, lines):
    repo = repo_of(work)
    when = datetime(2024, 5, 6, 7, 8, 9)  # naive: UTC, as app.clock.utcnow() gives
    tag = repo.tag_safety(when=when)
    assert tag == "rewind/pre-reset/20240506T070809Z"
    assert git(work, "rev-parse", f"{tag}^{{commit}}") == lines["c4"]
    again = repo.tag_safety(when=datetime(2024, 5, 6, 9, 8, 9, tzinfo=UTC).astimezone())
    assert again == "rewind/pre-reset/20240506T090809Z"
    assert repo.tag_safety(when=when) == "rewind/pre-reset/20240506T070809Z-2"

    assert repo.reset_hard(lines["c2"][:7]) == lines["c2"]
    assert git(work, "rev-parse", "main") == lines["c2"]
    assert (work / "f").read_text() == "b\n"
    assert not (work / "g").exists()
    assert status(work) == ""
    git(work, "merge-base", "--is-ancestor", lines["c4"], tag)  # raises if unreachable
    # The old head is no longer on the branch, so a reset forward by id is refused.
    with pytest.raises(UnknownCommit, match="not in the history of main"):
        repo.reset_hard(lines["c4"])


def test_reset_hard_refuses_a_dirty_tree(work, lines):
    (work / "g").write_text("unsaved\n")
    with pytest.raises(GitError, match="uncommitted changes"):
        repo_of(work).reset_hard(lines["c1"])
    assert (work / "g").read_text() == "unsaved\n"


def test_changes_never_overwrite_untracked_files(work, lines):
    git(work, "rm", "--quiet", "g")
    git(work, "commit", "--quiet", "-m", "remove g")
    (work / "g").write_text("only copy\n")
    repo = repo_of(work)
    head = repo.head()
    with pytest.raises(GitError, match=r"cannot reset: g .* move them out of the way"):
        repo.reset_hard(lines["c4"])
    with pytest.raises(GitError, match=r"would overwrite files .* git does not track: g — move them"):
        repo.revert([head])
    assert repo.head() == head
    assert (work / "g").read_text() == "only copy\n"


# --- merge ---------------------------------------------------------------------------------


def test_merge_fast_forwards_a_feature_branch(work, lines):
    git(work, "checkout", "--quiet", "-b", "feature")
    tip = commit(work, "feature work", h="h\n")
    git(work, "checkout", "--quiet", "main")
    repo = repo_of(work)
    assert repo.merge(repo.resolve_ref_for_deploy("feature")) == tip
    assert (work / "h").read_text() == "h\n"
    assert repo.merge(lines["c2"]) == tip  # already contained: nothing to do


def test_merge_makes_a_merge_commit_when_diverged(work, lines):
    git(work, "checkout", "--quiet", "-b", "feature")
    tip = commit(work, "feature work", h="h\n")
    git(work, "checkout", "--quiet", "main")
    ours = commit(work, "main work", i="i\n")
    repo = repo_of(work)
    new = repo.merge(tip)
    assert repo.commit(new).parents == (ours, tip)
    assert (work / "h").exists()
    assert (work / "i").exists()
    assert status(work) == ""


def test_merge_conflict_changes_nothing(work, lines):
    git(work, "checkout", "--quiet", "-b", "feature")
    tip = commit(work, "feature edit", f="feature\n")
    git(work, "checkout", "--quiet", "main")
    ours = commit(work, "main edit", f="main\n")
    with pytest.raises(MergeConflict, match=r"conflicts in f\b") as caught:
        repo_of(work).merge(tip)
    assert caught.value.files == ["f"]
    assert git(work, "rev-parse", "HEAD") == ours
    assert (work / "f").read_text() == "main\n"
    assert status(work) == ""


# --- push ----------------------------------------------------------------------------------


def test_push_updates_a_bare_remote_and_force_pushes_after_reset(tmp_path, work, lines):
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True, env=GIT_ENV)
    git(work, "remote", "add", "origin", str(bare))
    repo = repo_of(work, remote="origin")
    repo.check()
    repo.push()
    assert git(bare, "rev-parse", "main") == lines["c4"]

    repo.reset_hard(lines["c2"])
    with pytest.raises(GitError, match="commits on main that this repository lacks"):
        repo.push()
    assert git(bare, "rev-parse", "main") == lines["c4"]
    seen = Lines()
    repo.push(force=True, sink=seen)
    assert git(bare, "rev-parse", "main") == lines["c2"]
    assert seen[0] == ("cmd", "$ git push --force-with-lease=refs/heads/main origin refs/heads/main:refs/heads/main")

    # Someone else pushes: a forced push must not overwrite what Rewind has not seen.
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(other)], check=True, env=GIT_ENV)
    theirs = commit(other, "theirs", j="j\n")
    git(other, "push", "--quiet", "origin", "main")
    repo.reset_hard(lines["c1"])
    with pytest.raises(GitError, match="someone pushed since"):
        repo.push(force=True)
    assert git(bare, "rev-parse", "main") == theirs


def test_fetch_brings_remote_branches_that_a_deploy_may_name(tmp_path, work, lines):
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(work), str(bare)], check=True, env=GIT_ENV)
    git(work, "remote", "add", "origin", str(bare))
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(other)], check=True, env=GIT_ENV)
    git(other, "checkout", "--quiet", "-b", "feature/x")
    theirs = commit(other, "theirs", j="j\n")
    git(other, "push", "--quiet", "origin", "feature/x")
    repo = repo_of(work, remote="origin")
    with pytest.raises(UnknownCommit, match="fetch from origin first"):
        repo.resolve_ref_for_deploy("origin/feature/x")
    seen = Lines()
    assert repo.fetch(sink=seen) == ["origin/feature/x", "origin/main"]
    assert seen[0][1].startswith("$ git fetch --prune --no-tags --no-recurse-submodules origin '+refs/heads/*:")
    assert repo.head() == lines["c4"] and status(work) == ""  # the deployed branch did not move
    assert repo.resolve_ref_for_deploy("origin/feature/x") == theirs
    assert repo.resolve_ref_for_deploy(theirs[:8]) == theirs

    git(other, "push", "--quiet", "origin", "--delete", "feature/x")
    assert repo.fetch() == ["origin/main"]  # pruned


def test_a_failing_fetch_says_so_and_changes_nothing(tmp_path, work, lines):
    git(work, "remote", "add", "origin", str(tmp_path / "gone.git"))
    repo = repo_of(work, remote="origin")
    with pytest.raises(
        GitError, match=r"fetching from 'origin' failed: .*nothing was changed \(main was not touched\)"
    ):
        repo.fetch()
    assert repo.head() == lines["c4"] and repo.remote_branches() == []
    with pytest.raises(GitError, match="no remote to fetch from"):
        repo_of(work).fetch()


def test_put_back_goes_to_any_commit_and_discards_what_a_release_left(work, lines):
    repo = repo_of(work)
    repo.reset_hard(lines["c2"])
    (work / "f").write_text("written by a release command\n")
    assert repo.put_back(lines["c4"]) == ["f"]  # forward again: c4 is no longer in the branch's history
    assert repo.head() == lines["c4"] and status(work) == "" and (work / "f").read_text() == "c\n"
    with pytest.raises(UnknownCommit):
        repo.put_back("not-a-sha")


def test_put_back_keeps_what_it_discards_in_git_and_names_the_blobs(work, lines):
    # What a failed release left may hold a person's edit made meanwhile: it must stay recoverable.
    repo = repo_of(work)
    (work / "f").write_text("edited while the release ran\n")
    sink = Lines()
    assert repo.put_back(lines["c4"], sink=sink) == ["f"]
    (line,) = [text for _, text in sink if text.startswith("discarding, kept in git")]
    blob = line.split("f (git blob ")[1][:12]
    assert git(work, "cat-file", "-p", blob) == "edited while the release ran"


def test_push_without_remote_is_a_no_op(work, lines):
    refs = git(work, "for-each-ref")
    sink = Lines()
    assert repo_of(work).push(force=True, sink=sink) is None
    assert sink == []  # no git command was run, so none was shown
    assert git(work, "for-each-ref") == refs and git(work, "remote") == ""  # no ref moved, no remote made
    assert git(work, "rev-parse", "HEAD") == lines["c4"] and status(work) == ""


# --- errors that say what to fix ----------------------------------------------------------


def test_errors_name_the_fix(tmp_path, work, lines):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match=f"not a git repository: {plain} — check repo.path"):
        GitRepo(plain, "main").head()
    with pytest.raises(GitError, match="repository folder does not exist"):
        GitRepo(tmp_path / "missing", "main").check()
    with pytest.raises(GitError, match=r"branch 'prod' does not exist .*\(branches: main\) — check repo.branch"):
        GitRepo(work, "prod").check()
    with pytest.raises(GitError, match="remote 'origin' is not configured"):
        GitRepo(work, "main", "origin").check()
    with pytest.raises(ValueError, match="bad branch name"):
        GitRepo(work, "--force")
    with pytest.raises(ValueError, match="bad remote"):
        GitRepo(work, "main", "--upload-pack=evil")
    repo_of(work).check()


# --- messy checkouts -----------------------------------------------------------------------


def test_a_shallow_clones_oldest_commit_is_not_reverted_against_nothing(tmp_path, work, lines):
    # At the edge of a shallow clone git sees no parent: reverting there would delete every file.
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "--quiet", "--depth", "2", f"file://{work}", str(clone)], check=True, env=GIT_ENV)
    repo = repo_of(clone)
    assert repo.shallow_boundary() == {lines["c3"]}
    head = repo.head()
    with pytest.raises(UnknownCommit, match=r"shallow clone.*fetch --unshallow") as err:
        repo.revert([lines["c3"]])
    assert err.value.ref == lines["c3"]
    assert repo.head() == head and status(clone) == ""
    assert (clone / "f").read_text() == "c\n" and (clone / "g").exists()
    # A commit inside the fetched history reverts as usual.
    repo.revert([lines["c4"]])
    assert not (clone / "g").exists() and (clone / "f").read_text() == "c\n"


def test_a_complete_clone_has_no_shallow_boundary(work, lines):
    assert repo_of(work).shallow_boundary() == frozenset()


def test_a_repository_of_another_owner_is_named_as_such_not_as_an_unknown_commit(work, lines):
    # git refuses a .git owned by someone else ("dubious ownership"); every id would otherwise read as unknown.
    os.chown(work / ".git", 65534, 65534)
    try:
        with pytest.raises(GitError, match=r"belongs to another user.*safe\.directory") as err:
            repo_of(work).resolve(lines["c2"])
        assert not isinstance(err.value, UnknownCommit)
    finally:
        os.chown(work / ".git", os.getuid(), os.getgid())


def test_a_push_to_a_remote_that_is_gone_says_what_is_kept_and_how_to_push_later(tmp_path, work, lines):
    git(work, "remote", "add", "origin", str(tmp_path / "moved-away.git"))
    repo = repo_of(work, remote="origin")
    repo.revert([lines["c4"]])
    head = repo.head()
    with pytest.raises(GitError) as err:
        repo.push()
    message = err.value.message
    assert (
        message.startswith("pushing main to 'origin' failed: ") and "does not appear to be a git repository" in message
    )
    assert "main here keeps its new commits" in message and f"`git -C {work} push origin main`" in message
    assert repo.head() == head


SECOND_COMMIT_HANGS = """#!/bin/sh
if [ -e "$GIT_DIR/../once" ] || [ -e .git/../once ]; then echo "hook waiting"; sleep 60; fi
touch once
"""


def test_a_revert_cancelled_half_way_puts_the_branch_back(work, lines):
    # A hook that hangs on the second of two reverts: cancelling then must not leave one revert made
    # and git in the middle of a revert sequence.
    hook = work / ".git" / "hooks" / "prepare-commit-msg"
    hook.write_text(SECOND_COMMIT_HANGS)
    hook.chmod(0o755)
    (work / ".git" / "info" / "exclude").write_text("once\n")
    repo = repo_of(work)
    sink = Lines(cancel_when=lambda seen: "hook waiting" in seen.text())
    with pytest.raises(CommandCancelled):
        repo.revert([lines["c4"], lines["c3"]], sink=sink)
    assert repo.head() == lines["c4"] and status(work) == ""
    assert not (work / ".git" / "sequencer").exists() and not (work / ".git" / "REVERT_HEAD").exists()
    assert (work / "f").read_text() == "c\n" and (work / "g").exists()


def test_a_merge_cancelled_while_a_hook_hangs_puts_the_branch_back(work, lines):
    git(work, "checkout", "--quiet", "-b", "feature", lines["c2"])
    feature = commit(work, "feature", h="h\n")
    git(work, "checkout", "--quiet", "main")
    hook = work / ".git" / "hooks" / "prepare-commit-msg"
    hook.write_text(SECOND_COMMIT_HANGS)
    hook.chmod(0o755)
    (work / ".git" / "info" / "exclude").write_text("once\n")
    (work / "once").write_text("")  # the merge commit's hook hangs
    repo = repo_of(work)
    with pytest.raises(CommandCancelled):
        repo.merge(feature, sink=Lines(cancel_when=lambda seen: "hook waiting" in seen.text()))
    assert repo.head() == lines["c4"] and status(work) == ""
    assert not (work / ".git" / "MERGE_HEAD").exists() and not (work / "h").exists()


# --- hooks and silent failures -----------------------------------------------------------


def hook(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_a_hook_that_fails_without_a_word_is_named_with_the_command_to_run(work, lines):
    """A post-checkout hook exits 1 silently while a revert puts back what the release wrote: the error names
    git's command, its exit status, that nothing was printed, the exact command to run by hand, and the hook."""
    repo = repo_of(work)
    (work / "f").write_text("written by a release command\n")
    repo.record_release_writes()
    hook(work / ".git" / "hooks", "post-checkout", "exit 1")
    with pytest.raises(GitError) as caught:
        repo.revert([lines["c4"]])
    message = caught.value.message
    assert message.startswith("git checkout failed (exit status 1) and it printed nothing"), message
    assert f"`git -C {work} checkout HEAD -- ':(top,literal)f'`" in message, message
    assert f"the post-checkout hook in {(work / '.git' / 'hooks').resolve()} runs on git checkout" in message
    assert caught.value.returncode == 1 and caught.value.stderr == caught.value.stdout == ""
    assert repo.head() == lines["c4"]  # the revert itself never ran


def test_a_refusing_hook_under_core_hooks_path_is_named_though_git_blames_something_else(work, lines):
    """A pre-merge-commit hook (core.hooksPath, relative) exits 1: git says only "Not committing merge"."""
    git(work, "checkout", "--quiet", "-b", "side", lines["c3"])
    commit(work, "side", h="h\n")
    git(work, "checkout", "--quiet", "main")
    git(work, "config", "core.hooksPath", "ci/hooks")
    hook(work / "ci" / "hooks", "pre-merge-commit", "exit 1")
    repo = repo_of(work)
    with pytest.raises(GitError) as caught:
        repo.merge(git(work, "rev-parse", "side"))
    message = caught.value.message
    assert "git merge failed (exit status 1): Not committing merge" in message, message
    assert f"the pre-merge-commit hook in {(work / 'ci' / 'hooks').resolve()} runs on git merge" in message, message
    assert "nothing was changed (main is still at" in message, message
    assert repo.head() == lines["c4"] and status(work) == "?? ci/"


def test_only_executable_hooks_that_the_command_runs_are_named(work, lines):
    hook(work / ".git" / "hooks", "post-checkout.sample", "exit 1")  # not a hook git runs: never named
    repo = repo_of(work)
    assert repo.hooks("checkout") == "" and repo.hooks("status") == ""
    hook(work / ".git" / "hooks", "pre-push", "exit 1")
    assert repo.hooks("push").startswith("the pre-push hook in ")
    assert repo.hooks("checkout") == ""


def test_a_hanging_hook_is_named_when_git_times_out(work, lines):
    """A reference-transaction hook that never returns: the timeout names it as the likely cause, with the fix."""
    pid_file = work.parent / "hook.pid"
    hook(work / ".git" / "hooks", "reference-transaction", f"echo $$ > {pid_file}; exec sleep 600")
    repo = GitRepo(work, "main", timeout=1)
    with pytest.raises(GitError) as caught:
        repo.reset_hard(lines["c2"])
    # stopped with git, not left sleeping (a zombie no one reaps has ended too)
    hung = procfs.stat(int(pid_file.read_text()))
    assert hung is None or hung.gone, hung
    message = caught.value.message
    assert message.startswith("git reset did not finish within 1 s and was stopped;"), message
    assert f"the reference-transaction hook in {(work / '.git' / 'hooks').resolve()} runs on git reset" in message
    assert "most likely hangs" in message and "never skips them" in message, message
    (work / ".git" / "hooks" / "reference-transaction").unlink()
    assert repo_of(work).head() == lines["c4"]


def test_a_mute_pre_push_hook_is_named_though_git_only_says_the_push_failed(tmp_path, work, lines):
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True, env=GIT_ENV)
    git(work, "remote", "add", "origin", str(bare))
    hook(work / ".git" / "hooks", "pre-push", "exit 1")
    with pytest.raises(GitError) as caught:
        repo_of(work, remote="origin").push()
    message = caught.value.message
    assert "pushing main to 'origin' failed: error: failed to push some refs" in message, message
    assert f"the pre-push hook in {(work / '.git' / 'hooks').resolve()} runs on git push" in message, message
    assert "main here keeps its new commits" in message


def test_a_hook_git_blames_itself_is_not_named_twice(work, lines):
    hook(work / ".git" / "hooks", "reference-transaction", 'test "$1" != prepared')
    with pytest.raises(GitError) as caught:
        repo_of(work).reset_hard(lines["c2"])
    assert caught.value.message == "git reset failed (exit status 128): fatal: ref updates aborted by hook"


def test_a_failed_revert_says_in_its_log_that_it_was_abandoned_even_when_a_cancel_comes_meanwhile(work, lines):
    """git's last words on a conflict advise resolving and `git revert --continue`: the log goes on to show the
    abort and says the branch is back, so nobody follows that advice. A cancel asked as the conflict is reported
    (the sink says cancelled from then on) does not stop the putting back half-way."""
    repo = repo_of(work)
    seen = Lines(cancel_when=lambda said: any("CONFLICT" in text for _, text in said))
    with pytest.raises(RevertConflict):
        repo.revert([lines["c2"]], sink=seen)
    assert ("cmd", "$ git revert --abort") in seen, seen
    stream, last = seen[-1]
    assert stream == "out" and last.startswith(f"revert abandoned: {repo.branch} is back at {lines['c4'][:7]}")
    assert "`git revert --continue`) does not apply" in last
    assert git(work, "rev-parse", "HEAD") == lines["c4"] and status(work) == ""
    assert not (work / ".git" / "REVERT_HEAD").exists()
