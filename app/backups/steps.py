"""Backup steps any runbook can run: make an encrypted backup, then verify it.

The `backup` runbook is these two steps; a runbook about to destroy data (a
schema downgrade) takes the same two first, so its backup is made, checked
and catalogued exactly like one made from the Backups tab.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.backups.catalog import Backup, NoAccess
from app.backups.create import create_backup
from app.backups.restore import copy_name, restore_test, stamp
from app.backups.setup import BackupSetup, setup_of
from app.backups.verify import ToolFailed, quick_verify
from app.jobs import steps
from app.jobs.context import JobContext
from app.targets.command import CommandCancelled
from app.targets.errors import TargetError
from app.targets.openpgp import KeyListFailed


def setup_for(ctx: JobContext) -> BackupSetup:
    """The target's backup setup; its passphrase, if any, masked in this job's log from here on (a literal one in
    the targets file too, not only an env: one)."""
    with steps.adapter_errors(ctx):
        setup = setup_of(steps.target_of(ctx))
    ctx.add_secret(setup.home.passphrase)
    return setup


def take_backup(ctx: JobContext, *, purpose: str | None = None, copy: str | None = None) -> Backup:
    """A new encrypted backup in the catalog, made by this job (its id in `ctx.state["backup"]`).

    `copy` names a restore's copy beside the live database to back up instead of the live one.
    """
    setup = setup_for(ctx)
    with steps.adapter_errors(ctx):
        source = setup.database.sibling(copy) if copy else None
        ctx.log(f"backing up {(source or setup.database).name} ({setup.kind}) to {', '.join(setup.recipients)}")
        backup = create_backup(setup, ctx, job_id=ctx.job_id, purpose=purpose, source=source)
    ctx.state["backup"] = backup.id
    ctx.log(f"wrote {backup.path} ({backup.size} bytes, SHA-256 {backup.sha256})")
    return backup


@contextmanager
def failure_recorded(setup: BackupSetup, backup: Backup, ctx: JobContext, how: str = "quick") -> Iterator[None]:
    """A check inside this that finds the file at fault records it in the manifest, so no page calls it verified
    any longer, whichever job found it (a verify, or the check before a restore)."""
    try:
        yield
    except (NoAccess, ToolFailed, KeyListFailed):
        # the file may be good: a refusal to read it, or a tool failing without a word, says nothing of it, so
        # nothing is recorded
        raise
    except TargetError as exc:
        setup.catalog.record_verification(backup, how=how, ok=False, detail=exc.message, job_id=ctx.job_id)
        raise


def verify_and_record(setup: BackupSetup, backup: Backup, ctx: JobContext, how: str = "quick") -> str:
    """Verify a backup and record the outcome in its manifest either way; the adapter's error when it fails."""
    with failure_recorded(setup, backup, ctx, how):
        detail = quick_verify(setup, backup, ctx)
        if how == "restore-test":
            ctx.progress(0.3, "restore test")
            scratch = copy_name(setup, "test", stamp())
            ctx.standing(
                f"the live database is untouched; the restore test's copy {scratch} was being filled or counted "
                "(the cleanup runbook drops it)"
            )
            ctx.log(f"restore test: restoring {backup.id} into the scratch copy {scratch}")
            try:
                tested = restore_test(setup, backup, ctx, scratch)
            except CommandCancelled:
                # restore_scratch dropped the half-filled copy: where things stand, as a restore's cancel says
                ctx.log(f"dropped the restore test's copy {scratch}; the live database was not touched")
                raise CommandCancelled(
                    f"The live database was not touched; the restore test's copy {scratch} was dropped, and nothing "
                    "was recorded against the backup."
                ) from None
            ctx.log(f"  ✓ {tested}")  # the log says how the test ended, as it does each quick check
            detail += "; " + tested
            ctx.standing(f"the live database is untouched; the restore test's copy {scratch} was dropped")
    setup.catalog.record_verification(backup, how=how, ok=True, detail=detail, job_id=ctx.job_id)
    return detail


def make_backup(ctx: JobContext) -> None:
    backup = take_backup(ctx)
    ctx.set_result(f"Backed up {ctx.target} to {backup.id}.")
    ctx.progress(1.0, backup.id)


def verify_backup(ctx: JobContext) -> None:
    """The quick check (then a restore test when asked); the result is recorded in the manifest either way."""
    setup = setup_for(ctx)
    backup_id = ctx.state.get("backup") or ctx.params["backup"]
    with steps.adapter_errors(ctx):
        backup = setup.catalog.get(backup_id)
        try:
            detail = verify_and_record(setup, backup, ctx, ctx.params.get("level") or "quick")
        except TargetError as exc:
            ctx.verified(False, exc.message)
            raise
    ctx.verified(True, f"{backup.id}: {detail}")
    # After the step that made it ("Backed up <copy> to <backup>."), that stays first: a backup of a restore copy
    # read only "<backup> verified: …", naming nowhere the copy whose rows it keeps.
    made = ctx.result.removesuffix(".") if ctx.result else None
    ctx.set_result(f"{made}, verified: {detail}." if made else f"{backup.id} verified: {detail}.")
    ctx.progress(1.0, "verified")
