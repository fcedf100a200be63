"""A restore that cannot lose the live database: fill a scratch copy, compare, then swap by renaming.

The live database is only ever renamed, never dropped or written: the
backup is restored into a new scratch database (`<name>_restore_<time>`;
for SQLite a new file beside the live one) while the application serves,
and the swap renames live to `<name>_pre_restore_<time>` and scratch to
`<name>`. The pre-restore copy is the safety copy: undo renames it back.
A name too long for that within PostgreSQL's 63 bytes is shortened in
every copy's name (its first bytes and a short hash, see copy_base).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from app.backups.catalog import Backup, now_utc, open_to_read
from app.backups.setup import BackupSetup
from app.backups.sqlguard import guard_stage
from app.backups.status import ahead_of
from app.backups.verify import locked_key
from app.files import sync_dir
from app.targets.command import PipelineResult, ReadProgress, Sink, Stage, run_pipeline
from app.targets.dbadmin import (
    MAX_IDENTIFIER,
    DamagedFile,
    DatabaseConfig,
    DatabaseError,
    DatabaseShape,
    Grant,
    Postgres,
    SettingRefused,
    SpaceUnknown,
    Sqlite,
    Survey,
    check_identifier,
    pasteable,
)
from app.targets.errors import TargetError
from app.wording import byte_size

RESTORE_TIMEOUT_S = 12 * 3600
STAMP = "%Y%m%d%H%M%S"
KINDS = ("restore", "pre_restore", "undone", "test")  # test: a restore test's scratch, dropped at its end
MISSING_ROLE = re.compile(r'role "(.+?)" does not exist')  # the server's words, as pg_restore and psql relay them
NOT_MEMBER = re.compile(r'must be (?:member of role|able to SET ROLE) "(.+?)"')  # PostgreSQL 15; 16 and newer
# A name as the server prints it: quoted (any character, a quote doubled) or plain.
PG_NAME = r'(?:"(?:[^"]|"")*"|[^\s."()]+)'
# A CONTEXT line: the code that failed, as `"My Schema"."f(x)"(integer,text)`, quoted names whole.
IN_FUNCTION = re.compile(rf'(?:PL/pgSQL|SQL) function ({PG_NAME}(?:\.{PG_NAME})?\((?:"(?:[^"]|"")*"|[^"()])*\))')
UNDEFINED = re.compile(r"(?:relation|function|type|operator) .+ does not exist")
SCHEMA_DENIED = re.compile(r"permission denied for schema (\S+)")
KEY_SPELLING = (
    "check the name in the target's key_tables: it is matched exactly (case included), a schema before a dot; "
    'write a name that holds a dot or a quote in double quotes (billing."line.items")'
)
HASH_CHARS = 8  # of a shortened copy name: its live database's name, hashed
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class RestoreFailed(TargetError):
    """The restore could not go on; the message says what was left where."""


class SwapHalfDone(RestoreFailed):
    """The swap failed after live was renamed, and renaming it back failed too: no database has the live name."""


@dataclass(frozen=True)
class Copy:
    """A database Rewind made beside the live one: a scratch, a pre-restore or an undone copy."""

    name: str
    kind: str
    time: datetime

    def __str__(self) -> str:
        return self.name


def stamp() -> str:
    return now_utc().strftime(STAMP)


def copy_base(setup: BackupSetup) -> str:
    """What every copy's name starts with: the live database's name, or, when a copy of it would pass
    PostgreSQL's 63 bytes, the name's first bytes and a short hash of it (recognisable, and its own)."""
    db = setup.database
    if not isinstance(db, Postgres):
        return db.path.name
    room = MAX_IDENTIFIER - max(len(f"_{kind}_") for kind in KINDS) - len(stamp())
    if len(db.name.encode()) <= room:
        return db.name
    digest = hashlib.sha256(db.name.encode()).hexdigest()[:HASH_CHARS]
    head = db.name.encode()[: room - HASH_CHARS - 1].decode(errors="ignore")
    return f"{head}_{digest}"


def copy_name(setup: BackupSetup, kind: str, when: str) -> str:
    db = setup.database
    if isinstance(db, Postgres):
        return check_identifier(f"{copy_base(setup)}_{kind}_{when}")
    return f"{db.path.name}.{kind}_{when}"


def _copy_pattern(setup: BackupSetup) -> re.Pattern[str]:
    db = setup.database
    sep = "_" if isinstance(db, Postgres) else "."
    # The live name in full as well: copies a Rewind that did not shorten names made of a long name.
    bases = "|".join(re.escape(b + sep) for b in dict.fromkeys((copy_base(setup), db.name)))
    return re.compile(r"(?:" + bases + r")(" + "|".join(KINDS) + r")_(\d{14})")


def copies(setup: BackupSetup) -> list[Copy]:
    """The scratch, pre-restore and undone copies of the target's database, newest first."""
    pattern = _copy_pattern(setup)
    db = setup.database
    names = db.databases(pattern) if isinstance(db, Postgres) else _sqlite_names(db, pattern)
    found = []
    for name in names:
        match = pattern.fullmatch(name)
        when = datetime.strptime(match.group(2), STAMP).replace(tzinfo=now_utc().tzinfo)
        found.append(Copy(name, match.group(1), when))
    return sorted(found, key=lambda c: (c.time, c.name), reverse=True)


