"""The backup catalog: the backup folder itself, with a manifest file beside each backup.

The manifest (`<backup>.json`) says what the backup is: its size, time,
source database and server version, format, recipients, SHA-256, how and
when it was last verified, and which job made it. Keeping it beside the file
(not in Rewind's database) means a folder copied to another host is still
understood. Files Rewind did not make — the written procedure's
`backup_YYYYMMDD_HHMMSS.sql.gpg` plain-SQL dumps — are listed too, with what
their name tells; verifying one records a manifest for it.

A backup id is a file name in the folder, checked here before any use: no
path separators, no hidden files, nothing that resolves outside the folder.

Several jobs (a scheduled quick verify, a person's restore test) may record
on the same manifest at once, from threads or processes: every change holds
the folder's lock file across read, change and write, and reads the manifest
afresh from disk, so no writer's change is lost to another's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pwd
import re
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from app.files import sync_dir
from app.statuses import BackupState
from app.targets.errors import TargetError
from app.wording import byte_size

MANIFEST_SUFFIX = ".json"
LOCK_FILE = ".manifests.lock"
BACKUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.gpg")
FOREIGN = re.compile(r"backup_(\d{8}_\d{6})\.(sql|dump|sqlite)\.gpg")
OWN = re.compile(r".+_(\d{8}_\d{6})(?:-\d+)?\.(sql|dump|sqlite)\.gpg")
FORMATS = {"sql": "plain", "dump": "custom", "sqlite": "sqlite"}
CHUNK = 1024 * 1024


PARTIAL_SUFFIX = ".partial"
# A backup being written grows all the time; one whose file has not changed for this long was left by a job that
# stopped before it finished (a killed process), and takes disk space until cleaned up.
STALE_PARTIAL_S = 600


def _stale_partial(entry: os.DirEntry, cutoff: float) -> bool:
    if not (entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX)):
        return False
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:  # finished (renamed) or removed meanwhile
        return False
    return stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff


def partial_path(final: Path) -> Path:
    """Where a backup is written before it is complete: hidden, beside its final name."""
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


DAMAGED = "manifest_problem"  # a manifest key Rewind sets in memory only: why the manifest beside a file was not used
UNREADABLE = "manifest_unreadable"  # _stored's key for the NoAccess of a manifest Rewind may not read (never kept)


class CatalogError(TargetError):
    """A backup id that is not a backup of this target's folder, or a folder that cannot be read."""


def _rewind_user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    except KeyError:
        return f"uid {uid}"


class NoAccess(CatalogError):
    """The operating system refused Rewind's process a file or folder of the backups: nothing was read or changed.

    Not a damaged backup: the same file may be perfectly good, owned by another user or made private by hand.
    """

    def __init__(self, path: Path, what: str, doing: str, reason: str, *, read_only: bool = False) -> None:
        super().__init__(
            f"Rewind cannot {doing} the {what} {path}: {reason}; nothing was changed",
            fix=_read_only_fix(path) if read_only else _fix(path, doing),
        )
        self.path, self.what, self.doing, self.reason = path, what, doing, reason


def _read_only_fix(path: Path) -> str:
    """No chmod helps when the whole file system refuses writes."""
    return f"the file system holding {path} is mounted read-only: remount it read-write (see `findmnt -T {path}`)"


def _fix(path: Path, doing: str) -> str:
    user = _rewind_user()
    if doing == "delete":  # what allows it is the folder's mode, and the file's owner and attributes
        return (
            f"give the user Rewind runs as ({user}) write and x access to the folder {path.parent}: see "
            f"`ls -ld {path.parent}`, then chmod or chown it; in a folder with the sticky bit (t) the file must be "
            f"that user's own, and a file marked immutable (`lsattr {path}`) needs `chattr -i`"
        )
    return (
        f"give the user Rewind runs as ({user}) {doing} access to it: see `ls -ld {path}`, "
        "then chmod or chown it (a folder needs x too), or run Rewind as its owner"
    )


