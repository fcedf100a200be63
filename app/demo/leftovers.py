"""Processes still running under the demo root once it is stopped: found, so they are named, never guessed at."""

from __future__ import annotations

import os
from pathlib import Path


def processes_under(root: Path) -> list[tuple[int, str]]:
    """Live processes whose working directory or command line lies under root: (pid, command line)."""
    root_text = str(Path(root).resolve())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except (OSError, IndexError):
            continue
        under = cwd == root_text or cwd.startswith(root_text + "/") or root_text + "/" in cmdline
        if state != "Z" and under:
            found.append((int(entry), cmdline.strip()))
    return found