def being_filled(running_restore: datetime | None, kept: list[Copy]) -> str | None:
    """The scratch copy the restore running since `running_restore` (naive UTC, as the job table keeps it) is
    filling: the newest scratch made since. Listed, it is that job's work in progress, not a copy to back up."""
    if running_restore is None:
        return None
    since = running_restore.replace(tzinfo=now_utc().tzinfo) - timedelta(seconds=2)  # its name has whole seconds
    return next((c.name for c in kept if c.kind == "restore" and c.time >= since), None)


def _sqlite_names(db: Sqlite, pattern: re.Pattern[str]) -> list[str]:
    folder = db.path.parent
    return [p.name for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file()] if folder.is_dir() else []


# --- before anything is made ---------------------------------------------------------------


def check_matches(setup: BackupSetup, backup: Backup) -> None:
    """RestoreFailed for a backup of another kind of database, another database or a newer server."""
    check_kind(setup, backup)
    db = setup.database
    if isinstance(db, Postgres) and backup.manifest.get("server_major"):
        major, version = db.server_version()
        if int(backup.manifest["server_major"]) > major:
            raise RestoreFailed(
                f"{backup.id} was made from PostgreSQL {backup.manifest['server_version']}, newer than the "
                f"server's {version}: it may use what this server does not have",
                fix=f"restore it on a PostgreSQL {backup.manifest['server_major']} (or newer) server",
            )


def check_kind(setup: BackupSetup, backup: Backup) -> None:
    """RestoreFailed for a backup of another kind of database or another database: read from its manifest and
    name alone, so it can be said before anything is asked of the server (whose live database may be gone)."""
    db = setup.database
    engine = backup.manifest.get("engine")
    if engine and engine != setup.kind:
        raise RestoreFailed(
            f"{backup.id} is a {engine} backup and {setup.target.name}'s database is {setup.kind}",
            fix="choose a backup of this target's database",
        )
    if backup.format is None or (setup.kind == "sqlite") != (backup.format == "sqlite"):
        raise RestoreFailed(
            f"{backup.id} is not a backup format Rewind can restore into {setup.kind} "
            f"(format {backup.format or 'unknown'})",
            fix="name a PostgreSQL dump *.dump.gpg (custom) or *.sql.gpg (plain SQL), or a SQLite *.sqlite.gpg",
        )
    source = backup.made_of
    if source is not None and source != db.name:
        raise RestoreFailed(
            f"{backup.id} is a backup of database {source}, not of {db.name}",
            fix="choose a backup of this target's database",
        )


