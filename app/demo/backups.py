"""The demo's first backups: two per target, made by Rewind's own backup code, so a restore works on first sight.

The older backup is taken, then a few users sign up, then the newest: restoring
the newest after deleting rows brings them back, and restoring the older one
visibly rolls back the sign-ups.
"""

from __future__ import annotations

from pathlib import Path

from app.backups.create import create_backup
from app.backups.setup import BackupSetup, setup_of
from app.backups.verify import quick_verify
from app.demo import keys
from app.demo.sample import add_newer_signups
from app.demo.target import DemoError, DemoTarget, OnLine
from app.targets.command import NullSink
from app.targets.errors import TargetError
from app.targets.registry import Targets


def take_first_backups(demo: dict[str, DemoTarget], targets_file: Path, say: OnLine) -> None:
    """For each target, as the targets file declares it: a verified backup, new sign-ups, another verified backup."""
    targets = Targets(targets_file, targets_file.parent).load()
    for t in demo.values():
        try:
            setup = setup_of(targets.open(t.name))
            older = _verified_backup(setup)
            added = add_newer_signups(t.database_url if t.pg_port else t.db_path, seed=f"{t.name}:{t.port}")
            newest = _verified_backup(setup)
        except TargetError as exc:
            raise DemoError(f"{t.name}: the first backups failed: {exc}") from None
        finally:
            keys.stop_agent(t)
        say(
            f"{t.name}: backups {older} and, after {added['users']} more sign-ups, {newest} "
            f"(encrypted to {t.recipient}, verified)"
        )


def _verified_backup(setup: BackupSetup) -> str:
    sink = NullSink()
    backup = create_backup(setup, sink)
    detail = quick_verify(setup, backup, sink)
    setup.catalog.record_verification(backup, how="quick", ok=True, detail=detail, job_id=None)
    return backup.id
