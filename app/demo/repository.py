"""The demo app's folder: a git repository holding the history in history.py, and its .env (not in git)."""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime, timedelta

from app.demo import history
from app.demo.command import run
from app.demo.target import DemoTarget, OnLine
from app.targets.environment import inherited_env

AUTHOR_NAME = "Demo Developer"
AUTHOR_EMAIL = "dev@demo.invalid"
CREATE_DATE = re.compile(r"^Create Date: .*$", re.M)


def build_repository(t: DemoTarget, say: OnLine) -> None:
    """main with the history, one commit a working day or so; the bad commit and the migration commit on branches."""
    git = ["git", "-C", str(t.app_dir)]
    env = _git_env()
    run([*git, "init", "--quiet", "--initial-branch=main"], env=env, what=f"{t.name}: git init")
    run([*git, "config", "user.name", AUTHOR_NAME], env=env, what=f"{t.name}: git config")
    run([*git, "config", "user.email", AUTHOR_EMAIL], env=env, what=f"{t.name}: git config")
    now = datetime.now(UTC)
    times = _commit_times(len(history.HISTORY), now)
    for commit, when in zip(history.HISTORY, times, strict=True):
        _commit(t, commit, when)
    for branch, commit, ago in (
        (history.BAD_BRANCH, history.BAD_COMMIT, timedelta(hours=1)),
        (history.MIGRATION_BRANCH, history.MIGRATION_COMMIT, timedelta(hours=2)),
    ):
        run([*git, "checkout", "--quiet", "-b", branch, "main"], env=env, what=f"{t.name}: git checkout")
        _commit(t, commit, now - ago)
    run([*git, "checkout", "--quiet", "main"], env=env, what=f"{t.name}: git checkout")
    say(
        f"{t.name}: git repository with {len(history.HISTORY)} commits on main, "
        f"{history.BAD_BRANCH} and {history.MIGRATION_BRANCH}"
    )


def write_env_file(t: DemoTarget) -> None:
    """The app's settings, readable by its owner only (it holds a secret key)."""
    text = (
        f"# Settings of the demo app ({t.name}), written by `flask rewind demo`. Not in git.\n"
        f"APP_ENV={t.name}\n"
        f"DATABASE_URL={t.database_url}\n"
        f"PORT={t.port}\n"
        "FEATURE_X=on\n"
        f"SECRET_KEY=demo-not-a-secret-{secrets.token_hex(12)}\n"
    )
    fd = os.open(t.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _git_env(when: datetime | None = None) -> dict[str, str]:
    env = inherited_env()
    env.setdefault("PATH", os.defpath)
    env.update(
        LC_ALL="C",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,  # the operator's hooks, signing or templates must not shape the demo
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
    )
    if when is not None:
        stamp = f"@{int(when.timestamp())} +0000"
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return env


def _commit_times(count: int, now: datetime) -> list[datetime]:
    """One commit a working day or so over the last week and a half, the newest a few hours ago."""
    newest = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    hours = ((9, 12), (14, 47), (11, 3), (16, 21), (10, 38), (15, 5), (13, 56))
    times = []
    for i in range(count - 1):
        hour, minute = hours[i % len(hours)]
        times.append((newest - timedelta(days=(count - 1 - i) * 1.5)).replace(hour=hour, minute=minute))
    return sorted([*times, newest])


def _write_files(t: DemoTarget, commit: history.Commit, created: datetime) -> None:
    """The commit's files into the work tree; a migration's Create Date is when it was written."""
    stamp = f"Create Date: {created:%Y-%m-%d %H:%M:%S.%f}"
    for relative, source in commit.files.items():
        text = source.read_text(encoding="utf-8")
        if relative.startswith("migrations/versions/"):
            text = CREATE_DATE.sub(stamp, text, count=1)
        path = t.app_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _commit(t: DemoTarget, commit: history.Commit, when: datetime) -> None:
    _write_files(t, commit, when - timedelta(minutes=20))
    env = _git_env(when)
    run(["git", "-C", str(t.app_dir), "add", "--all"], env=env, what=f"{t.name}: git add")
    run(
        ["git", "-C", str(t.app_dir), "commit", "--quiet", "--no-verify", "-m", commit.message],
        env=env,
        what=f"{t.name}: git commit",
    )
