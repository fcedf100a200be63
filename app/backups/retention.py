"""Which backups to delete: keep the last N and the newest of each day for D days, and always the newest verified.

Only backups Rewind made are ever deleted; files someone else put in the
folder are theirs to remove. Without `keep_last` nothing is deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from app.backups.catalog import Backup, Catalog, manifest_path


def plan(backups: list[Backup], keep_last: int | None, keep_daily_days: int, now: datetime) -> list[Backup]:
    """The backups retention would delete, oldest first; never the newest verified one, never a foreign file.

    A backup of a restore's copy is left out: it holds rows no other backup has, taken on purpose.
    """
    if keep_last is None:
        return []
    backups = [b for b in backups if not b.of_copy]
    own = sorted((b for b in backups if not b.foreign), key=lambda b: (b.time, b.id), reverse=True)
    keep = {b.id for b in own[:keep_last]}
    seen_days: set = set()
    for b in own:
        day = b.time.date()
        if now - b.time <= timedelta(days=keep_daily_days) and day not in seen_days:
            seen_days.add(day)
            keep.add(b.id)
    newest_verified = next(
        (b for b in sorted(backups, key=lambda b: b.time, reverse=True) if b.state == "verified"), None
    )
    if newest_verified is not None:
        keep.add(newest_verified.id)
    return sorted((b for b in own if b.id not in keep), key=lambda b: b.time)


def delete(catalog: Catalog, backup: Backup) -> None:
    """The backup and its manifest; the id is checked against the catalog again first."""
    with catalog.locked():  # not between another job's read and write of its manifest
        checked = catalog.get(backup.id)
        checked.path.unlink()
        manifest_path(checked.path).unlink(missing_ok=True)
