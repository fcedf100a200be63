"""A checkout with a submodule: git moves the commit the branch records, never the submodule's checkout.
A revert, reset or deploy that moves the pointer moves the checkout too, refuses first when it cannot, and says
so when the submodule is not checked out here at all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.targets.git import GitError, GitRepo, SubmoduleNotReady
from tests.support.sinks import Lines
from tests.targets.test_git import GIT_ENV, commit, git, status


def sub_git(repo: Path, *args: str) -> str:
    return git(repo, "-c", "protocol.file.allow=always", *args)


@pytest.fixture
def shop(tmp_path) -> dict:
    """lib: l1, l2. app: a1; "add lib at l1"; "bump lib to l2" (lib checked out at l2)."""
    lib = tmp_path / "lib"
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(lib)], check=True, env=GIT_ENV)
    l1 = commit(lib, "l1", **{"lib.py": "v1\n"})
    l2 = commit(lib, "l2", **{"lib.py": "v2\n"})
    app = tmp_path / "app"
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(app)], check=True, env=GIT_ENV)
    a1 = commit(app, "a1", **{"app.py": "a\n"})
    sub_git(app, "submodule", "add", "--quiet", str(lib), "lib")
    git(app / "lib", "checkout", "--quiet", l1)
    git(app, "add", "lib")
    git(app, "commit", "--quiet", "-m", "add lib at l1")
    added = git(app, "rev-parse", "HEAD")
    git(app / "lib", "checkout", "--quiet", l2)
    git(app, "add", "lib")
    git(app, "commit", "--quiet", "-m", "bump lib to l2")
    bumped = git(app, "rev-parse", "HEAD")
    assert status(app) == ""
    return {"app": app, "lib": lib, "l1": l1, "l2": l2, "a1": a1, "added": added, "bumped": bumped}


def test_a_revert_of_a_submodule_bump_moves_the_submodules_checkout_back(shop):
    sink = Lines()
    GitRepo(shop["app"], "main").revert([shop["bumped"]], sink=sink)
    assert git(shop["app"] / "lib", "rev-parse", "HEAD") == shop["l1"]
    assert (shop["app"] / "lib" / "lib.py").read_text() == "v1\n"
    assert status(shop["app"]) == "", "the checkout is what the branch records"
    assert f"moved submodule lib to {shop['l1'][:12]}, the commit main now records" in sink.text()
    assert GitRepo(shop["app"], "main").checkout_drift() is None


def test_a_reset_and_a_deploy_move_it_too(shop):
    repo = GitRepo(shop["app"], "main")
    repo.reset_hard(shop["added"])
    assert git(shop["app"] / "lib", "rev-parse", "HEAD") == shop["l1"] and status(shop["app"]) == ""
    repo.merge(shop["bumped"])  # forward again, as a deploy
    assert git(shop["app"] / "lib", "rev-parse", "HEAD") == shop["l2"] and status(shop["app"]) == ""


def test_a_submodule_without_the_commit_refuses_before_anything_changes(tmp_path, shop):
    """lib's checkout lacks the commit the revert would record (it was never fetched there)."""
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "clone", "--quiet", str(shop["lib"]), str(elsewhere))
    unknown = commit(elsewhere, "never fetched into the app's lib", **{"lib.py": "v1.5\n"})
    app = shop["app"]
    git(app, "update-index", "--cacheinfo", f"160000,{unknown},lib")
    git(app, "commit", "--quiet", "-m", "point lib at a commit only elsewhere has")
    git(app / "lib", "checkout", "--quiet", shop["l2"])
    git(app, "add", "lib")
    git(app, "commit", "--quiet", "-m", "bump lib to l2 again")
    head = git(app, "rev-parse", "HEAD")
    with pytest.raises(SubmoduleNotReady) as caught:
        GitRepo(app, "main").revert([head])
    words = caught.value.in_words()
    assert f"it moves the submodule lib to {unknown[:12]}, a commit its checkout {app / 'lib'} does not have" in words
    assert f"`git -C {app / 'lib'} fetch`" in words and "nothing was changed" in words
    assert caught.value.path == "lib" and caught.value.wanted == unknown
    assert git(app, "rev-parse", "HEAD") == head and git(app / "lib", "rev-parse", "HEAD") == shop["l2"]


def test_a_submodule_with_edits_refuses_before_anything_changes(shop):
    """Edits inside a submodule make the superproject's checkout dirty: refused as any edit is, and kept."""
    (shop["app"] / "lib" / "lib.py").write_text("hot-fixed inside the submodule\n")
    with pytest.raises(GitError) as caught:
        GitRepo(shop["app"], "main").reset_hard(shop["added"])
    words = caught.value.in_words()
    assert words.startswith(f"cannot reset: in {shop['app']} the submodule lib is not what main records"), words
    assert f"`git -C {shop['app'] / 'lib'} status`" in words and "so nothing is lost" in words, words
    assert git(shop["app"], "rev-parse", "HEAD") == shop["bumped"]
    assert (shop["app"] / "lib" / "lib.py").read_text() == "hot-fixed inside the submodule\n"


def test_a_submodule_not_checked_out_here_is_said_to_be_left_alone(tmp_path, shop):
    clone = tmp_path / "server"
    git(tmp_path, "clone", "--quiet", str(shop["app"]), str(clone))  # no --recurse-submodules
    assert not (clone / "lib" / ".git").exists()
    sink = Lines()
    GitRepo(clone, "main").revert([shop["bumped"]], sink=sink)
    assert f"submodule lib now records {shop['l1'][:12]} but is not checked out here: not updated" in sink.text()
    assert git(clone, "ls-tree", "HEAD", "lib").split()[2] == shop["l1"]


def test_a_submodule_left_at_another_commit_is_named_as_such_not_as_an_edit(shop):
    """Someone checked out another commit inside lib by hand: "commit or discard" would be the wrong advice."""
    git(shop["app"] / "lib", "checkout", "--quiet", shop["l1"])
    (shop["app"] / "app.py").write_text("edited\n")
    with pytest.raises(GitError) as caught:
        GitRepo(shop["app"], "main").revert([shop["bumped"]])
    words = caught.value.in_words()
    assert "the submodule lib is not what main records (its checkout is at another commit" in words, words
    assert "and there are uncommitted changes to app.py" in words, words
    assert f"`git -C {shop['app']} submodule update -- lib`" in words, words
    assert git(shop["app"], "rev-parse", "HEAD") == shop["bumped"]
