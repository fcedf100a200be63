"""Processes still running under the demo root once it is stopped: found, so they are named, never guessed at."""

from __future__ import annotations

import os
from pathlib import Path

from app.targets import procfs


def processes_under(root: Path) -> list[tuple[int, str]]:
    """Live processes whose working directory or command line lies under root: (pid, command line)."""
    root_text = str(Path(root).resolve())
    found = []
    for pid in procfs.pids():
        if pid == os.getpid():
            continue
        try:
            state = procfs.stat(pid)
            cmdline = procfs.cmdline(pid)
            cwd = procfs.cwd(pid)
        except OSError:
            continue
        under = cwd == root_text or cwd.startswith(root_text + "/") or root_text + "/" in cmdline
        if state is not None and not state.gone and under:
            found.append((pid, cmdline))
    return found
