"""Making a backup: the database dumped straight into GnuPG, written whole or not at all.

PostgreSQL: `pg_dump -Fc | gpg --encrypt` through OS pipes; SQLite: the online
backup API into memory, piped to gpg. Either way the plaintext never touches
the disk. The encrypted stream goes to a hidden temporary
name, is fsynced, hashed and only then renamed to its final name; a failure
removes the temporary file, so the folder never holds half a backup.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from app.backups.catalog import Backup, access, now_utc, partial_path, sha256_of
from app.backups.setup import BackupSetup
from app.files import sync_dir
from app.targets.command import Sink, Stage, run_pipeline
from app.targets.dbadmin import LOCK_WAIT_S, Postgres, Sqlite, made_record
from app.targets.errors import TargetError

DUMP_TIMEOUT_S = 6 * 3600


class BackupFailed(TargetError):
    """The backup could not be made; nothing was left in the backup folder."""


def _final_name(setup: BackupSetup, stamp: str, suffix: str) -> Path:
    folder = setup.catalog.folder
    base = f"{setup.target.name}_{stamp}"
    path = folder / f"{base}.{suffix}.gpg"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{base}-{n}.{suffix}.gpg"
    return path


def _failure(result, what: str) -> BackupFailed:
    stage = result.failed
    # pg_dump waits for its locks under a statement_timeout, and says the LOCK TABLE it gave up on
    locked = stage is not None and any("Query was: LOCK TABLE" in line for line in stage.stderr_tail)
    return BackupFailed(
        f"{what}: {stage.failure() if stage else 'a stage failed'}",
        fix=f"a session held a lock on a table for more than {LOCK_WAIT_S:g} s (the query above names it): let it "
        "finish or end it, then back up again"
        if locked
        else "",
    )


def create_backup(
    setup: BackupSetup,
    sink: Sink,
    *,
    job_id: int | None = None,
    purpose: str | None = None,
    source: Postgres | Sqlite | None = None,
) -> Backup:
    """A new encrypted backup in the catalog, with its manifest; BackupFailed (nothing left behind) otherwise.

    `purpose` says why it was made when another runbook took it ("before the downgrade to a1000001").
    `source` is a copy of the live database to back up instead (a pre-restore copy): the manifest names
    the live database as its database, so the backup restores into the target like any other, and the
    copy it was read from as `copy`.
    """
    db = source or setup.database
    # GpgError now if a recipient has no key. pg_dump's custom format is compressed already; an SQLite file is not.
    encrypt = setup.home.encrypt_argv(setup.recipients, compress=not isinstance(db, Postgres))
    folder = setup.catalog.folder
    with access(folder, "backup folder", "write"):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = datetime.now(UTC)  # to the microsecond: two backups in one second still sort
    stamp = started.strftime("%Y%m%d_%H%M%S")
    if isinstance(db, Postgres):
        major, version = db.server_version()
        facts = {"server_version": version, "server_major": major, "format": "custom", "engine": "postgresql"}
        final = _final_name(setup, stamp, "dump")
    else:
        facts = {"server_version": None, "format": "sqlite", "engine": "sqlite"}
        final = _final_name(setup, stamp, "sqlite")
    if source is not None:
        facts["copy"] = source.name
    facts |= {
        "database": setup.database.name,
        "source_size": db.size(),
        "revision": db.revision(),
        "counts": db.counts(setup.key_tables),
    }
    if isinstance(db, Postgres):
        shape = db.shape(db.name)
        # Roles other than the database's owner that own objects in it: a restore by a login that is no
        # superuser would give those objects to the owner, and is refused when this says there are any.
        facts["other_owners"] = db.other_owners(db.name, shape.owner)
        # How the database itself was made: a restore makes it again so when it has been dropped.
        facts["made"] = made_record(shape, db.config(db.name))
    temp = partial_path(final)
    try:
        with access(folder, "backup folder", "write"):
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupFailed(f"{temp} is being written by another backup", fix="wait for it to finish") from None
    try:  # from here on the temporary file is ours alone: a failure removes it
        with os.fdopen(fd, "wb") as out:
            if isinstance(db, Postgres):
                _dump_postgres(db, encrypt, setup, sink, out)
            else:
                _dump_sqlite(db, encrypt, setup, sink, out)
            out.flush()
            os.fsync(out.fileno())
        digest = sha256_of(temp)
        os.replace(temp, final)
        sync_dir(folder)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    manifest = {
        "file": final.name,
        "time": started.isoformat(),
        "finished": now_utc().isoformat(),
        "target": setup.target.name,
        "recipients": list(setup.recipients),
        "sha256": digest,
        "job_id": job_id,
        "made_by": "rewind",
        **facts,
    }
    if purpose:
        manifest["purpose"] = purpose
    return setup.catalog.add(Backup(final, manifest))


def _dump_postgres(db: Postgres, encrypt: list[str], setup: BackupSetup, sink: Sink, out) -> None:
    # A table locked by another session (a migration left idle in its transaction) fails the backup after a while
    # instead of holding the job, and with it the target, for as long as that session stays.
    wait = f"--lock-wait-timeout={int(LOCK_WAIT_S * 1000)}"
    dump = [db.tool("pg_dump"), "--format=custom", wait, "--no-password", *db.url.tool_args()]
    result = run_pipeline(
        [
            Stage.of(dump, "pg_dump", env=db.url.tool_env(setup.target.command_env())),
            Stage.of(encrypt, "gpg", env=setup.home.env),
        ],
        sink,
        stdout=out,
        timeout=DUMP_TIMEOUT_S,
    )
    if not result.ok:
        raise _failure(result, f"the backup of {db.name} failed")


def _dump_sqlite(db: Sqlite, encrypt: list[str], setup: BackupSetup, sink: Sink, out) -> None:
    # SQLite's online backup API copies into an in-memory database, whose bytes are fed to gpg
    # through a pipe: as with pg_dump, the plaintext copy never touches the disk.
    data = db.snapshot()
    read_end, write_end = os.pipe()
    feeder = threading.Thread(target=_feed, args=(write_end, data), name="rewind-sqlite-feed", daemon=True)
    try:
        feeder.start()
        result = run_pipeline(
            [Stage.of(encrypt, "gpg", env=setup.home.env)], sink, stdin=read_end, stdout=out, timeout=DUMP_TIMEOUT_S
        )
    finally:
        os.close(read_end)
        feeder.join()
    if not result.ok:
        raise _failure(result, f"the encryption of {db.name} failed")


def _feed(fd: int, data: bytes) -> None:
    """Write everything to the pipe, then close it. When gpg has gone (failed, stopped), the caller
    closes its read end too, and the write here ends with a broken pipe instead of waiting forever."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)
