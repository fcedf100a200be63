"""What stands in the way of a git change before it starts: a lock file, or an operation someone began by hand.

Git finds a lock it did not take only when it reaches it ("Unable to create … File exists"), by which time it
may have changed part of what it touches (a reset moves the branch, then fails on ORIG_HEAD.lock). Rewind
looks first and refuses before anything changes. It never removes a lock or ends an operation itself: a
lock may belong to a git still running, and a half-done rebase is someone's work.
Reads files and /proc only; no Flask, no jobs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.targets import procfs

# The files at the top of the git directory that every worktree shares (git's own list); the rest (index, HEAD,
# ORIG_HEAD …) are each worktree's, kept in its own git directory.
SHARED = frozenset({"config.lock", "packed-refs.lock", "shallow.lock", "gc.pid.lock"})


@dataclass(frozen=True)
class Lock:
    path: Path
    age_s: float  # since the file was last written


@dataclass(frozen=True)
class GitProcess:
    pid: int
    command: str  # its command line, "" when unreadable


@dataclass(frozen=True)
class Operation:
    name: str  # "a rebase"
    marker: Path  # what git left in the git directory
    command: str  # the git command that finishes or aborts it: "rebase", "am", "bisect" …

    @property
    def choices(self) -> str:
        if self.command == "bisect":
            return "`bisect reset`"
        return f"`{self.command} --continue` or `{self.command} --abort`"


def locks(git_dir: Path, common_dir: Path, refs: Iterable[str] = ()) -> list[Lock]:
    """The lock files git would need to take: every `*.lock` at the top of the git directories
    (index, HEAD, ORIG_HEAD, packed-refs, config …) and those of the given refs (`refs/heads/main`)."""
    candidates: list[Path] = []
    for folder in dict.fromkeys((git_dir, common_dir)):
        try:
            found = sorted(entry for entry in folder.iterdir() if entry.name.endswith(".lock"))
        except OSError:
            continue
        if folder != git_dir:  # a linked worktree: of the main checkout's own files, only the shared ones count
            found = [entry for entry in found if entry.name in SHARED]
        candidates += found
    for ref in refs:
        base = common_dir / ref
        candidates.append(base.with_name(base.name + ".lock"))
        if base.is_dir():  # a whole namespace, such as refs/remotes/origin
            candidates += sorted(base.rglob("*.lock"))
    found, now = [], time.time()
    for path in dict.fromkeys(candidates):
        try:
            found.append(Lock(path, max(0.0, now - path.stat().st_mtime)))
        except OSError:
            continue
    return found


def written_since(found: Sequence[Lock], seconds: float) -> list[Lock]:
    """The locks written in the last `seconds`: those a command that ran that long may have left."""
    return [lock for lock in found if lock.age_s <= seconds]


def git_processes(folders: Sequence[Path]) -> tuple[list[GitProcess], list[int]]:
    """Git processes working in one of these folders (their current folder is in one), and the pids of git
    processes whose folder cannot be read (another user's): of those nobody can say where they work."""
    places = [os.path.realpath(folder) for folder in folders]
    seen, unseen = [], []
    try:
        running = list(procfs.pids())
    except OSError:
        return [], []
    for pid in running:
        if pid == os.getpid():
            continue
        try:
            name = procfs.comm(pid)
        except OSError:
            continue
        if name != "git" and not name.startswith("git-"):
            continue
        try:
            cwd = procfs.cwd(pid)
        except PermissionError:
            unseen.append(pid)
            continue
        except OSError:  # it ended between the two reads (or is a zombie, working nowhere)
            continue
        if any(cwd == place or cwd.startswith(place + os.sep) for place in places):
            try:
                command = procfs.cmdline(pid)
            except OSError:
                command = ""
            seen.append(GitProcess(pid, command))
    return _outermost(seen), unseen


def _outermost(found: list[GitProcess]) -> list[GitProcess]:
    """The git processes no other of them started: what a git runs (a hook, an editor, a git of its own, or its
    fork about to become one, which still reads as the same git command) is that git's work, not another's."""
    pids = {p.pid for p in found}

    def started_by_another(pid: int) -> bool:
        for _ in range(32):  # a process tree is shallow; a bound keeps a cycle of reused pids from looping
            stat = procfs.stat(pid)
            if stat is None or stat.ppid <= 1:
                return False
            if stat.ppid in pids:
                return True
            pid = stat.ppid
        return False

    return [p for p in found if not started_by_another(p.pid)]


def operation(git_dir: Path) -> Operation | None:
    """The operation git is in the middle of in this working tree (its per-worktree git directory), if any."""

    def there(name: str) -> Path | None:
        path = git_dir / name
        return path if path.exists() else None

    if marker := there("rebase-merge"):
        return Operation("a rebase", marker, "rebase")
    if marker := there("rebase-apply"):
        if (marker / "applying").exists():
            return Operation("a `git am` (applying mailed patches)", marker, "am")
        return Operation("a rebase", marker, "rebase")
    if marker := there("MERGE_HEAD"):
        return Operation("a merge", marker, "merge")
    if marker := there("CHERRY_PICK_HEAD"):
        return Operation("a cherry-pick", marker, "cherry-pick")
    if marker := there("REVERT_HEAD"):
        return Operation("a revert", marker, "revert")
    if marker := there("sequencer"):
        # A stopped series (cherry-pick or revert of several commits) between two of its commits.
        try:
            first = (marker / "todo").read_text().split(maxsplit=1)
        except OSError:
            first = []
        command = "revert" if first and first[0] == "revert" else "cherry-pick"
        return Operation(f"a {command} of several commits", marker, command)
    if marker := there("BISECT_LOG"):
        return Operation("a bisect", marker, "bisect")
    return None


def age_words(seconds: float) -> str:
    """A lock's age as a person reads it: "40 s", "12 min", "3 h", "2 days"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
