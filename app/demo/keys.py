"""The demo target's GnuPG key, for its backups: made in its own GnuPG home, with no agent left behind."""

from __future__ import annotations

from pathlib import Path

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


def stop_agent_of(home: Path, who: str, say: OnLine) -> None:
    """Stop the gpg-agent of a GnuPG home Rewind used, and remove the sockets a killed one left; says each."""
    if not home.is_dir():
        return
    clear_stale_sockets(home, who, say)
    if GpgHome(home).stop_agent():
        say(f"{who}: stopped the gpg-agent of {home}")


def clear_stale_sockets(home: Path, who: str, say: OnLine) -> None:
    """Remove the sockets a killed gpg-agent left for home (gpg would start a new agent anyway); says so."""
    if not home.is_dir():
        return
    removed = GpgHome(home).remove_stale_sockets()
    if removed:
        names = ", ".join(p.name for p in removed)
        say(f"{who}: removed the sockets a killed gpg-agent left in {removed[0].parent} ({names})")
