"""The demo target's GnuPG key, for its backups: made in its own GnuPG home, with no agent left behind."""

from __future__ import annotations

from app.demo.target import DemoError, DemoTarget, OnLine
from app.targets.gpg import GpgError, GpgHome


def generate_key(t: DemoTarget, say: OnLine) -> None:
    try:
        home = GpgHome.create(t.gpg_home)
        try:
            home.generate_key(f"Rewind demo {t.name}", t.recipient)
        finally:
            home.stop_agent()
    except GpgError as exc:
        raise DemoError(f"{t.name}: {exc}") from None
    say(f"{t.name}: GnuPG key for {t.recipient} in {t.gpg_home}")


def stop_agent(t: DemoTarget) -> None:
    """Stop the gpg-agent a backup or restore may have left running for the target's home."""
    if t.gpg_home.is_dir():
        t.gpg().stop_agent()
