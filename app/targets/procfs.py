"""What /proc says about a process: one reader of its stat line, its folder and its command line.

A pid alone can be reused; a pid with its start time names one process for good, which is why the stat line's
start field matters to every caller. Reads only: nothing here signals anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

GONE = ("Z", "X", "x")  # exited (a zombie waits for its parent to collect it) or dead


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat Rewind reads."""

    state: str
    ppid: int  # its parent's pid
    pgid: int
    start_ticks: int  # clock ticks from boot to the process's start

    @property
    def gone(self) -> bool:
        return self.state in GONE


def stat(pid: int) -> Stat | None:
    """None when there is no such process (or /proc cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after its last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return Stat(state=fields[0].decode(), ppid=int(fields[1]), pgid=int(fields[2]), start_ticks=int(fields[19]))
    except (IndexError, ValueError):
        return None


def pids() -> Iterator[int]:
    """Every process this one may see, itself included."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def cwd(pid: int) -> str:
    """The process's working folder; raises PermissionError for another user's process when Rewind may not look
    (root without CAP_SYS_PTRACE), FileNotFoundError when it is gone."""
    return os.readlink(f"/proc/{pid}/cwd")


def cmdline(pid: int) -> str:
    """The process's command line, its arguments joined by spaces; raises OSError as cwd() does."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def comm(pid: int) -> str:
    """The process's short name (what `ps -o comm` shows); raises OSError when it is gone."""
    return Path(f"/proc/{pid}/comm").read_text(errors="replace").strip()


def boot_id() -> str:
    """This boot's id: a pid and start time recorded in another boot name nothing now."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def started_at(pid: int) -> datetime | None:
    """When the process started, from its start tick and the boot time."""
    found = stat(pid)
    if found is None:
        return None
    try:
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    return datetime.fromtimestamp(boot + found.start_ticks / os.sysconf("SC_CLK_TCK"), UTC)
