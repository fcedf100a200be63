"""Checking a backup before trusting it: what it is, that it is whole, that it decrypts and reads.

The quick check, in order of cost: not empty; really OpenPGP-encrypted, to
the expected recipients (read from the packet headers, so a cleartext file
named .gpg is refused); the SHA-256 recorded when it was made; then a
decrypting stream into a reader of the format (`pg_restore` for a
custom dump, to /dev/null) that stops at the first broken byte. Nothing is written.
"""

from __future__ import annotations

import os

from app.backups.catalog import Backup, open_to_read, sha256_of
from app.backups.setup import BackupSetup
from app.backups.sqlguard import guard_stage
from app.targets import openpgp
from app.targets.command import Sink, Stage, StageResult, run_pipeline
from app.targets.dbadmin import Postgres
from app.targets.errors import TargetError
from app.targets.gpg import GpgError, PassphraseError

READ_TIMEOUT_S = 6 * 3600


class BadBackup(TargetError):
    """The backup cannot be trusted or read; nothing was changed."""


class ToolFailed(BadBackup):
    """A tool of the check (gpg, the reader) failed without a word: the check could not be made, and nothing is
    known of the backup, so its verification on record is left as it was."""


class KeyLocked(ToolFailed):
    """The secret key would not unlock (a wrong or missing backups.passphrase): the backup is not to blame, so, as
    for ToolFailed, its verification on record is left as it was."""


def locked_key(setup: BackupSetup, gpg: StageResult | None = None) -> ToolFailed | None:
    """After gpg (the failed stage `gpg`) failed to decrypt: a KeyLocked when the key's passphrase is why, None when
    the key unlocks (then it is the data), a ToolFailed when that cannot be told (the check's few bytes cannot be
    encrypted to an expired key, say): a backup is blamed only once its key is known to unlock. None too when it
    cannot be told and gpg said nothing: the caller names a mute gpg as the tool's failure."""
    try:
        setup.home.check_unlocks(setup.recipients)
    except PassphraseError as exc:
        return KeyLocked(exc.message, fix=exc.fix)
    except GpgError as exc:
        if gpg is not None and not any(line.strip() for line in gpg.stderr_tail):
            return None
        return ToolFailed(
            f"gpg could not decrypt, and whether the secret key unlocks could not be checked: {exc.message}",
            fix=f"check backups.passphrase, and the key with `gpg --homedir {setup.home.home} --list-secret-keys` "
            "(an expired one still decrypts, but the check cannot encrypt to it); nothing was recorded against the "
            "backup",
        )
    return None


def check_envelope(setup: BackupSetup, backup: Backup) -> str:
    """BadBackup unless the file is encrypted to every recipient it should be; says to whom it is."""
    if backup.path.stat().st_size == 0:
        raise BadBackup(f"{backup.id} is empty (0 bytes)", fix="make a new backup; this file holds nothing")
    try:
        with open_to_read(backup.path) as head:
            envelope = openpgp.read_envelope(head)
    except openpgp.NotEncrypted as exc:
        raise BadBackup(f"{backup.id}: {exc.message}", fix=exc.fix) from None
    expected = list(backup.manifest.get("recipients") or setup.recipients)
    known = openpgp.encryption_key_ids(setup.home.home, expected, setup.home.env)
    present = set(envelope.key_ids)
    missing = [r for r in expected if not known[r] & present]
    if missing:
        raise BadBackup(
            f"{backup.id} is not encrypted to {', '.join(missing)} (it is for key id(s) "
            f"{', '.join(envelope.key_ids) or 'none'})",
            fix="restore only backups encrypted to this target's recipients, whose secret keys are in its GnuPG home",
        )
    return f"encrypted to {', '.join(expected)}"


def _keys_not_here(setup: BackupSetup, backup: Backup) -> tuple[str, ...] | None:
    """The file's key ids when none of them has its secret key in the target's home, () when one has, None when
    that cannot be read. By id, not by name: after a key rotation the old key carries the new one's name."""
    try:
        with open_to_read(backup.path) as head:
            envelope = openpgp.read_envelope(head)
        here = openpgp.secret_key_ids(setup.home.home, setup.home.env)
    except (OSError, TargetError):
        return None
    return () if set(envelope.key_ids) & here else tuple(envelope.key_ids)


def check_checksum(backup: Backup) -> str:
    if not backup.sha256:
        return "no checksum recorded (a file Rewind did not make)"
    found = sha256_of(backup.path)
    if found != backup.sha256:
        raise BadBackup(
            f"{backup.id} does not match its recorded SHA-256 (recorded {backup.sha256[:16]}…, "
            f"found {found[:16]}…): it was changed or damaged after it was made",
            fix="do not restore it; choose another backup",
        )
    return "SHA-256 matches"


