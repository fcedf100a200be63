"""Files written whole: a new file no one else is writing, and the folder's entry made durable after a rename.

Shared by every writer that must never leave half a file behind (backups, their manifests, env files, exports):
each writes under a temporary name, fsyncs, renames over the final name, then syncs the folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def create_new(path: Path, mode: int = 0o600) -> BinaryIO:
    """Open `path` for writing, readable by its owner only; FileExistsError when it exists (another writer has it,
    or it is someone's own file: neither is overwritten)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb")


def sync_dir(folder: Path) -> None:
    """Make a rename in `folder` survive a crash: a file's own fsync does not cover its name."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
