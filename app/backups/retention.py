"""Which backups to delete: keep the last N and the newest of each day for D days, and always the newest verified.

Only backups Rewind made are ever deleted; files someone else put in the
folder are theirs to remove. Without `keep_last` nothing is deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from app.backups.catalog import Backup, Catalog, CatalogError, NoAccess, access, manifest_path
from app.backups.status import ahead_of
from app.files import sync_dir


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
    # Not one dated in the future (a clock skew): it proves no recent backup, and must not let the real newest go.
    newest_verified = next(
        (
            b
            for b in sorted(backups, key=lambda b: b.time, reverse=True)
            if b.state.is_verified and ahead_of(b.time, now) is None
        ),
        None,
    )
    if newest_verified is not None:
        keep.add(newest_verified.id)
    return sorted((b for b in own if b.id not in keep), key=lambda b: b.time)


class HalfDeleted(CatalogError):
    """The backup file was deleted and its manifest could not be: the tab names the manifest as one without its
    backup, and the next retention deletes it."""

    def __init__(self, backup_id: str, refused: NoAccess) -> None:
        super().__init__(
            f"{backup_id} was deleted, but its manifest {refused.path.name} could not be ({refused.reason}): "
            "the Backups tab lists it as a manifest without its backup, and the next retention deletes it",
            fix=refused.fix,
        )
        self.backup_id, self.refused = backup_id, refused


def delete(catalog: Catalog, backup: Backup) -> None:
    """The backup, then its manifest; the id is checked against the catalog again first.

    In that order because a manifest left without its backup is understood (named on the tab, deleted by the
    next retention), while a backup left without its manifest would pass for a stranger's file, kept for ever
    with its verification forgotten. NoAccess when the backup may not be deleted (then nothing is);
    HalfDeleted when only its manifest is left.
    """
    with catalog.locked():  # not between another job's read and write of its manifest
        checked = catalog.get(backup.id)
        if checked.foreign or checked.of_copy:  # its manifest changed since the plan was made: not ours to delete
            raise CatalogError(
                f"{checked.id} is no longer known as a backup Rewind made of the live database; kept",
                fix="see its manifest on the Backups tab",
            )
        with access(checked.path, "backup file", "delete"):
            checked.path.unlink()
        manifest = manifest_path(checked.path)
        try:
            with access(manifest, f"manifest of {checked.id}", "delete"):
                manifest.unlink(missing_ok=True)
        except NoAccess as refused:
            raise HalfDeleted(checked.id, refused) from None
        finally:
            sync_dir(catalog.folder)


def delete_orphan(catalog: Catalog, manifest: Path) -> None:
    """A manifest of Rewind's whose backup is gone, if its backup is still gone once the lock is held."""
    with catalog.locked():
        if manifest in catalog.orphan_manifests():
            with access(manifest, "manifest without its backup", "delete"):
                manifest.unlink(missing_ok=True)