def check_readable(setup: BackupSetup, backup: Backup, sink: Sink) -> str:
    """Decrypt the whole file as a stream into a reader of its format; BadBackup at the first failure."""
    db = setup.database
    with open_to_read(backup.path) as source, setup.home.decrypt_stage() as decrypt:
        if backup.format == "custom" and isinstance(db, Postgres):
            # Not --list: that reads only the table of contents and leaves gpg writing into a closed pipe.
            # Restoring to /dev/null reads every data block, so the whole file is decrypted and checked.
            lister = Stage.of(
                [db.tool("pg_restore"), "--file", os.devnull], "pg_restore", env=setup.target.command_env()
            )
            result = run_pipeline([decrypt, lister], sink, stdin=source, timeout=READ_TIMEOUT_S)
        else:
            # A plain dump also goes through the guard the restore uses: one that would act outside the
            # database it is restored into is refused here, before anything is made.
            middle = [guard_stage(setup.target.command_env())] if backup.format == "plain" else []
            with open(os.devnull, "wb") as nowhere:
                result = run_pipeline([decrypt, *middle], sink, stdin=source, stdout=nowhere, timeout=READ_TIMEOUT_S)
    if not result.ok:
        stage = result.failed
        if stage is not None and stage.name != "gpg":
            # gpg checks the file's integrity at its end; a reader fed damaged bytes may stop first and take gpg
            # down before it gets there. Decrypted alone, the file says whether it is the encryption that is bad.
            with (
                open_to_read(backup.path) as source,
                open(os.devnull, "wb") as nowhere,
                setup.home.decrypt_stage() as decrypt,
            ):
                alone = run_pipeline([decrypt], sink, stdin=source, stdout=nowhere, timeout=READ_TIMEOUT_S)
            stage = stage if alone.ok else alone.failed
        lines = [line.strip() for line in (stage.stderr_tail if stage else ()) if line.strip()]
        said = "; ".join(lines[-3:]) or (stage.failure() if stage else "")
        if stage is not None and stage.name == "gpg" and (locked := locked_key(setup, stage)) is not None:
            raise locked
        if stage is not None and stage.name == "gpg":
            if not lines:
                raise ToolFailed(
                    f"{backup.id} does not decrypt: {said}",
                    fix=f"a gpg that fails without a word points at gpg or its home ({setup.home.home}), not at the "
                    f"file: run that command by hand with the backup as its input (< {backup.path})",
                )
            # locked_key just decrypted with the target's keys: when the file is for one of the secret keys here,
            # the key is there and the data is not (by key id: after a rotation the old key has the new one's name).
            home, missing = setup.home.home, _keys_not_here(setup, backup)
            if missing == ():
                fix = (
                    f"the file is damaged or truncated (its secret key is in {home} and decrypts): choose "
                    "another backup"
                )
            elif missing:
                fix = (
                    f"it is for key id(s) {', '.join(missing)}, whose secret key is not in {home} (a key rotated out "
                    "keeps its name): import that secret key there, or choose another backup"
                )
            else:
                fix = f"the file is damaged or truncated, or its secret key is not in {home}"
            raise BadBackup(f"{backup.id} does not decrypt: {said}", fix=fix)
        if stage is not None and stage.name == "sqlguard":
            raise BadBackup(
                f"{backup.id} would act outside the database it is restored into: {said}",
                fix="restore a plain dump of one database made without --create/--clean (not pg_dumpall)",
            )
        if stage is not None and not lines:
            # A reader that stops without a word says nothing about the archive: the tool itself is the suspect.
            raise ToolFailed(
                f"{backup.id} decrypts, but its reader failed: {said}",
                fix=f"a {stage.name} that fails without a word points at the tool, not at the backup: check "
                "database.pg_bin in the targets file and run that command by hand on the decrypted stream",
            )
        raise BadBackup(
            f"{backup.id} decrypts but is not a readable {backup.format} archive: {said}",
            fix="the dump inside is damaged or truncated; choose another backup",
        )
    if backup.format == "custom":
        return "decrypts; the archive reads to its end"
    return "decrypts to its end"


def quick_verify(setup: BackupSetup, backup: Backup, sink: Sink) -> str:
    """Every quick check, each logged; BadBackup at the first that fails."""
    parts = []
    for check in (
        lambda: check_envelope(setup, backup),
        lambda: check_checksum(backup),
        lambda: check_readable(setup, backup, sink),
    ):
        parts.append(check())
        sink.line("out", f"  ✓ {parts[-1]}")
        sink.tick()
    return "; ".join(parts)
