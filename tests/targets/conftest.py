"""The repository most git tests start from, shared by the files that test the git adapter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.targets.test_git import GIT_ENV, commit


@pytest.fixture
def work(tmp_path) -> Path:
    repo = tmp_path / "app"
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(repo)], check=True, env=GIT_ENV)
    return repo


@pytest.fixture
def lines(work) -> dict[str, str]:
    """main: c1 creates f=a, c2 f=b, c3 f=c, c4 adds g — shas by name."""
    return {
        "c1": commit(work, "one", f="a\n"),
        "c2": commit(work, "two", f="b\n"),
        "c3": commit(work, "three", f="c\n"),
        "c4": commit(work, "four", g="g\n"),
    }