@contextmanager
def access(path: Path, what: str, doing: str = "read") -> Iterator[None]:
    """The block's refusal by the operating system (permissions, owner, a read-only mount) becomes NoAccess."""
    try:
        yield
    except PermissionError as exc:
        raise NoAccess(path, what, doing, exc.strerror or "permission denied") from None
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        raise NoAccess(path, what, doing, exc.strerror or "read-only file system", read_only=True) from None


def _refused_to_read(path: Path) -> NoAccess | None:
    """NoAccess when Rewind's process may not open the file for reading (opened and closed, nothing read)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # NONBLOCK: a FIFO swapped in must not hang a page
    except PermissionError as exc:
        return NoAccess(path, "backup file", "read", exc.strerror or "permission denied")
    except OSError:  # gone meanwhile, or another trouble the reading itself will name
        return None
    return None


def open_to_read(path: Path, what: str = "backup file") -> BinaryIO:
    """The file opened for reading; NoAccess naming it when Rewind's process may not read it."""
    with access(path, what):
        return path.open("rb")


@dataclass(frozen=True)
class Backup:
    path: Path
    manifest: dict[str, Any]
    # The manifest is there but Rewind's process may not read it: nothing of it can be trusted or recorded.
    manifest_unreadable: NoAccess | None = field(default=None, compare=False)
    # The file itself may not be read by Rewind's process: listed (its size and time need no read), never usable.
    file_unreadable: NoAccess | None = field(default=None, compare=False)
    # The size its manifest recorded when Rewind last wrote it (made or verified); `size` is the file's now.
    recorded_size: int | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def foreign(self) -> bool:
        """Not known to be Rewind's: a file it did not make, or one whose manifest is damaged (never deleted)."""
        return self.manifest.get("made_by") != "rewind"

    @property
    def manifest_problem(self) -> str | None:
        """Why the manifest beside the file was not used (not JSON, cut short, a bad time…), or None."""
        return self.manifest.get(DAMAGED)

    @property
    def made_of(self) -> str | None:
        """The database Rewind made this backup of, as its manifest names it; None when it names none (a file
        Rewind did not make, a manifest from before the field, a value that is no name)."""
        source = self.manifest.get("database")
        return source if not self.foreign and isinstance(source, str) and source else None

    @property
    def of_copy(self) -> bool:
        """A backup of a restore's copy (pre-restore, scratch), not of the live database as it was."""
        return bool(self.manifest.get("copy"))

    @property
    def size(self) -> int:
        return int(self.manifest.get("size") or 0)

    @property
    def time(self) -> datetime:
        when = datetime.fromisoformat(self.manifest["time"])
        # A hand-written manifest's time without offset is UTC; one with another offset is turned to UTC, as every
        # page and the CLI say "UTC" beside it.
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)

    @property
    def format(self) -> str | None:
        return self.manifest.get("format")

    @property
    def sha256(self) -> str | None:
        return self.manifest.get("sha256")

    @property
    def verified(self) -> dict[str, Any] | None:
        return self.manifest.get("verified")

    @property
    def verified_at(self) -> datetime | None:
        """When it was last verified, in UTC (a manifest may record it with another offset)."""
        return _utc_time((self.verified or {}).get("at"))

    @property
    def changed_on_disk(self) -> bool:
        """Its size is not the one recorded when it was last made or verified: cut short, replaced or appended to."""
        return self.recorded_size is not None and self.recorded_size != self.size

    @property
    def state(self) -> BackupState:
        """Verified, changed, failed or unverified, from the manifest's `verified` record and the file's size.

        CHANGED: it passed, but the file is no longer the one that passed, so it is no known good backup.
        """
        found = self.verified
        if not found:
            return BackupState.UNVERIFIED
        if found.get("ok") is not True:  # a hand-written "false" is no pass
            return BackupState.FAILED
        return BackupState.CHANGED if self.changed_on_disk else BackupState.VERIFIED

    @property
    def restore_tested(self) -> dict[str, Any] | None:
        return self.manifest.get("restore_tested")

    @property
    def job_id(self) -> int | None:
        """The job that made it, as its manifest says: a number, or None (a hand-written manifest may say anything)."""
        found = self.manifest.get("job_id")
        return found if isinstance(found, int) and not isinstance(found, bool) and found > 0 else None

    @property
    def key(self) -> tuple[datetime, str]:
        """Its place in the catalog, newest first: time, then name (unique in the folder)."""
        return (self.time, self.id)


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open_to_read(path) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def now_utc() -> datetime:
    return datetime.now(UTC)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write, fsync, rename: a crash leaves the old file or the new one, never half of one."""
    temp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.new")
    with access(path.parent, "backup folder", "write"):
        handle = temp.open("w")
    with handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    sync_dir(path.parent)


@dataclass(frozen=True)
class Unlisted:
    """A file of the folder that looks like a backup (or its manifest) but is not listed, and why."""

    name: str  # printable: bytes that are not UTF-8 are shown as \\xNN
    reason: str


def printable(name: str) -> str:
    """A file name as a page or a terminal can show it, whatever bytes it holds."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _foreign_manifest(path: Path, info: os.stat_result) -> dict[str, Any]:
    match = FOREIGN.fullmatch(path.name) or OWN.fullmatch(path.name)
    if match:
        when = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
        fmt = FORMATS[match.group(2)]
    else:
        when = datetime.fromtimestamp(info.st_mtime, UTC).replace(microsecond=0)
        fmt = None
    return {"file": path.name, "size": info.st_size, "time": when.isoformat(), "format": fmt, "made_by": "foreign"}


