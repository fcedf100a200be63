"""Can each part of a target be reached, and does every path it names exist? Used by `targets check`; never raises."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import psycopg

from app.targets.environment import inherited_env
from app.targets.errors import TargetError
from app.targets.git import GitError
from app.targets.gpg import GpgHome
from app.targets.target import Target

PARTS = ("repo", "health", "database", "process")  # what is reached; the other results are keys of paths


def reach(target: Target) -> list[tuple[str, bool, str]]:
    results = []
    try:
        repo = target.git()
        repo.check()
        results.append(("repo", True, f"{target.config.repo.branch} at {repo.head()[:12]}"))
    except GitError as exc:
        results.append(("repo", False, exc.message))
    if (check := target.health()) is not None:
        probe = check.probe(request_timeout_s=3)
        results.append(("health", probe.ok, str(probe)))
    if (database := target.config.database) is not None:
        results.append(("database", *database_reachable(database.url)))
    try:
        control = target.process()
    except TargetError as exc:  # its env file (process.env_file) cannot be read: often the incident itself
        results.append(("process", False, f"its commands cannot run: {exc.message}"))
        control = None
    if control is not None:
        status = control.status()
        running = {True: "running", False: "not running", None: "state unknown"}[status.running]
        note = status.note or ""
        detail = note if note.startswith(running) else f"{running}: {note}" if note else running
        results.append(("process", status.running is not False, detail))
    results += paths(target)
    if (backups := target.config.backups) is not None and backups.passphrase is not None:
        results.append(("backups.passphrase", *passphrase_unlocks(target)))
    return results


def passphrase_unlocks(target: Target) -> tuple[bool, str]:
    """Whether backups.passphrase unlocks the secret key of the recipients: a few bytes encrypted and decrypted in
    the target's GnuPG home, as a backup would be (gpg-agent may have the passphrase cached for a while)."""
    backups = target.config.backups
    if not backups.recipients:
        return False, "no recipients to check it with — set backups.recipients"
    try:
        env = target.command_env()
        home = GpgHome(
            backups.gpg_home or Path(env.get("HOME", "~")).expanduser() / ".gnupg",
            env=env,
            passphrase=backups.passphrase,
        )
        return True, home.check_unlocks(backups.recipients)
    except TargetError as exc:
        return False, exc.in_words()


def paths(target: Target) -> list[tuple[str, bool, str]]:
    """Each configured folder, file and program, named by its key in the targets file, so a typo is found at once."""
    config = target.config
    try:
        env = target.command_env()
    except TargetError:  # reach() has said why; the programs are still looked for on the target's PATH
        env = inherited_env() | dict(config.process.env if config.process else {})
    repo = config.repo.path
    results = []

    def need(key: str, path: Path | None, folder: bool) -> None:
        if path is None:
            return
        kind = "folder" if folder else "file"
        if path.is_dir() if folder else path.is_file():
            results.append((key, True, f"{kind} {path}"))
        elif path.exists():
            results.append((key, False, f"{path} is not a {kind} — check {key} in the targets file"))
        else:
            results.append((key, False, f"{path} does not exist — check {key} in the targets file"))

    def program(key: str, argv: Sequence[str] | None, cwd: Path) -> None:
        if argv:
            ok, detail = program_found(argv[0], env, cwd)
            results.append((key, ok, detail if ok else f"{detail} — check {key} in the targets file"))

    if (database := config.database) is not None:
        need("database.migrations", database.migrations, folder=True)
        program("database.flask", database.flask, repo)
    need("env_file", config.env_file, folder=False)
    if (backups := config.backups) is not None:
        need("backups.dir", backups.dir, folder=True)
        need("backups.gpg_home", backups.gpg_home, folder=True)
    if (process := config.process) is not None:
        need("process.cwd", process.cwd, folder=True)
        program("process.command", process.command, process.cwd or repo)
    if (release := config.release) is not None:
        for n, argv in enumerate(release.commands, 1):
            program(f"release.commands[{n}]", argv, repo)
    return results


def program_found(name: str, env: dict[str, str], cwd: Path) -> tuple[bool, str]:
    """Whether a command's program can run: a path (absolute or from cwd) or a name on the target's PATH."""
    if "/" in name:
        path = Path(name) if os.path.isabs(name) else cwd / name
        if not path.is_file():
            return False, f"program {path} does not exist"
        if not os.access(path, os.X_OK):
            return False, f"program {path} is not executable"
        return True, f"program {path}"
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        return False, f"program {name!r} is not on the target's PATH ({env.get('PATH', os.defpath)})"
    return True, f"program {found}"


def database_reachable(url: str) -> tuple[bool, str]:
    """Connect and run SELECT 1 (read-only for SQLite); never raises."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return False, f"{path} does not exist"
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=3) as conn:
                conn.execute("SELECT 1")
        except sqlite3.Error as exc:
            return False, str(exc)
        return True, f"sqlite {path}"
    try:
        with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return True, "postgresql reachable"
