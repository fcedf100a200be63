"""Checkouts as an incident finds them: a lock file left by a killed git, a git still at work, an operation someone
began by hand. Revert, reset and merge refuse before anything changes, naming what is in the way and the fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.targets import gitblock
from app.targets.git import GitError, GitLocked, GitRepo, OperationInProgress
from tests.conftest import wait_for
from tests.targets.test_git import GIT_ENV, commit, git, status


def changes(repo: GitRepo, lines: dict[str, str]) -> dict:
    """The three changes a person runs, each on what it needs."""
    git(repo.path, "branch", "feature", lines["c4"])
    feature_tip = commit_on(repo.path, "feature", h="h\n")
    return {
        "revert": lambda: repo.revert([lines["c4"]]),
        "reset": lambda: repo.reset_hard(lines["c2"]),
        "merge": lambda: repo.merge(feature_tip),
    }


def commit_on(work: Path, branch: str, **files: str) -> str:
    git(work, "checkout", "--quiet", branch)
    sha = commit(work, f"on {branch}", **files)
    git(work, "checkout", "--quiet", "main")
    return sha


def untouched(work: Path, lines: dict[str, str]) -> None:
    assert git(work, "rev-parse", "refs/heads/main") == lines["c4"]
    assert git(work, "rev-parse", "HEAD") == lines["c4"]
    assert (work / "f").read_text() == "c\n" and (work / "g").read_text() == "g\n"
    assert not (work / ".git" / "ORIG_HEAD").exists()  # no change even began


# --- lock files ------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["index.lock", "HEAD.lock", "refs/heads/main.lock", "ORIG_HEAD.lock"])
@pytest.mark.parametrize("action", ["revert", "reset", "merge"])
def test_a_stale_lock_refuses_before_anything_changes_and_names_the_file_its_age_and_the_fix(work, lines, lock, action):
    repo = GitRepo(work, "main")
    run = changes(repo, lines)[action]
    path = work / ".git" / lock
    path.write_text("")
    with pytest.raises(GitLocked) as caught:
        run()
    error = caught.value
    assert error.lock == path and error.running == [] and 0 <= error.age_s < 600
    words = error.in_words()
    assert words.startswith(f"cannot {action}: git's lock file {path} exists (written "), words
    assert " s ago)" in words and f"no git process works in {work}, so a git that was killed" in words, words
    assert f"remove it (`rm {path}`)" in words and "Rewind never removes it itself" in words, words
    assert path.exists(), "Rewind must never remove a lock itself"
    untouched(work, lines)
    assert status(work) == ""
    path.unlink()
    run()  # once the file is gone the same change goes through
    assert git(work, "rev-parse", "main") != lines["c4"]


def committing(work: Path, editor: Path, waits: str) -> subprocess.Popen:
    """A person's `git commit -a` of an edit on the server, its editor open until the file `done` appears: `waits`
    is the editor's wait, a shell line; it then writes the message "hot-fix"."""
    (work / "f").write_text("edited on the server\n")
    editor.write_text(f'#!/bin/sh\n{waits}\necho "hot-fix" > "$1"\n')
    editor.chmod(0o755)
    return subprocess.Popen(
        ["git", "-C", str(work), "commit", "--quiet", "-a"],
        env={**GIT_ENV, "GIT_EDITOR": str(editor)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_lock_held_by_a_git_still_at_work_names_that_process(tmp_path, work, lines):
    """`git commit -a` with its editor open holds index.lock: Rewind names the process, and says to let it finish."""
    done = tmp_path / "done"
    person = committing(work, tmp_path / "editor", f"while [ ! -e {done} ]; do sleep 0.05; done")
    try:
        lock = work / ".git" / "index.lock"
        wait_for(lock.exists, timeout=30)
        repo = GitRepo(work, "main")
        with pytest.raises(GitLocked) as caught:
            repo.revert([lines["c4"]])
        error = caught.value
        assert [p.pid for p in error.running] == [person.pid], error.running
        assert "commit" in error.running[0].command
        words = error.in_words()
        assert f"a git process still works in {work} (pid {person.pid}: git " in words, words
        assert "let it finish or stop it" in words and "git removes its lock when it ends" in words, words
        assert git(work, "rev-parse", "main") == lines["c4"]
    finally:
        done.write_text("")
        person.wait(timeout=60)
    assert person.returncode == 0
    assert git(work, "log", "-1", "--format=%s") == "hot-fix"  # the person's commit went through, untouched


def test_a_git_that_runs_gits_of_its_own_is_named_once(tmp_path, work, lines):
    """An editor (or hook) that runs git in the repository, and git's own fork about to become the editor, are the
    person's commit at work, not more people: the suite once saw that fork named beside its parent."""
    done = tmp_path / "done"
    waits = f"cd {work}\n(while [ ! -e {done} ]; do sleep 0.05; done) | git hash-object --stdin > /dev/null"
    person = committing(work, tmp_path / "editor", waits)
    try:
        inner = lambda: [p for p in gitblock.git_processes([work])[0] if "hash-object" in p.command]  # noqa: E731
        wait_for(lambda: subprocess.run(["pgrep", "-f", "hash-object --stdin"], capture_output=True).returncode == 0)
        assert inner() == []  # running, in the repository, and left out: the commit's own work
        with pytest.raises(GitLocked) as caught:
            GitRepo(work, "main").revert([lines["c4"]])
        assert [p.pid for p in caught.value.running] == [person.pid], caught.value.running
    finally:
        done.write_text("")
        person.wait(timeout=60)
    assert person.returncode == 0


def test_git_stopped_at_rewinds_timeout_takes_its_locks_and_its_hook_with_it(tmp_path, work, lines):
    """A reference-transaction hook hangs while git holds its ref locks: Rewind's timeout stops the whole group
    with SIGTERM first, on which git removes its own lock files, so the next change is not blocked."""
    hooks = work / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    hang = hooks / "reference-transaction"
    hang.write_text('#!/bin/sh\n[ "$1" = prepared ] || exit 0\nexec sleep 600\n')
    hang.chmod(0o755)
    repo = GitRepo(work, "main", timeout=1)
    with pytest.raises(GitError) as caught:
        repo.reset_hard(lines["c2"])
    hang.unlink()
    assert sorted((work / ".git").rglob("*.lock")) == []
    words = caught.value.in_words()
    assert words.startswith("git reset did not finish within 1 s and was stopped"), words
    assert "left its lock file" not in words, words
    assert repo.head() == lines["c4"]  # stopped before the branch moved
    assert repo.obstacles("reset") == []  # nothing left to block the next change


def test_a_lock_git_itself_trips_on_is_named_the_same_way(tmp_path, work, lines):
    """A lock no check looks for beforehand (a remote-tracking ref's, during a fetch): git's own refusal is
    turned into the same error, with the file, its age and the fix."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True, env=GIT_ENV)
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "--quiet", "origin", "main")
    git(work, "update-ref", "refs/remotes/origin/main", lines["c3"])  # so the fetch has a ref to move
    lock = work / ".git" / "refs" / "remotes" / "origin" / "main.lock"
    lock.write_text("")
    with pytest.raises(GitLocked) as caught:
        GitRepo(work, "main", "origin").fetch()
    assert caught.value.lock == lock
    assert caught.value.in_words().startswith(f"cannot run git fetch: git's lock file {lock} exists")
    assert git(work, "rev-parse", "refs/remotes/origin/main") == lines["c3"]


# --- an operation someone began by hand ---------------------------------------------------------


def conflicting_branch(work: Path, lines: dict[str, str]) -> str:
    git(work, "branch", "side", lines["c2"])
    return commit_on(work, "side", f="side\n")


def start_rebase(work, lines):
    git(work, "branch", "wip", lines["c4"])
    git(work, "checkout", "--quiet", "wip")
    commit(work, "wip", f="mine\n")
    conflicting_branch(work, lines)
    subprocess.run(["git", "-C", str(work), "rebase", "side"], env=GIT_ENV, capture_output=True, check=False)
    return "rebase-merge", "a rebase", "rebase"


def start_merge(work, lines):
    side = conflicting_branch(work, lines)
    subprocess.run(["git", "-C", str(work), "merge", side], env=GIT_ENV, capture_output=True, check=False)
    return "MERGE_HEAD", "a merge", "merge"


def start_cherry_pick(work, lines):
    side = conflicting_branch(work, lines)
    subprocess.run(["git", "-C", str(work), "cherry-pick", side], env=GIT_ENV, capture_output=True, check=False)
    return "CHERRY_PICK_HEAD", "a cherry-pick", "cherry-pick"


def start_revert(work, lines):
    subprocess.run(["git", "-C", str(work), "revert", lines["c2"]], env=GIT_ENV, capture_output=True, check=False)
    return "REVERT_HEAD", "a revert", "revert"


def start_bisect(work, lines):
    git(work, "bisect", "start", lines["c4"], lines["c1"])
    return "BISECT_LOG", "a bisect", "bisect"


def start_am(work, lines):
    side = conflicting_branch(work, lines)
    patch = subprocess.run(
        ["git", "-C", str(work), "format-patch", "--stdout", "-1", side], env=GIT_ENV, capture_output=True, check=True
    ).stdout
    subprocess.run(["git", "-C", str(work), "am"], input=patch, env=GIT_ENV, capture_output=True, check=False)
    return "rebase-apply", "a `git am` (applying mailed patches)", "am"


STARTS = [start_rebase, start_merge, start_cherry_pick, start_revert, start_bisect, start_am]


@pytest.mark.parametrize("start", STARTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("action", ["revert", "reset", "merge"])
def test_an_operation_begun_by_hand_is_named_with_its_fix_and_left_as_it_was(work, lines, start, action):
    repo = GitRepo(work, "main")
    run = changes(repo, lines)[action]
    marker, name, command = start(work, lines)
    before = (git(work, "rev-parse", "HEAD"), git(work, "rev-parse", "refs/heads/main"), status(work))
    assert (work / ".git" / marker).exists(), f"{start.__name__} did not stop half-way"
    with pytest.raises(OperationInProgress) as caught:
        run()
    error = caught.value
    assert (error.operation, error.command, error.marker) == (name, command, work / ".git" / marker)
    words = error.in_words()
    assert words.startswith(f"cannot {action}: {work} is in the middle of {name} started by hand"), words
    if command == "bisect":
        assert f"`git -C {work} bisect reset`" in words, words
    else:
        assert f"`git -C {work} {command} --continue`" in words and f"`git -C {work} {command} --abort`" in words
    # Nothing moved: the person's operation is still there to finish or abort.
    assert (work / ".git" / marker).exists()
    assert (git(work, "rev-parse", "HEAD"), git(work, "rev-parse", "refs/heads/main"), status(work)) == before


def test_obstacles_lists_every_one_without_raising(work, lines):
    repo = GitRepo(work, "main")
    assert repo.obstacles("revert") == []
    start_bisect(work, lines)
    (work / ".git" / "index.lock").write_text("")
    found = repo.obstacles("revert")
    assert [type(e) for e in found] == [GitLocked, OperationInProgress]


# --- a checkout whose .git is a file ----------------------------------------------------------------


@pytest.fixture
def linked(tmp_path, work, lines) -> Path:
    """main checked out in a linked worktree (`.git` there is a file naming .git/worktrees/<name>)."""
    git(work, "checkout", "--quiet", "-b", "elsewhere")
    tree = tmp_path / "deployed"
    git(work, "worktree", "add", "--quiet", str(tree), "main")
    assert (tree / ".git").is_file()
    return tree


def test_a_linked_worktree_reverts_and_resets_like_any_checkout(linked, lines):
    repo = GitRepo(linked, "main")
    repo.check()
    head = repo.revert([lines["c4"]])
    assert not (linked / "g").exists() and git(linked, "rev-parse", "HEAD") == head
    repo.tag_safety()
    assert repo.reset_hard(lines["c2"]) == lines["c2"] and (linked / "f").read_text() == "b\n"
    assert repo.checkout_drift() is None


def test_a_linked_worktrees_own_lock_and_the_shared_branch_lock_are_both_found(work, linked, lines):
    repo = GitRepo(linked, "main")
    own = work / ".git" / "worktrees" / linked.name / "index.lock"
    own.write_text("")
    with pytest.raises(GitLocked) as caught:
        repo.revert([lines["c4"]])
    assert caught.value.lock == own
    own.unlink()
    # A lock in the main checkout's own git directory is no obstacle for the linked one…
    (work / ".git" / "index.lock").write_text("")
    assert repo.obstacles("revert") == []
    # …but the branch's ref lives in the shared one.
    shared = work / ".git" / "refs" / "heads" / "main.lock"
    shared.write_text("")
    with pytest.raises(GitLocked) as caught:
        repo.reset_hard(lines["c2"])
    assert caught.value.lock == shared
    assert git(linked, "rev-parse", "HEAD") == lines["c4"]