def remake_live(setup: BackupSetup, backup: Backup) -> str | None:
    """A live database that is gone (dropped, its file deleted) is made again, empty, as it was: the restore then
    goes as ever, and the empty database it replaces becomes its pre-restore copy. In words, what was made; None
    when live is there. RestoreFailed when it cannot be made as it was."""
    if not live_is_gone(setup):
        return None
    _no_newer_copy(setup, backup)
    db = setup.database
    if isinstance(db, Postgres):
        made = backup.manifest.get("made")
        if not isinstance(made, dict) or not made.get("owner"):
            raise RestoreFailed(
                f"the live database {db.name} is not on {db.url.where()} (dropped?), and {backup.id} does not "
                "record how it was made (its owner, encoding and locale)",
                fix="create it empty as it was, with its owner, encoding and locale (createdb "
                f"{' '.join(db.url.tool_args()[:4])} --template template0 --owner OWNER {pasteable(db.name)}), then "
                "restore again",
            )
        shape = db.remake(db.name, made)
        return (
            f"  ! the live database {db.name} was not there (dropped?): made again, empty, as {backup.id} recorded "
            f"it (owner {shape.owner}, encoding {shape.encoding}, collation {shape.collate}), closed to connections "
            "until the swap; the restore goes on into its place"
        )
    folder = db.path.parent
    if not folder.is_dir():
        raise RestoreFailed(f"the folder of the live database, {folder}, is not there", fix="check database.url")
    try:
        fd = os.open(db.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    except FileExistsError:
        return None  # made since it was looked for: there again
    os.fchmod(fd, 0o640)  # whatever the umask: the restored file takes this mode
    os.close(fd)
    if os.geteuid() == 0:  # the application most likely runs as the folder's owner: the restored file takes this
        seen = folder.stat()
        os.chown(db.path, seen.st_uid, seen.st_gid)
    return (
        f"  ! the live database file {db.path} was not there (deleted?): made again, empty (mode 0640"
        f"{', owned as its folder' if os.geteuid() == 0 else ''}); the restore goes on into its place"
    )


def _no_newer_copy(setup: BackupSetup, backup: Backup) -> None:
    """RestoreFailed when live is gone but a pre-restore or undone copy newer than the backup is there: a swap left
    half done (live renamed, the copy not renamed in) looks the same, and that copy may hold live's newest rows."""
    made = backup.time.replace(microsecond=0)  # a copy's name keeps whole seconds: the same second may be later
    newer = [c for c in copies(setup) if c.kind in ("pre_restore", "undone") and c.time >= made]
    if newer:
        copy, live = newer[0].name, setup.database.name
        raise RestoreFailed(
            f"the live database {live} is not there, but {copy} ({newer[0].time:%Y-%m-%d %H:%M} UTC, after "
            f"{backup.id}) is: a swap may have been left half done, and that copy may hold newer rows than the backup",
            fix=f"if {copy} is live's data, rename it back to {live} and start the application; to restore the backup "
            "anyway, rename or drop that copy first",
        )


def unmake_live(setup: BackupSetup, name: str | None = None) -> bool:
    """Drop the empty live database remake_live made (or, `name`, the copy a swap renamed it to), when the restore
    it was made for ends without it; only while nothing can have written to it (a PostgreSQL one is closed to
    connections; a SQLite file is still empty). Whether it was dropped."""
    db = setup.database
    if isinstance(db, Postgres):
        name = name or db.name
        if db.allows_connections(name) and db.has_tables(name):
            return False
        db.drop(name)
        return True
    path = db.path.with_name(name) if name else db.path
    if path.exists() and path.stat().st_size == 0:
        path.unlink()
        return True
    return False


def check_space(setup: BackupSetup, backup: Backup) -> str:
    """RestoreFailed when the scratch copy would not fit beside the live database (with the reserve kept free)."""
    db = setup.database
    needed = int(backup.manifest.get("source_size") or 0) or db.size() or backup.size * 4
    if isinstance(db, Postgres):
        where = f"the data directory of {db.url.where()}"
        try:
            free = db.data_directory_free()
        except SpaceUnknown as exc:
            # Not refused: a restore onto a remote server must still work. But said, with the way to have it checked.
            how = f"; to have it checked: {exc.fix}" if exc.fix else ""
            return (
                f"  ! the free space on {where} could not be read: {exc.message}; the restore goes on without "
                f"the space check (the copy needs about {byte_size(needed)}{how})"
            )
    else:
        free = shutil.disk_usage(db.path.parent).free
        where = str(db.path.parent)
    if free < needed + setup.reserve_bytes:
        raise RestoreFailed(
            f"not enough disk space for the scratch copy: it needs about {byte_size(needed)} plus the "
            f"{byte_size(setup.reserve_bytes)} reserve (backups.reserve_mb) on {where}, "
            f"which has {byte_size(free)} free",
            fix="free disk space (e.g. run the cleanup of old restore copies) and try again",
        )
    return f"{byte_size(free)} free on {where}; the copy needs about {byte_size(needed)}"


def _read_words(loader: str) -> Callable[[int, int], str]:
    """How far the fill has read the backup, for its step's progress; at the end, that the loader finishes (a
    pg_restore builds the indexes and constraints after the last byte is read)."""

    def words(done: int, size: int) -> str:
        if done >= size:
            return f"all {byte_size(size)} of the backup read; {loader} finishes"
        return f"{byte_size(done)} of {byte_size(size)} of the backup read"

    return words


# --- the scratch copy ----------------------------------------------------------------------


def restore_scratch(
    setup: BackupSetup, backup: Backup, scratch: str, sink: Sink, *, settings: bool = True, live_remade: bool = False
) -> None:
    """Fill a new scratch database from the backup; a failure drops it again (it is ours alone).

    `settings`: True, it gets the live database's own settings too, or is refused (the copy a swap puts in live's
    place needs them); False, them too when Rewind may give them, else none, said in the log (a restore test's copy
    reads its key tables as live does, a search_path may be what finds them, but it must not fail a good backup
    for want of a setting). A test copy is also filled as Rewind's own user when that user cannot act as live's
    owner and the target allows it (backups.test_as_own_user), said in the log; otherwise, and always for the
    copy a swap puts in live's place, that is refused (check_owner).
    """
    db = setup.database
    if isinstance(db, Postgres):
        shape = db.shape(db.name)
        # Filled as Rewind's user, the backup's code (a CHECK constraint's function, an index expression) runs as
        # that user instead of the owner who wrote it: only where the target's file says so.
        as_self = not settings and not shape.may_act_as_owner and _test_as_own_user(setup)
        live_owner = shape.owner
        if as_self:
            # A test copy is dropped at the end: whose it is does not matter, only that the backup restores.
            sink.line("out", _as_self_note(db, shape))
            shape = replace(shape, owner=shape.user, may_act_as_owner=True)
        owner = check_owner(db, shape, test=not settings)
        if as_self:
            # The copy is Rewind's own: what it may give it is not what it may give live (whose owner it is not).
            config = db.config(db.name)
            own = tuple(s for s in config.settings if s.role in (None, shape.user))
            config = replace(config, acl=_acl_as_self(config.acl, live_owner, shape.user), settings=own)
            settings = True
        else:
            config, settings = _live_config(db, settings, sink)
        # Fails if the name is taken: never drop a database this call did not make.
        db.create(scratch, like=db.name, shape=shape, config=config)
        try:
            env = db.url.tool_env(setup.target.command_env())
            # A superuser restores each object of a custom dump as the owner the dump names (SET SESSION
            # AUTHORIZATION): tables the application's migrations made as a role that does not own the database
            # stay that role's, their grants keep their grantor, and their code (a CHECK constraint's function,
            # an index expression) runs as that owner. A role the dump names must exist (see _failed).
            own_owners = backup.format == "custom" and shape.superuser and not as_self
            if not as_self and not own_owners:
                # Everything restored belongs to the live database's owner, as the database itself does: after
                # the swap the application's role finds its tables its own, whoever Rewind connects as.
                as_owner = "-c role=" + owner.replace("\\", "\\\\").replace(" ", "\\ ")  # PGOPTIONS escapes
                env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {as_owner}".strip()
            if shape.superuser and not as_self and not live_remade:  # a remade live's schema is the default
                # Given to a role (by the dump, or the role made it) that needs CREATE there: before the fill,
                # since the dump's own grants come after its objects.
                db.copy_public_schema(db.name, scratch)
            if backup.format == "custom":
                loader = [
                    db.tool("pg_restore"),
                    "--use-set-session-authorization" if own_owners else "--no-owner",
                    # Default privileges FOR ROLE <owner> need its membership: a copy filled as Rewind's own
                    # user takes none of the privileges, which no count depends on.
                    *(["--no-privileges"] if as_self else []),
                    "--exit-on-error",
                    "--no-password",
                    *db.url.tool_args(scratch),
                ]
                name = "pg_restore"
            else:
                loader = [
                    db.tool("psql"),
                    "--no-psqlrc",
                    "--quiet",
                    "--set",
                    "ON_ERROR_STOP=1",
                    # One transaction: DROP/CREATE DATABASE and ALTER SYSTEM cannot run inside one, and a
                    # fill that stops halfway leaves nothing behind.
                    "--single-transaction",
                    # What the dump's own queries return (pg_dump's set_config, each sequence's setval) is not the
                    # job's to show: a heading, a value and "(1 row)" each in the log. Errors still go to stderr.
                    "--output",
                    os.devnull,
                    "--no-password",
                    *db.url.tool_args(scratch),
                ]
                name = "psql"
            # psql runs whatever the file says: the guard stops a statement that would reach past the scratch.
            guard = guard_stage(setup.target.command_env(), leave_out_ownership=as_self)
            middle = [] if backup.format == "custom" else [guard]
            with open_to_read(backup.path) as source, setup.home.decrypt_stage() as decrypt:
                watched = ReadProgress(sink, source, backup.size, _read_words(name))
                stages = [decrypt, *middle, Stage.of(loader, name, env=env)]
                result = run_pipeline(stages, watched, stdin=source, timeout=RESTORE_TIMEOUT_S)
                watched.report()
            if not result.ok:
                _check_unlocked(setup, result)
                fill_role = None if as_self or own_owners else owner
                raise _failed(result, f"the restore into {scratch} failed", as_owners=own_owners, fill_role=fill_role)
            # A dump without --create carries none of the database's own settings (search_path, timeouts, for
            # every role or one): given now, once filled, so none of them (a statement_timeout, a read-only
            # default) can stand in the fill's way; after the swap they are live's as before.
            if as_self:
                _settings_as_self(db, config, scratch, sink)
            elif settings:
                db.copy_settings(config, scratch)
        except BaseException:
            db.drop(scratch)
            raise
        return
    path = db.path.with_name(scratch)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RestoreFailed(f"{path} is already there", fix="wait a second and try again") from None
    try:  # from here on the file is ours alone: a failure removes it
        with os.fdopen(fd, "wb") as out, open_to_read(backup.path) as source, setup.home.decrypt_stage() as decrypt:
            watched = ReadProgress(sink, source, backup.size, _read_words("the copy"))
            result = run_pipeline([decrypt], watched, stdin=source, stdout=out, timeout=RESTORE_TIMEOUT_S)
            watched.report()
            if not result.ok:
                _check_unlocked(setup, result)
                raise _failed(result, f"the restore into {path} failed")
            out.flush()
            os.fsync(out.fileno())
        problem = db.integrity(path)
        if problem != "ok":
            raise RestoreFailed(f"the restored file {path} fails SQLite's integrity check: {problem}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _check_unlocked(setup: BackupSetup, result: PipelineResult) -> None:
    """KeyLocked when gpg failed because the key's passphrase is wrong or missing (the backup is not to blame)."""
    if (
        (stage := result.failed) is not None
        and stage.name == "gpg"
        and (locked := locked_key(setup, stage)) is not None
    ):
        raise locked


def _settings_as_self(db: Postgres, config: DatabaseConfig, scratch: str, sink: Sink) -> None:
    """Live's database-wide settings (and Rewind's user's own) on a test copy Rewind owns; said, not fatal, if refused:
    a search_path may be what finds the key tables, but a setting must not fail a good backup."""
    for setting in config.settings:  # one at a time: a superuser-only one must not take the search_path with it
        try:
            db.copy_settings(replace(config, settings=(setting,)), scratch)
        except DatabaseError as exc:
            sink.line("out", f"  ! {exc.message}; the test copy goes without `{setting.words(scratch)}`")


def _acl_as_self(acl: tuple[Grant, ...] | None, live_owner: str, user: str) -> tuple[Grant, ...] | None:
    """Live's privileges for a copy owned by Rewind's user: live's owner's become that user's, who must connect.

    Not dropped: the copy holds production's data, and who may connect to it stays live's choice."""
    if acl is None:
        return None
    mapped = tuple(replace(g, grantee=user) if g.grantee == live_owner else g for g in acl)
    return (*mapped, Grant(user, "CONNECT", False))


def _as_self_note(db: Postgres, shape: DatabaseShape) -> str:
    return (
        f"  ! {db.name} belongs to {shape.owner}, and Rewind's database user {shape.user} cannot act as "
        f"{shape.owner}: the test copy is filled as {shape.user} instead (it is dropped at the end). A real "
        f"restore is refused until: GRANT {shape.owner} TO {shape.user}; or {shape.owner}'s login in database.url"
    )


def _test_as_own_user(setup: BackupSetup) -> bool:
    backups = setup.target.config.backups
    return bool(backups and backups.test_as_own_user)


def check_owner(db: Postgres, shape: DatabaseShape | None = None, *, test: bool = False) -> str:
    """The live database's owner, once Rewind's user is known to be able to act as it (RestoreFailed if not).

    `test`: for a restore test, whose copy is dropped again, the fix also names the opt-in to fill it as Rewind's
    own user, and what that opt-in lets the backup do."""
    shape = shape or db.shape(db.name)
    if not shape.may_act_as_owner:
        cannot = (
            f"{db.name} belongs to {shape.owner}, and Rewind's database user {shape.user} cannot act as {shape.owner}"
        )
        grant = f"GRANT {shape.owner} TO {shape.user}; or put {shape.owner}'s login in database.url"
        if test:
            raise RestoreFailed(
                f"{cannot}, so the test copy cannot be filled as the owner who wrote its contents",
                fix=f"{grant}; or set backups.test_as_own_user = true to test as {shape.user} (code in the backup, "
                f"such as a CHECK constraint's function, then runs as {shape.user})",
            )
        raise RestoreFailed(
            f"{cannot}: a restored copy would belong to {shape.user}, and {shape.owner} could not use it", fix=grant
        )
    return shape.owner


def check_copyable(setup: BackupSetup, backup: Backup | None = None) -> str | None:
    """RestoreFailed (or the adapter's SettingRefused) unless a copy of the live database can be made
    to be what it is: its owner's, with its settings and privileges. In words, what the copy will get."""
    db = setup.database
    if not isinstance(db, Postgres):
        return None
    shape = db.shape(db.name)
    owner = check_owner(db, shape)
    note = ""
    if not shape.superuser:
        # Filled as the owner with --no-owner, the copy gives everything to the owner: a role that owned tables
        # (the application's migrations ran as it) would find them another's after the swap.
        recorded = (backup.manifest if backup else {}).get("other_owners")
        others = {r: what for r, what in (recorded or {}).items() if r != owner}
        if others:
            said = "; ".join(f"{role} owns {example}" for role, example in others.items())
            raise RestoreFailed(
                f"in the backup, roles other than {db.name}'s owner {owner} own objects ({said}), and Rewind's "
                f"database user {shape.user} is not a superuser: the restored copy would give them all to {owner}",
                fix="put a superuser's login in database.url (it restores each object as its own owner), or give "
                f"the objects to {owner} in the live database (REASSIGN OWNED BY … TO {pasteable(owner)}), make a "
                "new backup and restore that",
            )
        if recorded is None and (live := db.other_owners(db.name, owner)):
            # A backup Rewind did not make says nothing of its owners: live's, as a warning.
            said = "; ".join(f"{role} owns {example}" for role, example in live.items())
            note = (
                f"; ! not known from the backup: in live, roles other than {owner} own objects ({said}), and what "
                f"of theirs the backup holds becomes {owner}'s (a superuser's login would keep their owners)"
            )
    config = db.check_settings(db.name)
    kept = [f"owned by {owner}" if shape.superuser else f"owned by {owner}, as everything in it"]
    if config.settings:
        names = ", ".join(sorted({s.name for s in config.settings}))
        kept.append(f"{len(config.settings)} setting(s) of {db.name} ({names})")
    if config.acl is not None:
        kept.append(f"its privileges ({len(config.acl)} grant(s))")
    return "the copy will be " + kept[0] + (", with " + " and ".join(kept[1:]) if kept[1:] else "") + note


def _failed(result, what: str, *, as_owners: bool = False, fill_role: str | None = None) -> RestoreFailed:
    """`as_owners`: the fill restored each object as its owner, who may lack a privilege it was never asked for;
    `fill_role`: the role the fill ran as, which the backup may give objects it cannot act as."""
    stage = result.failed
    tail = stage.stderr_tail if stage else ()
    # pg_restore ends with the statement that failed ("Command was: CREATE TABLE …"): the error itself comes first
    error = next((line for line in tail if "ERROR:" in line), None)
    fix = "the live database was not touched"
    missing = sorted({m.group(1) for line in tail for m in MISSING_ROLE.finditer(line)})
    if missing:
        roles = ", ".join(missing)
        fix += (
            f"; the backup's objects belong to role(s) {roles}, which this server does not have: create them "
            f"({'; '.join(f'CREATE ROLE {pasteable(r)}' for r in missing)}) and restore again"
        )
    denied = next((m.group(1) for line in tail if (m := SCHEMA_DENIED.search(line))), None)
    if as_owners and denied:
        fix += (
            f"; each object is restored as its owner, and the owner of the object named above may not create in "
            f"schema {denied} (it was given the object, not the right to make it): "
            + (
                "GRANT CREATE ON SCHEMA public TO that owner in the live database (the scratch copy gets the "
                "public schema's grants before it is filled), then restore again"
                if denied == "public"
                else f"the grants of schema {denied} are restored after its objects: give the object to the "
                f"schema's owner in the live database, make a new backup and restore that"
            )
        )
    function = next((m.group(1) for line in tail if (m := IN_FUNCTION.search(line))), None)
    if function and any(UNDEFINED.search(line) and not MISSING_ROLE.search(line) for line in tail):
        schema = _schema_of(function)
        fix += (
            f"; a restore runs with an empty search_path (as pg_dump writes it), and {function} names a table or "
            f"function without its schema: in the live database, ALTER FUNCTION {function} SET search_path = "
            f"{schema} (or write the schema into its names), then make a new backup and restore that"
        )
    other = next((m.group(1) for line in tail if (m := NOT_MEMBER.search(line))), None)
    if fill_role and other:
        fix += (
            f"; the backup gives objects to role {other}, and the copy is filled as the live database's owner "
            f"{fill_role}, who cannot act as {other}: GRANT {pasteable(other)} TO {pasteable(fill_role)}, then "
            "restore again (or restore a custom-format backup, which a superuser fills as each object's owner)"
        )
    if stage is not None and stage.name == "sqlguard":
        fix += "; restore a plain dump of one database made without --create/--clean (not pg_dumpall)"
    return RestoreFailed(f"{what}: {stage.failure(lead=error) if stage else 'a stage failed'}", fix=fix)


def _schema_of(function: str) -> str:
    """The schema of a function as the server names it in a CONTEXT line (`"Sales.EU".f(integer)`, quotes kept, a
    dot inside them part of the name); `public` when it names none."""
    quoted = False
    for i, ch in enumerate(function):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            break
        elif not quoted and ch == ".":
            return function[:i]
    return "public"


def drop_copy(setup: BackupSetup, name: str) -> None:
    db = setup.database
    if isinstance(db, Postgres):
        db.drop(name)
        return
    for suffix in ("", *SQLITE_SIDE_FILES):
        db.path.with_name(name + suffix).unlink(missing_ok=True)


def rolled_back(live: dict[str, int | None], other: dict[str, int | None], newer: dict[str, int]) -> dict[str, int]:
    """Per key table, at least how many of live's rows a swap to `other` takes out of live: those its time columns
    stamp after the copy's moment, or, where more, as many as live holds beyond the copy (rows added with an older
    stamp, or by a table with no time column, are seen so). A table with neither is left out: unknown."""
    found: dict[str, int] = {}
    for table, count in live.items():
        before = other.get(table)
        beyond = count - before if count is not None and before is not None and count > before else 0
        if table in newer or beyond:
            found[table] = max(newer.get(table, 0), beyond)
    return found


def brought_back(live: dict[str, int | None], other: dict[str, int | None]) -> dict[str, int]:
    """Per key table, at least how many rows a swap to `other` brings back into live (rows deleted since): as many
    as it holds beyond live's count."""
    return {t: n - live[t] for t, n in other.items() if n is not None and live.get(t) is not None and n > live[t]}


def live_is_gone(setup: BackupSetup) -> bool:
    """The live database is not there at all (dropped, its file deleted): a restore makes it again."""
    db = setup.database
    return not db.exists(db.name) if isinstance(db, Postgres) else not db.path.exists()


def said_per_table(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {n}" for table, n in counts.items() if n)


@dataclass(frozen=True)
class Comparison:
    live: dict[str, int | None]
    restored: dict[str, int | None]
    live_revision: str | None
    restored_revision: str | None
    newer: dict[str, int]
    integrity: str | None = None
    built: tuple[str, ...] = ()  # restored counts the fill's index builds made (Postgres.built_counts)
    live_unreadable: str = ""  # why a SQLite live file could not be read (damaged): what a restore is for

    @property
    def lost(self) -> dict[str, int]:
        """At least how many rows of each key table the swap takes out of live (rolled_back)."""
        return rolled_back(self.live, self.restored, self.newer)

    @property
    def regained(self) -> dict[str, int]:
        """Rows the other copy holds beyond live's count, per key table: what the swap brings back (deleted rows)."""
        return brought_back(self.live, self.restored)

    def table(
        self, other: str = "restored", newer: str = "written after the backup", counted: dict[str, int] | None = None
    ) -> list[str]:
        """Live and the other copy's counts side by side, as the job log shows them; last, the rows of each that the
        swap takes out of live (`counted`, or else `lost`)."""
        lost = self.lost if counted is None else counted
        tables = list(self.live)
        width = max([len(t) for t in tables] + [5])
        column = max(len(other), 10)
        lines = [f"{'table':<{width}}  {'live':>10}  {other:>{column}}  {newer}"]
        for t in tables:
            live = ("unreadable" if self.live_unreadable else "missing") if self.live[t] is None else str(self.live[t])
            restored = "missing" if self.restored[t] is None else str(self.restored[t])
            count = str(lost[t]) if t in lost else "unknown"
            lines.append(f"{t:<{width}}  {live:>10}  {restored:>{column}}  {count}")
        lines.append(
            f"{'revision':<{width}}  {self.live_revision or 'none':>10}  {self.restored_revision or 'none':>{column}}"
        )
        if self.built:
            lines.append(f"(restored rows of {', '.join(self.built)}: as the restore's index builds counted them)")
        return lines


def compare(setup: BackupSetup, backup: Backup, scratch: str, *, live_remade: bool = False) -> Comparison:
    """Live and restored read at once, after the fill: counted beside a running restore, the live side
    took the cores pg_restore needed (measured: the fill 0.2 s slower at 200 MB), and read last it is
    closest to what the swap will roll back. (Read during the check step instead, it made that step as much
    longer as it made this one shorter: measured at 200 MB, 2026-11-26.)"""
    # A backup dated in the future (a clock skew) would put all of live before it: none counted by its stamps.
    since = None if ahead_of(backup.time, now_utc()) else backup.time
    return compare_with(setup, scratch, since, as_built=backup.format == "custom", live_remade=live_remade)


def compare_with(
    setup: BackupSetup, other: str, since: datetime | None, *, as_built: bool = False, live_remade: bool = False
) -> Comparison:
    """Live beside another database of the target (a scratch or a pre-restore copy): counts, revisions, and the
    live rows newer than `since`, which a swap takes out of live. `as_built`: see Postgres.built_counts."""
    db = setup.database
    tables = setup.key_tables
    where = other if isinstance(db, Postgres) else db.path.with_name(other)
    unreadable = ""
    if live_remade:  # made empty by this restore (and closed to connections): nothing in it to read
        restored = db.survey(tables, None, where, as_built=as_built)
        return Comparison(dict.fromkeys(tables), restored.counts, None, restored.revision, {}, built=restored.built)
    with ThreadPoolExecutor(1, thread_name_prefix="rewind-compare") as pool:
        live_reading = pool.submit(db.survey, tables, since)
        restored = db.survey(tables, None, where, as_built=as_built)
        try:
            live = live_reading.result()
        except DamagedFile as exc:
            # A damaged file is what a restore replaces: said, not refused; the swap keeps it as the copy. Any other
            # failure (a file Rewind may not open, or gone since the check) fails the step.
            unreadable = exc.message
            live = Survey(dict.fromkeys(tables), {}, None)
    return Comparison(
        live=live.counts,
        restored=restored.counts,
        live_revision=live.revision,
        restored_revision=restored.revision,
        newer=live.newer,
        integrity=None if isinstance(db, Postgres) else db.integrity(where),
        built=restored.built,
        live_unreadable=unreadable,
    )


def restore_test(setup: BackupSetup, backup: Backup, sink: Sink, scratch: str | None = None) -> str:
    """Restore into a scratch copy, count the key tables, read the revision, drop the copy: does it really restore?

    `scratch`: the copy's name, when the caller has already said it (a job killed midway must say where it is).
    """
    check_matches(setup, backup)
    sink.line("out", check_space(setup, backup))
    scratch = scratch or copy_name(setup, "test", stamp())
    restore_scratch(setup, backup, scratch, sink, settings=False)
    try:
        db = setup.database
        where = scratch if isinstance(db, Postgres) else db.path.with_name(scratch)
        counts = db.counts(setup.key_tables, where, as_built=backup.format == "custom")
        revision = db.revision(where)
        integrity = None if isinstance(db, Postgres) else db.integrity(where)
    finally:
        drop_copy(setup, scratch)
    missing = [t for t, n in counts.items() if n is None]
    if missing:
        raise RestoreFailed(f"{backup.id} restores without the key table(s) {', '.join(missing)}", fix=KEY_SPELLING)
    if integrity not in (None, "ok"):
        raise RestoreFailed(f"{backup.id} restores to a file failing SQLite's integrity check: {integrity}")
    made_at = backup.manifest.get("revision", revision)  # recorded when Rewind made it; a foreign file says nothing
    if made_at != revision:
        raise RestoreFailed(
            f"{backup.id} restores at schema revision {revision or 'none'}, but its database was at "
            f"{made_at or 'none'} when it was backed up",
            fix="the file does not hold what its manifest says: do not rely on it; make a new backup",
        )
    rows = ", ".join(f"{t} {n}" for t, n in counts.items()) or "no key tables configured"
    return f"restores ({rows}; revision {revision or 'none'}); the test copy was dropped"


def _live_config(db: Postgres, required: bool, sink: Sink) -> tuple[DatabaseConfig, bool]:
    """The live database's config, and whether its settings go to the copy (see restore_scratch)."""
    try:
        return db.check_settings(db.name), True
    except SettingRefused as exc:
        if required:
            raise
        sink.line("out", f"  ! {exc.message}; the test copy goes without the live database's settings")
        return db.config(db.name), False


# --- the swap ------------------------------------------------------------------------------


def _take_access(path: Path, live: Path) -> None:
    """Give the file to swap in the live file's mode (and, run as root, its owner): the scratch was made 0600
    by Rewind's user, and an application running as another user must still open its database."""
    try:
        seen = live.stat()
        os.chmod(path, stat.S_IMODE(seen.st_mode))
        if os.geteuid() == 0:
            os.chown(path, seen.st_uid, seen.st_gid)
    except OSError as exc:
        raise RestoreFailed(
            f"could not give {path.name} the mode and owner of {live.name}: {exc.strerror or exc}",
            fix="the live database was not touched; check the folder's permissions and restore again",
        ) from None


def swap_in(setup: BackupSetup, incoming: str, outgoing: str) -> None:
    """Rename live to `outgoing` and `incoming` to live; if the second rename fails, the first is undone."""
    db = setup.database
    if isinstance(db, Postgres):
        db.rename(db.name, outgoing)
        try:
            db.rename(incoming, db.name)
        except TargetError as exc:
            try:
                db.rename(outgoing, db.name)
            except TargetError:
                raise SwapHalfDone(
                    f"{exc.message}; renaming {outgoing} back to {db.name} failed too: the live database is now "
                    f"named {outgoing} and {incoming} is untouched",
                    fix=f"rename {outgoing} back to {db.name} (ALTER DATABASE) before starting the application",
                ) from None
            raise
        return
    live = db.path
    old = live.with_name(outgoing)
    new = live.with_name(incoming)
    if not new.is_file():
        raise RestoreFailed(f"{new} is not there to swap in", fix="the live database was not touched")
    _take_access(new, live)
    # Keep the old file under its new name first (a hard link), then replace atomically: there is
    # never a moment without a database file at the live path.
    try:
        os.link(live, old)
    except OSError as exc:
        raise RestoreFailed(
            f"could not keep {live.name} as {old.name} in {live.parent}: {exc.strerror or exc}",
            fix="the live database was not touched; free the name or the folder and restore again",
        ) from None
    moved: list[tuple[Path, Path]] = []
    try:
        for suffix in SQLITE_SIDE_FILES:
            side = Path(str(live) + suffix)
            if side.exists():
                os.replace(side, Path(str(old) + suffix))
                moved.append((side, Path(str(old) + suffix)))
        os.replace(new, live)
    except OSError as exc:
        for side, kept in reversed(moved):  # the live file's journal goes back beside it
            os.replace(kept, side)
        old.unlink()  # only a second name of the live file: the live path still holds it
        raise RestoreFailed(
            f"could not replace {live.name} with {new.name} in {live.parent}: {exc.strerror or exc}",
            fix="the live database was not touched; free the folder and restore again",
        ) from None
    sync_dir(live.parent)
