"""A real GnuPG home whose secret key has a passphrase, as teams protect their backup keys."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.targets.gpg import GpgHome

# A quote and spaces: the shell-quoted form a log may show is masked too, and gpg takes the whole line.
PASSPHRASE = "correct horse 'battery' staple 7"
LOCKED_RECIPIENT = "locked@example.invalid"


@contextmanager
def locked_home() -> Iterator[GpgHome]:
    """A home (short path, for gpg-agent's sockets) with one key protected by PASSPHRASE, nothing cached."""
    root = Path(tempfile.mkdtemp(prefix="rwl-", dir="/tmp"))
    home = GpgHome.create(root / "l")
    try:
        home.generate_key("Locked backups", LOCKED_RECIPIENT, passphrase=PASSPHRASE)
        forget_passphrase(home)
        yield home
    finally:
        home.stop_agent()
        shutil.rmtree(root, ignore_errors=True)


def forget_passphrase(home: GpgHome) -> None:
    """Stop the home's gpg-agent, so no passphrase it was given earlier unlocks the key from its cache."""
    home.stop_agent()
