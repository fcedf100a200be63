"""Files tracked by git LFS on a host where git-lfs is not installed (or no longer on PATH), or never configured."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from app.targets.git import FilterMissing, GitRepo
from tests.support.sinks import Lines
from tests.targets.test_git import GIT_ENV, commit, git, status


def pointer(size: int) -> str:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{size:064d}\nsize {size}\n"


@pytest.fixture
def work(tmp_path) -> Path:
    """model.bin through LFS (pointer files, committed where git-lfs ran), then the config `git lfs install
    --local` writes: the filter is required, and its program is missing here."""
    repo = tmp_path / "app"
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(repo)], check=True, env=GIT_ENV)
    commit(repo, "track models with LFS", **{".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n"})
    commit(repo, "model v1", **{"model.bin": pointer(10), "app.py": "v1\n"})
    commit(repo, "model v2", **{"model.bin": pointer(12)})
    commit(repo, "app v2", **{"app.py": "v2\n"})
    # Files older than the index, as on a server: git trusts its index and does not run them through the filter.
    for name in ("model.bin", "app.py", ".gitattributes"):
        os.utime(repo / name, (1_000_000_000, 1_000_000_000))
    git(repo, "update-index", "--refresh")
    git(repo, "config", "filter.lfs.process", "git-lfs filter-process")
    git(repo, "config", "filter.lfs.smudge", "git-lfs smudge -- %f")
    git(repo, "config", "filter.lfs.clean", "git-lfs clean -- %f")
    git(repo, "config", "filter.lfs.required", "true")
    return repo


@pytest.fixture
def without_lfs(tmp_path) -> dict[str, str]:
    """An environment whose PATH has git and nothing else: git-lfs is not installed, whatever this host has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("git"), bin_dir / "git")
    return {"PATH": str(bin_dir), "HOME": "/nonexistent"}


def log(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%s").splitlines()


def test_a_change_that_writes_lfs_files_without_git_lfs_refuses_before_anything_changes(work, without_lfs):
    repo = GitRepo(work, "main", env=without_lfs)
    before = git(work, "rev-parse", "HEAD")
    v1 = git(work, "rev-parse", "HEAD~2")
    with pytest.raises(FilterMissing) as caught:
        repo.reset_hard(v1)
    error = caught.value
    assert (error.driver, error.program, error.files) == ("lfs", "git-lfs", ["model.bin"])
    words = error.in_words()
    assert "cannot reset: it changes model.bin, which git writes through the 'lfs' filter" in words, words
    assert "`git-lfs` is not installed on this host" in words and "Nothing was changed" in words
    assert "install git-lfs for the user Rewind runs as" in words and "unset filter.lfs.required" in words
    assert git(work, "rev-parse", "HEAD") == before and status(work) == ""
    assert (work / "model.bin").read_text() == pointer(12)
    with pytest.raises(FilterMissing, match=r"cannot revert: it changes model\.bin"):
        repo.revert([git(work, "rev-parse", "HEAD~1")])
    assert git(work, "rev-parse", "HEAD") == before and status(work) == ""


def test_a_change_that_leaves_the_lfs_files_alone_goes_through(work, without_lfs):
    repo = GitRepo(work, "main", env=without_lfs)
    repo.revert([git(work, "rev-parse", "HEAD")])  # "app v2": no LFS file in it
    assert (work / "app.py").read_text() == "v1\n" and log(work)[0] == 'Revert "app v2"'


def warnings(sink: Lines) -> list[str]:
    return [text for text in sink.of("err") if text.startswith("warning:")]


@pytest.fixture
def never_installed(work) -> Path:
    """The same repository where `git lfs install` never ran: no filter.lfs config at all."""
    for key in ("process", "smudge", "clean", "required"):
        git(work, "config", "--unset", f"filter.lfs.{key}")
    return work


def test_lfs_files_written_where_the_filter_was_never_configured_are_named_in_the_log(never_installed, without_lfs):
    """git writes the pointers and says nothing; the change goes through (it always did), and the log says so."""
    repo = GitRepo(never_installed, "main", env=without_lfs)
    sink = Lines()
    repo.revert([git(never_installed, "rev-parse", "HEAD~1")], sink=sink)  # "model v2": model.bin back to v1
    assert (never_installed / "model.bin").read_text() == pointer(10)  # the pointer, as git stores it
    [warning] = warnings(sink)
    assert "revert writes model.bin through the 'lfs' filter, which this checkout has no command for" in warning
    assert "as LFS pointers, not the content" in warning and "lfs install --local`, then `git lfs pull`" in warning
    quiet = Lines()
    repo.revert([git(never_installed, "rev-parse", "HEAD~1")], sink=quiet)  # "app v2": no LFS file in it
    assert warnings(quiet) == []