def _manifest_problem(manifest: Any) -> str | None:
    """What makes a parsed manifest unusable, in words; None when it can be used."""
    if not isinstance(manifest, dict):
        return "is not a JSON object"
    when = manifest.get("time")
    if not isinstance(when, str):
        return "has no time"
    try:
        datetime.fromisoformat(when)
    except ValueError:
        return f"has a time that is no ISO date: {when[:40]!r}"
    for key in ("verified", "restore_tested"):
        record = manifest.get(key)
        if record is None:
            continue
        if not isinstance(record, dict):
            return f"has a {key} that is not a record"
        if not _is_utc_time(record.get("at")):
            return f"has a {key} record without a time with its UTC offset ('at')"
    return None


def _utc_time(value: Any) -> datetime | None:
    """An ISO time with its offset, turned to UTC; None for anything else."""
    return datetime.fromisoformat(value).astimezone(UTC) if _is_utc_time(value) else None


def _is_utc_time(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def newest_verified(backups: list[Backup]) -> Backup | None:
    """The newest verified backup of the live database (a restore copy's backup is not "known good")."""
    return next((b for b in backups if b.state.is_verified and not b.of_copy), None)


@dataclass(frozen=True)
class Listing:
    """The backup folder as one reading found it: a page shows this, and reads the folder no second time."""

    folder: Path
    exists: bool
    backups: list[Backup]  # newest first
    unlisted: list[Unlisted]
    stale_partials: list[Path]


class Catalog:
    """The backups of one target: the files of its backup folder."""

    def __init__(self, folder: Path, database: str | None = None) -> None:
        self.folder = folder
        # The target's database, when known: a backup Rewind made of another (a folder two targets share, a file
        # copied from another target's) is not this target's to offer, to count for its RPO or schedule, or to
        # delete by its retention; the listing names it apart. None: every backup of the folder is listed.
        self.database = database

    def _of_another(self, backup: Backup) -> str | None:
        """The other database a backup of Rewind's was made of, as its manifest says; None when it is this one's."""
        source = backup.made_of
        return None if self.database is None or source is None or source == self.database else source

    def _split(self, found: list[Backup]) -> tuple[list[Backup], list[Unlisted]]:
        """This database's backups, and the others named with why they are not listed."""
        mine, others = [], []
        for backup in found:
            if (source := self._of_another(backup)) is None:
                mine.append(backup)
            else:
                others.append(
                    Unlisted(
                        printable(backup.id),
                        f"a backup of database {source}, not of {self.database} (its manifest says): not offered, "
                        "counted or deleted here; restore it on the target whose database it is",
                    )
                )
        return mine, others

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The folder's manifest lock (fcntl, so other processes and threads wait too), held for the block."""
        with access(self.folder / LOCK_FILE, "manifests' lock file (in the backup folder)", "write"):
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def exists(self) -> bool:
        """Whether the folder is there (a new target's is made by its first backup); NoAccess if that cannot be told."""
        with access(self.folder, "backup folder"):
            try:
                return stat.S_ISDIR(self.folder.stat().st_mode)
            except (FileNotFoundError, NotADirectoryError):
                return False

    def _entries(self) -> list[os.DirEntry]:
        """The folder's entries; none for a missing folder, NoAccess for one Rewind's process may not read."""
        return self._scan() if self.exists() else []

    def _scan(self) -> list[os.DirEntry]:
        """The one reading of the folder's names every listing goes through."""
        with access(self.folder, "backup folder"), os.scandir(self.folder) as entries:
            return list(entries)

    def listing(self) -> Listing:
        """Everything a page shows of the folder, from one reading of it: backups, unlisted files, unfinished ones.

        Read afresh on every call (never cached): the folder as it is now, whoever changed it meanwhile.
        """
        exists = self.exists()
        entries = self._scan() if exists else []
        names = {entry.name for entry in entries}
        cutoff = time.time() - STALE_PARTIAL_S
        backups, others = self._split(self._backups_of(entries, names))
        return Listing(
            folder=self.folder,
            exists=exists,
            backups=backups,
            unlisted=sorted(self._unlisted_of(entries, names, cutoff) + others, key=lambda u: u.name),
            stale_partials=sorted(Path(entry.path) for entry in entries if _stale_partial(entry, cutoff)),
        )

    def backups(self) -> list[Backup]:
        """Every backup in the folder, newest first; a missing folder has none."""
        entries = self._entries()
        return self._split(self._backups_of(entries, {entry.name for entry in entries}))[0]

    def _backups_of(self, entries: list[os.DirEntry], names: set[str]) -> list[Backup]:
        found = []
        for entry in entries:
            if BACKUP_ID.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    # a manifest the listing did not see is not looked for: one file fewer to open per backup
                    found.append(self._load(Path(entry.path), listed=entry.name + MANIFEST_SUFFIX in names))
                except FileNotFoundError:  # deleted between the listing and its reading
                    continue
        return sorted(found, key=lambda b: b.key, reverse=True)

    def unlisted(self) -> list[Unlisted]:
        """The `.gpg` files (and manifests) of the folder that backups() leaves out, each with why, by name.

        A person who put a backup there by hand must learn it is not offered, rather than miss it silently.
        Rewind's own hidden files (a backup being written, the lock) are not named.
        """
        entries = self._entries()
        names = {entry.name for entry in entries}
        others = self._split(self._backups_of(entries, names))[1]
        return sorted(self._unlisted_of(entries, names, time.time() - STALE_PARTIAL_S) + others, key=lambda u: u.name)

    def _unlisted_of(self, entries: list[os.DirEntry], names: set[str], cutoff: float) -> list[Unlisted]:
        found = []
        for entry in entries:
            reason = self._why_unlisted(entry, names, cutoff)
            if reason:
                found.append(Unlisted(printable(entry.name), reason))
        return sorted(found, key=lambda u: u.name)

    def orphan_manifests(self) -> list[Path]:
        """Manifests Rewind wrote whose backup file is no longer in the folder (a deletion that stopped halfway)."""
        entries = self._entries()
        names = {entry.name for entry in entries}
        found = []
        for entry in entries:
            name = entry.name
            if not name.endswith(".gpg" + MANIFEST_SUFFIX) or name[: -len(MANIFEST_SUFFIX)] in names:
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            stored = self._stored(Path(entry.path[: -len(MANIFEST_SUFFIX)]))
            if stored is not None and DAMAGED not in stored and stored.get("made_by") == "rewind":
                found.append(Path(entry.path))
        return sorted(found)

    def stale_partials(self) -> list[Path]:
        """Backups left unfinished: hidden partial files unchanged for STALE_PARTIAL_S."""
        cutoff = time.time() - STALE_PARTIAL_S
        return sorted(Path(entry.path) for entry in self._entries() if _stale_partial(entry, cutoff))

    def _why_unlisted(self, entry: os.DirEntry, names: set[str], cutoff: float) -> str | None:
        name = entry.name
        if _stale_partial(entry, cutoff):
            size = entry.stat(follow_symlinks=False).st_size
            return (
                f"a backup left unfinished ({byte_size(size)}): its job stopped while writing it; "
                "the Restore copies panel's clean-up (the cleanup_restores runbook) removes it"
            )
        if name.startswith("."):
            return None
        if name.lower().endswith(".gpg" + MANIFEST_SUFFIX):
            backup = name[: -len(MANIFEST_SUFFIX)]
            if backup not in names:
                return (
                    f"a manifest whose backup {printable(backup)} is not in the folder; if the backup is gone for "
                    "good, delete it (retention deletes those Rewind wrote)"
                )
            return None
        if not name.lower().endswith(".gpg"):
            return None
        if entry.is_symlink():
            try:
                inside = Path(entry.path).resolve(strict=True).parent == self.folder.resolve()
            except (OSError, RuntimeError):
                return "a link to nothing (its file is gone)"
            where = "another file of this folder" if inside else "a file outside the backup folder"
            return f"a link to {where}; Rewind uses only plain files: copy the backup itself here"
        if entry.is_dir(follow_symlinks=False):
            return "a folder, not a backup file"
        if not entry.is_file(follow_symlinks=False):
            return "not a regular file"
        if not BACKUP_ID.fullmatch(name):
            return (
                "its name is not one Rewind accepts: rename it to letters, digits, '.', '_' and '-' only, "
                "ending in .gpg (no spaces or accents)"
            )
        return None

    def get(self, backup_id: str) -> Backup:
        """The backup of that id, checked to be a plain file inside the folder; CatalogError otherwise."""
        if not isinstance(backup_id, str) or not BACKUP_ID.fullmatch(backup_id):
            raise CatalogError(
                f"{backup_id!r} is not a backup name: a backup is a file name of the backup folder ending in .gpg",
                fix="choose a backup from the target's Backups tab",
            )
        path = self.folder / backup_id
        self.exists()  # NoAccess for a folder Rewind may not look into, rather than "no such backup"
        try:
            inside = path.resolve(strict=True).parent == self.folder.resolve(strict=True)
        except PermissionError as exc:
            raise NoAccess(self.folder, "backup folder", "read", exc.strerror or "permission denied") from None
        except (OSError, RuntimeError):
            raise CatalogError(
                f"there is no backup {backup_id} in {self.folder}", fix="choose a backup from the target's Backups tab"
            ) from None
        if path.is_symlink() or not inside or not path.is_file():
            raise CatalogError(
                f"{backup_id} is not a plain file inside {self.folder} (a link or something else); refused",
                fix="copy the backup itself into the backup folder",
            )
        backup = self._load(path)
        if backup.manifest_unreadable is not None:  # what it says (recipients, checksum, format) cannot be known
            raise backup.manifest_unreadable
        if (source := self._of_another(backup)) is not None:  # not listed: not verified, restored or read here either
            raise CatalogError(
                f"{backup_id} is a backup of database {source}, not of {self.database} (its manifest says)",
                fix="verify or restore it on the target whose database it is",
            )
        return backup

    def _load(self, path: Path, *, listed: bool = True) -> Backup:
        """The backup at `path`; `listed` False: the folder's listing showed no manifest beside it."""
        info = path.stat()
        manifest = self._stored(path) if listed else None
        refused = manifest.pop(UNREADABLE, None) if manifest else None
        if manifest is None or DAMAGED in manifest:
            manifest = _foreign_manifest(path, info) | (manifest or {})
        recorded = manifest.get("size")
        manifest["size"] = info.st_size  # what is on disk now, whatever was written
        recorded = recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else None
        return Backup(path, manifest, refused, _refused_to_read(path), recorded)

    @staticmethod
    def _stored(path: Path) -> dict[str, Any] | None:
        """The manifest file beside the backup; None when there is none; {DAMAGED: why} when it cannot be used."""
        manifest_file = manifest_path(path)
        if not os.path.lexists(manifest_file):
            return None
        if manifest_file.is_symlink() or not manifest_file.is_file():
            return {DAMAGED: f"its manifest {manifest_file.name} is not a plain file"}
        try:
            manifest = json.loads(manifest_file.read_bytes())
        except PermissionError as exc:
            refused = NoAccess(manifest_file, f"manifest of {path.name}", "read", exc.strerror or "permission denied")
            return {DAMAGED: refused.in_words(), UNREADABLE: refused}
        except OSError as exc:
            return {DAMAGED: f"its manifest {manifest_file.name} cannot be read ({exc.strerror})"}
        except ValueError:
            return {DAMAGED: f"its manifest {manifest_file.name} is not JSON (cut short or damaged)"}
        problem = _manifest_problem(manifest)
        if problem:
            return {DAMAGED: f"its manifest {manifest_file.name} {problem}"}
        return manifest

    def newest_verified(self) -> Backup | None:
        return newest_verified(self.backups())

    def add(self, backup: Backup) -> Backup:
        """A new backup's manifest, written whole (a stray manifest of a file once of that name is replaced)."""
        with self.locked():
            manifest = dict(backup.manifest, file=backup.id, size=backup.path.stat().st_size)
            write_json_atomically(manifest_path(backup.path), manifest)
        return Backup(backup.path, manifest)

    def save(self, backup: Backup, **changes: Any) -> Backup:
        """Apply `changes` to the manifest as it is on disk now, under the lock; the backup as written.

        `backup.manifest` is only the base when there is no manifest yet (a foreign file; a new backup: add):
        it may be stale, read by a job that started before another job recorded on the same backup.
        """
        with self.locked():
            if not backup.path.is_file():
                raise CatalogError(
                    f"{backup.id} was deleted from {self.folder} meanwhile; nothing recorded for it",
                    fix="choose a backup from the target's Backups tab",
                )
            base = self._stored(backup.path)
            if base is not None and UNREADABLE in base:  # perhaps a good manifest: never set aside nor overwritten
                raise base[UNREADABLE]
            if base is not None and DAMAGED in base:  # kept beside, not overwritten: a person may want to read it
                os.replace(manifest_path(backup.path), manifest_path(backup.path).with_suffix(".json.damaged"))
                base = None
            manifest = dict(backup.manifest if base is None else base) | changes
            manifest.pop(DAMAGED, None)
            manifest.pop(UNREADABLE, None)
            manifest["file"] = backup.id
            manifest["size"] = backup.path.stat().st_size
            write_json_atomically(manifest_path(backup.path), manifest)
        return Backup(backup.path, manifest)

    def record_verification(self, backup: Backup, *, how: str, ok: bool, detail: str, job_id: int | None) -> Backup:
        result = {"how": how, "ok": ok, "detail": detail, "at": now_utc().isoformat(), "job_id": job_id}
        changes: dict[str, Any] = {"verified": result}
        if how == "restore-test":  # the latest restore test, passed or not: a failed one is no longer "restore-tested"
            changes["restore_tested"] = result
        return self.save(backup, **changes)
