"""Data rollback runbooks: back up, verify, restore (scratch, compare, swap), undo, clean up.

The restore keeps the application serving until the restored copy is
proven: steps before `stop` never touch the live database or the running
application, and the swap only renames, so the replaced database is kept as
the safety copy that undo puts back.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import select

from app.auth.roles import Role
from app.backups import captures, expiry, retention, schedule
from app.backups.catalog import Backup, access, now_utc
from app.backups.restore import (
    KEY_SPELLING,
    Copy,
    SwapHalfDone,
    check_copyable,
    check_kind,
    check_matches,
    check_space,
    compare,
    compare_with,
    copies,
    copy_base,
    copy_name,
    drop_copy,
    remake_live,
    restore_scratch,
    said_per_table,
    stamp,
    swap_in,
    unmake_live,
)
from app.backups.setup import BackupSetup, setup_of
from app.backups.status import ahead_of, future_words
from app.backups.steps import failure_recorded, make_backup, setup_for, take_backup, verify_backup
from app.backups.undo import swapped_since, undo_of, unseen_swap
from app.backups.verify import check_checksum, check_envelope, quick_verify
from app.extensions import db
from app.jobs import steps
from app.jobs.context import JobCancelled, JobContext
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.runbook import CONFIRM, Param, ParamError, Runbook, Step, StepFailed, confirm_protected, register
from app.jobs.swaps import Swap
from app.targets.command import CommandCancelled
from app.targets.errors import TargetError
from app.wording import byte_size

assert captures.BACKUP  # registered on import: every checkpoint records the newest verified backup
assert schedule.TASK  # registered on import: the scheduler queues due backups every minute
assert expiry.TASK  # registered on import: and backs up, then drops, restore copies past their time


# --- parameters ----------------------------------------------------------------------------


def _setup_param(target: str | None, param: str) -> BackupSetup:
    try:
        return setup_of(current_targets().open(target))
    except TargetError as exc:
        raise ParamError(param, exc.message) from None


def check_backup(value: str, target: str | None) -> str:
    """The backup id, once found in the target's catalog (no paths, nothing outside the folder)."""
    setup = _setup_param(target, "backup")
    try:
        return setup.catalog.get(value).id
    except TargetError as exc:
        raise ParamError("backup", exc.message) from None


def _past_an_unseen_swap(target: str, copy: Copy, seen: int | None) -> tuple[Swap, str] | None:
    """The swap an undo of `copy` would go back past though the person was not told of it, and why, in words."""
    later = unseen_swap(target, copy, seen)
    if later is None:
        return None
    return later, (
        f"live has been swapped since {copy.name} was made: job #{later.job_id} put another database in place "
        f"({later.at:%Y-%m-%d %H:%M:%S} UTC), and this undo would go back past it too. Look at the Backups tab "
        "again and confirm there"
    )


def check_undo_params(params: dict, target: str | None) -> None:
    """Queued only when the person was told of every swap the undo goes back past (a page drawn before a later
    restore, or a shell that never showed it, would otherwise undo that restore too, unsaid). Before the typed name
    (Runbook.precheck): a shell says so before asking for it."""
    setup = _setup_param(target, "pre_restore")
    copy = next((c for c in copies(setup) if c.name == params["pre_restore"]), None)
    if copy is None:  # there a moment ago (check_pre_restore), dropped since
        raise ParamError("pre_restore", f"{params['pre_restore']} is no longer there: it was dropped or put back since")
    if past := _past_an_unseen_swap(target, copy, params.get("seen_swap")):
        later, why = past
        raise ParamError("seen_swap", why, from_shell=f"add seen_swap={later.job_id} to go back past it on purpose")


def check_pre_restore(value: str, target: str | None) -> str:
    setup = _setup_param(target, "pre_restore")
    kept = [c.name for c in copies(setup) if c.kind == "pre_restore"]
    if value not in kept:
        if (undone := undo_of(target, value)) is not None:  # a page drawn before that undo (QA)
            raise ParamError("pre_restore", f"{value} was already put back by job #{undone.id}: nothing was changed")
        raise ParamError(
            "pre_restore", f"{value!r} is not a pre-restore copy of {target} (there are: {', '.join(kept) or 'none'})"
        )
    return value


COPY_KINDS = {"pre_restore": "the pre-restore copy", "restore": "the scratch copy", "undone": "the undone copy"}


def check_copy(value: str, target: str | None) -> str:
    """A restore's copy kept beside the live database (pre-restore, scratch, undone): never live, never a path."""
    setup = _setup_param(target, "copy")
    kept = [c.name for c in copies(setup) if c.kind in COPY_KINDS]
    if value not in kept:
        there = ", ".join(kept) or "none"
        raise ParamError("copy", f"{value!r} is not a restore copy of {target} (there are: {there})")
    return value


def check_hours(value: int | None, target: str | None) -> int | None:
    if value is not None and value < 0:
        raise ParamError("older_than_hours", f"must be 0 or more, got {value}", "Older than (hours)")
    return value


# --- a backup of a restore's copy ---------------------------------------------------------


def copy_purpose(target: str, copy: Copy) -> str:
    """What the catalog says the backup is: which copy, of which job ("the pre-restore copy of restore job #7")."""
    job = db.session.scalar(
        select(Job)
        .where(Job.target == target, Job.runbook.in_(("restore_backup", "undo_restore")))
        .where(Job.result.contains(copy.name))
        .order_by(Job.id.desc())
        .limit(1)
    )
    of = f" of {'undo' if job.runbook == 'undo_restore' else 'restore'} job #{job.id}" if job else ""
    return f"{COPY_KINDS[copy.kind]}{of} ({copy.name})"


def back_up_copy(ctx: JobContext) -> None:
    """An encrypted backup of a kept copy, so its rows outlive the copy (dropped after backups.keep_copies_hours)."""
    setup = setup_for(ctx)
    name = ctx.params["copy"]
    with steps.adapter_errors(ctx):
        found = next((c for c in copies(setup) if c.name == name), None)
    if found is None:
        raise StepFailed(f"{name} is no longer there (dropped since the job was queued): nothing to back up")
    backup = take_backup(ctx, purpose=copy_purpose(ctx.target, found), copy=name)
    ctx.set_result(f"Backed up {name} to {backup.id}.")
    ctx.progress(1.0, backup.id)


# --- retention ----------------------------------------------------------------------------


def prune(ctx: JobContext) -> None:
    """Retention after a verified backup: the last N, one a day for D days, never the newest verified.

    A file Rewind may not delete is named in the log and kept, and the others are still deleted: the step then
    fails, which ends the backup job "succeeded with warnings" (the backup itself was made and verified).
    """
    setup = setup_for(ctx)
    config = steps.target_of(ctx).config.backups
    if config.keep_last is None:
        ctx.skip("no retention configured (backups.keep_last): every backup is kept")
    with steps.adapter_errors(ctx):
        doomed = retention.plan(setup.catalog.backups(), config.keep_last, config.keep_daily_days, now_utc())
        leftovers = setup.catalog.orphan_manifests()
    if not doomed and not leftovers:
        ctx.skip("nothing is past retention")
    deleted, refused = 0, []
    for backup in doomed:
        ctx.check_cancelled()
        try:
            retention.delete(setup.catalog, backup)
        except retention.HalfDeleted as exc:
            deleted += 1
            refused.append(exc)
            ctx.log(f"deleted {backup.id} ({backup.time.isoformat()}), past retention; but {exc.in_words()}")
        except TargetError as exc:  # NoAccess, or a backup that changed since the plan: kept
            refused.append(exc)
            ctx.log(f"could not delete {backup.id} (kept): {exc.in_words()}")
        else:
            deleted += 1
            ctx.log(f"deleted {backup.id} ({backup.time.isoformat()}), past retention")
    for manifest in leftovers:
        try:
            retention.delete_orphan(setup.catalog, manifest)
        except TargetError as exc:
            refused.append(exc)
            ctx.log(f"could not delete {manifest.name}, a manifest left without its backup: {exc.in_words()}")
        else:
            ctx.log(f"deleted {manifest.name}, a manifest left without its backup by an earlier deletion")
    if refused:
        first = refused[0]
        raise StepFailed(
            f"{len(refused)} file{'s' if len(refused) > 1 else ''} past retention could not be deleted "
            f"({deleted} of {len(doomed)} backups were); see the log. First: {first.in_words()}"
        )
    ctx.progress(1.0, f"deleted {deleted}")


# --- restore -------------------------------------------------------------------------------


def check_restore(ctx: JobContext) -> None:
    """In the catalog, the right database, decrypts, checksum matches, room for the scratch copy.

    The checks read different things (the file, gpg, the server's catalogs and disk) and run side by side; each
    is reported in a fixed order, and the first that fails fails the step."""
    setup = setup_for(ctx)
    with steps.adapter_errors(ctx):
        backup = setup.catalog.get(ctx.params["backup"])
        ctx.log(f"checking {backup.id} ({backup.size} bytes, made {backup.time.isoformat()})")
        check_kind(setup, backup)  # a backup of another database is refused before live is made again
        remade = remake_live(setup, backup)
    if remade:
        ctx.log(remade, "err")
        ctx.standing("the live database was gone; Rewind made it again, empty, for the restore to replace")
    ctx.state["remade"] = bool(remade)
    try:
        _check_restore(ctx, setup, backup)
    except BaseException:
        _unmake_if_remade(ctx, setup)
        raise
    ctx.progress(1.0, "backup checked")


def _drop_made_empty(ctx: JobContext, setup: BackupSetup, name: str) -> bool:
    """After a verified swap, the empty database made in place of a missing live one holds nothing to undo to."""
    try:
        dropped = unmake_live(setup, name)
    except TargetError as exc:
        ctx.log(f"could not drop {name}, the empty database made for the restore ({exc.message})")
        return False
    if dropped:
        ctx.log(f"dropped {name}, the empty database made for the restore: nothing was in it")
    return dropped


def _unmake_if_remade(ctx: JobContext, setup: BackupSetup) -> str | None:
    """A restore that stops before its swap leaves live as it found it: the empty live database it made in place
    of a missing one goes again (kept if something wrote to it meanwhile). In words, or None (none was made)."""
    if not ctx.state.pop("remade", False):
        return None
    try:
        with ctx.shielded():
            dropped = unmake_live(setup)
    except TargetError as exc:
        said = f"the empty live database made for this restore could not be dropped again ({exc.message})"
    else:
        said = (
            "the empty live database made for this restore was dropped again"
            if dropped
            else "the live database made for this restore is kept: something has written to it since"
        )
    ctx.log(said)
    return said


def _check_restore(ctx: JobContext, setup: BackupSetup, backup: Backup) -> None:
    with steps.adapter_errors(ctx), ThreadPoolExecutor(4, thread_name_prefix="rewind-check") as pool:
        verified = backup.verified or {}
        # The same bytes (SHA-256) that decrypted and read to the end when verified: the scratch restore
        # decrypts them once more anyway, so a second full decrypting pass here would only add time.
        known = backup.state.is_verified and backup.sha256
        if known:
            checksum = pool.submit(check_checksum, backup)
            envelope = pool.submit(check_envelope, setup, backup)
            # Not decrypted again here: but a key that does not unlock (a wrong or missing backups.passphrase) is
            # found now, with a few bytes, not in the fill.
            unlocks = pool.submit(setup.home.check_unlocks, setup.recipients)
        space = pool.submit(check_space, setup, backup)
        copyable = pool.submit(check_copyable, setup, backup)
        health = steps.target_of(ctx).health()
        before = pool.submit(health.probe) if health is not None else None  # one request, in its own timeout
        check_matches(setup, backup)
        with failure_recorded(setup, backup, ctx):  # a damaged file is verified no more, on every page
            if known:
                ctx.log(f"  ✓ {envelope.result()}")
                ctx.log(f"  ✓ {checksum.result()}: the file verified ({verified.get('how')}) at {verified.get('at')}")
            else:
                quick_verify(setup, backup, ctx)
        if known:
            ctx.log(f"  ✓ {unlocks.result()}")
        ctx.log(space.result())
        if said := copyable.result():
            ctx.log(f"  ✓ {said}")
        if before is not None and not (probe := before.result()).ok:
            # An app already failing for another cause fails the restore's verification too, and the swap back
            # follows: said first, and again with the failure, so the person looks for the cause elsewhere.
            ctx.state["unhealthy_before"] = sick = ctx.redact(probe.reason)
            ctx.log(
                f"  ! {ctx.target} is not healthy before the restore ({sick}): after the swap it must be, or the "
                "restore swaps back"
            )
        _name_copies(ctx, setup, ("restore", "pre_restore"))


def _name_copies(ctx: JobContext, setup: BackupSetup, kinds: tuple[str, ...]) -> None:
    """Every copy name the job will need, built and checked before anything is made or stopped."""
    ctx.state["stamp"] = stamp()
    names = {kind: copy_name(setup, kind, ctx.state["stamp"]) for kind in kinds}
    taken = {c.name for c in copies(setup)} & set(names.values())
    if taken:
        raise StepFailed(f"{', '.join(sorted(taken))} is already there: wait a second and try again")
    ctx.state["names"] = names
    shown = ", ".join(f"{COPY_KINDS[kind]} {name}" for kind, name in names.items())
    ctx.log(f"  ✓ the copies will be {shown}")
    if (base := copy_base(setup)) != setup.database.name:
        ctx.log(f"    ({setup.database.name} is too long for a copy's name within 63 bytes: {base} stands for it)")


def check_undo(ctx: JobContext) -> None:
    """The pre-restore copy is still there, and the name the restored database will be kept under is free."""
    setup = setup_for(ctx)
    pre = ctx.params["pre_restore"]
    with steps.adapter_errors(ctx):
        found = next((c for c in copies(setup) if c.kind == "pre_restore" and c.name == pre), None)
        if found is None:
            raise StepFailed(f"{pre} is no longer there (dropped since the job was queued): nothing was changed")
        ctx.log(f"  ✓ the pre-restore copy {pre} is there")
        if past := _past_an_unseen_swap(ctx.target, found, ctx.params.get("seen_swap")):
            raise StepFailed(f"{past[1]}: nothing was changed")  # a swap made while this undo waited in the queue
        if later := swapped_since(ctx.target, [found]).get(pre):  # seen, and confirmed: said, as the job's own record
            ctx.log(
                f"  ! live was swapped again since {pre} was made (job #{later.job_id}, {later.at:%Y-%m-%d %H:%M:%S} "
                "UTC): this undo goes back past that swap too, as confirmed"
            )
        _name_copies(ctx, setup, ("undone",))
    ctx.state["restored_at"] = found.time.isoformat()
    ctx.progress(1.0, "copies checked")


def inspect_undo(ctx: JobContext) -> None:
    """Live beside the pre-restore copy, and the rows written since the restore, which the undo takes out of live:
    seen before the app stops, as a restore shows what it rolls back. Said, never refused: undo is the way back."""
    setup = setup_for(ctx)
    restored_at = datetime.fromisoformat(ctx.state["restored_at"])
    undone = ctx.state["names"]["undone"]
    try:
        found = compare_with(setup, ctx.params["pre_restore"], restored_at)
    except TargetError as exc:  # a key table locked by a stuck session: the swap ends such sessions anyway
        ctx.log(f"could not compare: {ctx.redact(exc.in_words())}", "err")
        ctx.log(f"the undo goes on; rows written since the restore stay in {undone}")
        ctx.progress(1.0, "not compared")
        return
    # By time columns alone: live holding more rows than the pre-restore copy is what the restore brought back.
    for line in found.table(other="pre-restore", newer="written since the restore", counted=found.newer):
        ctx.log(line)
    if found.newer and not sum(found.newer.values()):
        ctx.log("the undo takes no rows written to the key tables since the restore out of the live database")
    elif found.newer:
        ctx.log(
            f"the undo takes {sum(found.newer.values())} row(s) written to the key tables since the restore out of "
            f"the live database; they stay readable in {undone}"
        )
    else:
        ctx.log(f"rows written since the restore (none of the key tables has a time column to tell) stay in {undone}")
    ctx.progress(1.0, f"{len(found.live)} key table(s) compared")


def checkpoint_restore(ctx: JobContext) -> None:
    """The checkpoint, once a cancel that came during the check has put back what the check made (the live database
    it made again): see _cancelled_before_the_stop."""
    _cancelled_before_the_stop(ctx)
    steps.checkpoint(ctx)


def fill_scratch(ctx: JobContext) -> None:
    _cancelled_before_the_stop(ctx)
    setup = setup_for(ctx)
    with steps.adapter_errors(ctx):
        backup = setup.catalog.get(ctx.params["backup"])
        scratch = ctx.state["names"]["restore"]
        serving = (
            f"{ctx.target} is not running (it was stopped before this job); it is started on the restored "
            "database at the end, to verify it"
            if steps.known_stopped(ctx)
            else f"{ctx.target} keeps serving"
        )
        ctx.log(f"restoring {backup.id} into the scratch database {scratch}; {serving}")
        ctx.standing(
            f"the live database is untouched; the scratch database {scratch} was being filled "
            "(the cleanup runbook drops it)"
        )
        try:
            restore_scratch(setup, backup, scratch, ctx, live_remade=bool(ctx.state.get("remade")))
        except CommandCancelled:
            # restore_scratch dropped the half-filled copy: where things stand, as a cancel at any other step says
            live = _unmake_if_remade(ctx, setup) or "the live database was not touched"
            ctx.log(f"dropped the half-filled scratch copy {scratch}; {live}")
            outcome = f"{live[0].upper()}{live[1:]}; the half-filled scratch copy {scratch} was dropped."
            raise CommandCancelled(outcome) from None
        except BaseException:
            _unmake_if_remade(ctx, setup)
            raise
    ctx.state["scratch"] = scratch
    ctx.standing(f"the live database is untouched; the restored copy is {scratch} (the cleanup runbook drops it)")
    ctx.log(f"{scratch} is filled")
    ctx.progress(1.0, scratch)


def inspect_scratch(ctx: JobContext) -> None:
    """Live and restored side by side, and what the restore will roll back; a bad copy is dropped."""
    _cancelled_before_the_stop(ctx)
    setup = setup_for(ctx)
    scratch = ctx.state["scratch"]
    try:
        with steps.adapter_errors(ctx):
            backup = setup.catalog.get(ctx.params["backup"])
            found = compare(setup, backup, scratch, live_remade=bool(ctx.state.get("remade")))
        if found.live_unreadable:
            ctx.log(f"! live cannot be read: {found.live_unreadable}", "err")
            ctx.log(f"the restore replaces it; the unreadable file is kept as {ctx.state['names']['pre_restore']}")
        for line in found.table():
            ctx.log(line)
        if ahead := ahead_of(backup.time, now_utc()):
            ctx.log(
                f"{backup.id} is {future_words(ahead)}; its time cannot tell which of live's rows were written "
                "after it: unknown above, unless live holds more rows than the copy"
            )
        pre = ctx.state["names"]["pre_restore"]
        if (lost := found.lost) and not sum(lost.values()):
            untold = [t for t, n in found.live.items() if n is not None and t not in lost]
            unknown = f" (unknown in {', '.join(untold)}: nothing to tell by)" if untold else ""
            ctx.log(f"the restore rolls back no rows written to the key tables after the backup{unknown}")
        elif lost:
            ctx.log(
                f"the restore rolls back at least {sum(lost.values())} row(s) written to the key tables after the "
                f"backup ({said_per_table(lost) or 'none'}); they stay readable in {pre}"
            )
        if regained := found.regained:
            ctx.log(
                f"it brings back at least {sum(regained.values())} row(s) live no longer has "
                f"({said_per_table(regained)})"
            )
        if absent := [t for t, n in found.live.items() if n is None and found.restored.get(t) is None]:
            ctx.log(f"note: the key table(s) {', '.join(absent)} are in neither live nor the copy: {KEY_SPELLING}")
        problems = [t for t, n in found.restored.items() if n is None and found.live.get(t) is not None]
        if problems:
            raise StepFailed(f"the restored copy lacks key table(s) {', '.join(problems)}")
        if found.integrity not in (None, "ok"):
            raise StepFailed(f"the restored copy fails its integrity check: {found.integrity}")
        if found.live_revision != found.restored_revision:
            ctx.log(
                f"note: the restored copy is at schema revision {found.restored_revision or 'none'}, "
                f"live is at {found.live_revision or 'none'}"
            )
    except StepFailed:
        _drop_quietly(ctx, setup, scratch)
        _unmake_if_remade(ctx, setup)
        raise
    ctx.state["comparison"] = {"live": found.live, "restored": found.restored, "newer": found.newer}
    ctx.progress(1.0, f"{len(found.live)} key table(s) compared")


def _drop_quietly(ctx: JobContext, setup: BackupSetup, name: str) -> str:
    """Drop a scratch copy of ours; what became of it, in words for the job's message."""
    try:
        drop_copy(setup, name)
        ctx.log(f"dropped the scratch copy {name}; the live database was not touched")
        return f"the scratch copy {name} was dropped"
    except TargetError as exc:
        ctx.log(f"could not drop the scratch copy {name} ({exc.message}); the cleanup runbook can")
        return f"the scratch copy {name} is still there (the cleanup runbook drops it)"


def _copies_untouched(ctx: JobContext) -> str:
    """Where the copies of a restore or undo stand when it fails before its swap."""
    if ctx.params.get("pre_restore"):
        return f"the pre-restore copy {ctx.params['pre_restore']} is unchanged"
    return "no pre-restore copy was made"


def _start_again(ctx: JobContext) -> str:
    """Start the application on the database it had, and check it serves: the outcome in words.

    Shielded from a cancel: it puts right what a cut-short step left, so it runs to its end. An app that was not
    running at the stop is left as found.
    """
    if ctx.state.get("was_down"):
        return f"{ctx.target} is left stopped, as it was before this job"
    try:
        with ctx.shielded():
            with steps.adapter_errors(ctx):
                steps.control_of(ctx).start(ctx)
            healthy, detail = steps.check_health(ctx, state_checks=False)
    except StepFailed as exc:
        return f"starting {ctx.target} again failed too ({exc}): start it by hand"
    if healthy:
        return f"{ctx.target} was started again and is healthy"
    return f"{ctx.target} was started again but is not healthy ({detail})"


def _start_unswapped(ctx: JobContext, cause: StepFailed | JobCancelled, why: str) -> NoReturn:
    """The app may be stopped (or stopped halfway) and nothing was swapped: start it again on the live database,
    drop a restore's scratch copy, then fail, or end cancelled, saying where things stand."""
    if ctx.state.get("was_down"):
        ctx.log(f"{why}; {ctx.target} was not running before this job: it is left stopped")
    else:
        ctx.log(f"{why}; starting {ctx.target} again (a stop cut short may have stopped it halfway)")
    unmade = _unmake_if_remade(ctx, setup_for(ctx))  # before the start: the app would hold it open
    started = _start_again(ctx)
    where = [_copies_untouched(ctx)]
    if ctx.state.get("scratch"):
        where.append(_drop_quietly(ctx, setup_for(ctx), ctx.state["scratch"]))
    if unmade:
        where.append(unmade)
    standing = f"The live database was not touched; {started}; " + "; ".join(where) + "."
    if isinstance(cause, JobCancelled):
        raise JobCancelled(cause.by, standing)
    raise StepFailed(f"Could not stop {ctx.target}: {cause}. {standing}")


def _cancelled_before_the_stop(ctx: JobContext) -> None:
    """A cancel asked while an earlier step ran (the check, the checkpoint, the end of the fill, the compare counting
    live or waiting on its locks): nothing is stopped or renamed yet, so the restore's scratch copy goes, and so does
    an empty live database the check made again, and the job ends saying so, as a cancel at any other step does (QA:
    it ended "Cancelled … during “Stop the application”." and left the copy unsaid). Each step from the check to the
    stop asks this first: left to the runner's own check between steps, the cancel ended the job with both left."""
    if not (by := ctx.cancel_requested()):
        return
    live = _unmake_if_remade(ctx, setup_for(ctx)) or "the live database was not touched"
    where = [f"{live} and {ctx.target} was not stopped", _copies_untouched(ctx)]
    if ctx.state.get("scratch"):
        where.append(_drop_quietly(ctx, setup_for(ctx), ctx.state["scratch"]))
    said = "; ".join(where)
    raise JobCancelled(by, f"{said[0].upper()}{said[1:]}.")


def stop_app(ctx: JobContext) -> None:
    """Stop for the swap; a failed or cancelled stop starts the app again, the live database untouched."""
    _cancelled_before_the_stop(ctx)
    control = steps.control_of(ctx)
    # Looked at right before the stop, never carried over from the fill (hours, maybe, in which a supervisor may
    # have brought a crashed app back): what "as found" means if the restore fails before its swap (_start_again).
    down = ctx.state["was_down"] = steps.known_stopped(ctx)
    try:
        with steps.adapter_errors(ctx):
            control.stop(ctx)
    except StepFailed as exc:
        _start_unswapped(ctx, exc, f"could not stop {ctx.target}")
    except JobCancelled as exc:
        _start_unswapped(ctx, exc, f"the stop was cancelled by {exc.by}")
    ctx.did(f"stopped {ctx.target}")
    if ctx.state.get("scratch"):
        ctx.standing(
            f"{ctx.target} was stopped for the swap; the live database is untouched; the restored copy is "
            f"{ctx.state['scratch']}: start {ctx.target} to serve the live database again"
        )
    said = "was not running: no downtime starts here" if down else "is stopped: downtime starts"
    ctx.log(f"{ctx.target} {said}")
    ctx.progress(1.0, "stopped")


def _cancelled_before_the_swap(ctx: JobContext) -> None:
    """A cancel that came once the app was stopped, before the swap: nothing renamed, the app started again."""
    if by := ctx.cancel_requested():
        _start_unswapped(ctx, JobCancelled(by), f"cancelled by {by} before the swap")


def swap_restore(ctx: JobContext) -> None:
    _cancelled_before_the_swap(ctx)
    setup = setup_for(ctx)
    pre = ctx.state["names"]["pre_restore"]
    _swap(ctx, setup, incoming=ctx.state["scratch"], outgoing=pre, label="the restored copy", then="undo puts it back")
    if ctx.state.get("remade"):
        ctx.log(f"the replaced database, the empty one made in place of the missing live database, is {pre} now")
    else:
        ctx.log(f"the replaced database is kept as {pre}: rows written after the backup stay readable there")


def swap_undo(ctx: JobContext) -> None:
    _cancelled_before_the_swap(ctx)
    setup = setup_for(ctx)
    undone = ctx.state["names"]["undone"]
    # An undone copy has no undo of its own: what it holds is kept by backing it up.
    then = "its rows stay readable there, and “Back up this copy” on the Backups tab keeps them in a backup"
    _swap(ctx, setup, incoming=ctx.params["pre_restore"], outgoing=undone, label="the pre-restore copy", then=then)
    ctx.log(f"the restored database is kept as {undone}")


def _swap(ctx: JobContext, setup: BackupSetup, *, incoming: str, outgoing: str, label: str, then: str) -> None:
    """`then`: what the person can do with the replaced database, said in the job's result once verified."""
    live = setup.database.name
    ctx.standing(
        f"{ctx.target} is stopped and its database was being swapped: {live} is either the old database (and "
        f"{incoming} still exists) or {incoming} renamed (and the old one is {outgoing}); nothing was dropped"
    )
    half_done = None
    # Marked before the rename, so a process killed during it counts as a swap (undo and the flags' plans then say
    # so); a swap that failed with live unchanged takes the mark back. A half-done one keeps it: its fix renames.
    # Not marked (Rewind's database failing), nothing is renamed: the guards that read the mark would miss it.
    if not ctx.swapped(outgoing):
        raise StepFailed(
            f"Rewind could not record the swap in its own database, so nothing was renamed ({live} is unchanged; "
            f"{_start_again(ctx)} on it; {label} is kept as {incoming})"
        )
    try:
        with steps.adapter_errors(ctx):
            try:
                swap_in(setup, incoming, outgoing)
            except SwapHalfDone as exc:
                half_done = exc
    except Exception as exc:  # noqa: BLE001 - whatever failed, a cancel too: the app must not stay stopped
        if not isinstance(exc, StepFailed):
            exc = f"the swap failed ({type(exc).__name__}: {ctx.redact(str(exc))})"
        ctx.log(f"the swap failed; {live} is unchanged, {incoming} is still there; starting {ctx.target} again")
        unmade = "pre-restore" if label == "the restored copy" else "undone"
        kept = f"{label} is kept as {incoming}; no {unmade} copy was made"
        ctx.swapped(None)  # never raises; before the start, which may take minutes (a kill then leaves no false mark)
        raise StepFailed(f"{exc} ({live} is unchanged; {_start_again(ctx)} on it; {kept})") from None
    if half_done is not None:  # starting the app now would find no database of its name: left stopped
        raise StepFailed(
            ctx.redact(f"{half_done.message}. {ctx.target} is left stopped. Fix: {half_done.fix}; then start it.")
        )
    ctx.state["swap"] = {"incoming": incoming, "outgoing": outgoing, "label": label, "then": then}
    ctx.standing(f"{incoming} is now {live}; the database it replaced is kept as {outgoing}; {ctx.target} is stopped")
    ctx.did(f"renamed {live} to {outgoing} and {incoming} to {live}")
    ctx.progress(1.0, "swapped")


def start_and_verify(ctx: JobContext) -> None:
    """Start on the swapped-in database; if it is not healthy, or the start is cancelled, swap back, start
    again, and say both."""
    control = steps.control_of(ctx)
    setup = setup_for(ctx)
    swap = ctx.state["swap"]
    live = setup.database.name
    passed, detail, started = False, "", ""
    cancelled_by = ctx.cancel_requested()
    if cancelled_by is None:
        try:
            with steps.adapter_errors(ctx):
                control.start(ctx)
            passed, detail = steps.check_health(ctx)
        except StepFailed as exc:
            passed, detail, started = False, str(exc), "did not start"
        except JobCancelled as exc:
            cancelled_by = exc.by
    if passed:
        ctx.verified(True, detail)
        ctx.log(
            f"{ctx.target} is healthy: it serves again (it was not running before this job)"
            if ctx.state.get("was_down")
            else f"{ctx.target} is healthy: downtime ends"
        )
        if ctx.state.get("remade") and _drop_made_empty(ctx, setup, swap["outgoing"]):
            ctx.set_result(
                f"{ctx.target} now runs on {swap['incoming']} (renamed to {live}). The live database had been gone: "
                "the empty one made in its place for the restore was dropped after the swap, so there is no undo "
                "(there was nothing to keep)."
            )
            return
        ctx.set_result(
            f"{ctx.target} now runs on {swap['incoming']} (renamed to {live}); the replaced database is kept as "
            f"{swap['outgoing']} — {swap['then']}."
        )
        return
    if cancelled_by is None:
        ctx.verified(False, detail)
        ctx.log(f"verification failed ({started or detail}); swapping back")
        before = f"After the swap {ctx.target} failed verification ({detail})"
    else:
        ctx.log(f"cancelled by {cancelled_by} before {ctx.target} was verified on {swap['incoming']}; swapping back")
        before = f"The cancel came before {ctx.target} was verified on {swap['incoming']}"
    try:
        with ctx.shielded():
            with steps.adapter_errors(ctx):
                control.stop(ctx)
                swap_in(setup, swap["outgoing"], swap["incoming"])
                ctx.swapped(None)  # never raises: the start below is what matters
                # What was already done ends with this, not with the rename it undid (read last, it said the
                # restored copy was live); a kill from here on leaves the same words on the job.
                back = f"{live} is the previous database again, {swap['label']} is {swap['incoming']}"
                ctx.did(f"renamed them back ({back})")
                ctx.standing(f"swapped back: {back}; {ctx.target} is stopped")
                control.start(ctx)
                ctx.standing(f"swapped back: {back}; {ctx.target} started again, not yet verified")  # review
            again, detail_again = steps.check_health(ctx)
    except StepFailed as exc:
        outcome = (
            f"{before}, and swapping back failed too: {exc}. {swap['label'].capitalize()} is {live} or "
            f"{swap['incoming']}; the previous database is {swap['outgoing']} or {live}."
        )
    else:
        state = "healthy again" if again else f"not healthy either ({detail_again})"
        if not again and (sick := ctx.state.get("unhealthy_before")):
            state += f"; it was not healthy before the restore either ({sick}), so look for the cause elsewhere"
        outcome = (
            f"{before}. Swapped back: {live} is the previous database again and {ctx.target} is {state}; "
            f"{swap['label']} is kept as {swap['incoming']}."
        )
    if cancelled_by is not None:
        raise JobCancelled(cancelled_by, outcome)
    raise StepFailed(outcome)


# --- cleanup -------------------------------------------------------------------------------


def clean_up(ctx: JobContext) -> None:
    setup = setup_for(ctx)
    hours = ctx.params.get("older_than_hours")
    if hours is None:
        hours = steps.target_of(ctx).config.backups.keep_copies_hours
        ctx.log(f"dropping copies older than {hours} h (backups.keep_copies_hours)")
    cutoff = now_utc() - timedelta(hours=hours)
    spared: list[Copy] = []
    with steps.adapter_errors(ctx):
        old = [c for c in copies(setup) if c.time < cutoff]
        if ctx.params.get("spare_unsaved", "yes") != "no":
            kept = expiry.saved(setup.catalog)
            spared = [c for c in old if c.kind in expiry.SAVED_KINDS and c.name not in kept]
            for copy in spared:
                ctx.log(f"kept {copy.name}: no backup holds it yet (back it up, then it can go)")
            old = [c for c in old if c not in spared]
        for copy in old:
            drop_copy(setup, copy.name)
            ctx.log(f"dropped {copy.name} ({copy.kind}, {copy.time.isoformat()})")
            ctx.did(f"dropped {copy.name}")
    # Backups left half-written by a job that stopped (its process killed): no job writes them now, since this
    # one holds the target, and none has touched them for a while. They hold nothing a restore could use, so
    # the hours that keep restore copies for an undo do not keep them.
    with steps.adapter_errors(ctx):  # a folder Rewind may not read or write is named with its fix, not a traceback
        unfinished = setup.catalog.stale_partials()
        for path in unfinished:
            size = path.stat().st_size
            with access(path.parent, "backup folder", "write"):
                path.unlink(missing_ok=True)
            ctx.log(f"removed {path.name}: a backup left unfinished ({byte_size(size)})")
            ctx.did(f"removed {path.name}")
    holds = "it" if len(spared) == 1 else "them"
    kept_words = f"; kept {', '.join(c.name for c in spared)}: no backup holds {holds} yet" if spared else ""
    left_words = f"; removed {len(unfinished)} unfinished backup file(s)" if unfinished else ""
    if not old and not unfinished:
        ctx.skip(f"no restore copies older than {hours} h{' to drop' + kept_words if spared else ''}")
    # Named, not only counted: "did it drop the copy my undo needs?" is the question a person reads this with.
    which = f" ({', '.join(c.name for c in old)})" if old else ""
    ctx.set_result(
        f"Dropped {len(old)} restore cop{'y' if len(old) == 1 else 'ies'} older than {hours} h{which}{kept_words}"
        f"{left_words}."
    )


CHECKPOINT = Step("checkpoint", "Record a checkpoint", steps.checkpoint)
# Flags and the schema live in the swapped database: what Rewind knows of them must follow the swap.
RECORD_AFTER = Step("recorded", "Record what is live now", steps.checkpoint_after, follow_up=True)
BACKUP = Param("backup", "Backup", check=check_backup, help="a file of the target's backup folder")

register(
    Runbook(
        name="backup",
        title="Back up now",
        description="pg_dump -Fc (or SQLite's backup API) encrypted with gpg into the backup folder, then verified.",
        role=Role.OPERATOR,
        mutates=True,
        steps=(
            Step("create", "Make the encrypted backup", make_backup),
            Step("verify", "Verify it", verify_backup),
            Step("prune", "Apply retention", prune, follow_up=True),
        ),
    )
)
register(
    Runbook(
        name="backup_copy",
        title="Back up a restore copy",
        description="An encrypted backup of a pre-restore (or scratch, or undone) copy, catalogued with what it is, "
        "so its rows are kept once the copy is dropped. The live database is not touched.",
        role=Role.OPERATOR,
        mutates=True,
        params=(Param("copy", "Restore copy", check=check_copy),),
        steps=(
            Step("create", "Back up the copy", back_up_copy),
            Step("verify", "Verify it", verify_backup),
        ),
    )
)
register(
    Runbook(
        name="verify_backup",
        title="Verify a backup",
        description="Encrypted to the recipients, checksum, decrypts and reads to its end; a restore test also "
        "restores it into a scratch copy, counts the key tables and drops the copy. The live database is not touched. "
        "A restore test holds the target as a change does: never beside a restore's stop and swap.",
        role=Role.OPERATOR,
        mutates=False,
        # Beside a restore's swap it would read a live database being renamed, fail, and mark a good backup failed.
        holds_target_if=lambda params: params.get("level") == "restore-test",
        params=(
            BACKUP,
            Param("level", "Level", choices=("quick", "restore-test"), default="quick", required=False),
        ),
        steps=(Step("verify", "Verify the backup", verify_backup),),
    )
)
register(
    Runbook(
        name="restore_backup",
        title="Restore a backup",
        description="Restore into a scratch database while the app serves, compare, then stop, swap by renaming, "
        "start and verify; the replaced database is kept for undo.",
        role=Role.ADMIN,
        mutates=True,
        replaces_database=True,
        params=(BACKUP, CONFIRM),
        check=confirm_protected,
        steps=(
            Step("check", "Check the backup", check_restore),
            Step(CHECKPOINT.name, CHECKPOINT.title, checkpoint_restore, handles_cancel=True),
            Step("scratch", "Restore into a scratch database", fill_scratch, handles_cancel=True),
            Step("compare", "Compare live and restored", inspect_scratch, handles_cancel=True),
            Step("stop", "Stop the application", stop_app, handles_cancel=True),
            Step("swap", "Swap the databases", swap_restore, handles_cancel=True),
            Step("start", "Start and verify", start_and_verify, handles_cancel=True),
            RECORD_AFTER,
        ),
    )
)
register(
    Runbook(
        name="undo_restore",
        title="Undo a restore",
        description="Compare live with the pre-restore copy, put that copy back (the restored database is kept), "
        "start and verify.",
        role=Role.ADMIN,
        mutates=True,
        replaces_database=True,
        params=(
            Param("pre_restore", "Pre-restore copy", check=check_pre_restore),
            Param(
                "seen_swap",
                "The last swap you were shown (job id)",
                kind=int,
                required=False,
                help="an undo that would go back past a later restore or undo is refused unless that job is named here",
            ),
            CONFIRM,
        ),
        precheck=check_undo_params,
        check=confirm_protected,
        steps=(
            Step("check", "Check the copies", check_undo),
            CHECKPOINT,
            Step("compare", "Compare live and the pre-restore copy", inspect_undo),
            Step("stop", "Stop the application", stop_app, handles_cancel=True),
            Step("swap", "Swap the databases back", swap_undo, handles_cancel=True),
            Step("start", "Start and verify", start_and_verify, handles_cancel=True),
            RECORD_AFTER,
        ),
    )
)
register(
    Runbook(
        name="cleanup_restores",
        title="Clean up restore copies",
        description="Drop scratch, pre-restore and undone copies older than the given age, and backup files left "
        "unfinished by a job that stopped; a pre-restore or "
        "undone copy no backup holds is kept unless asked (its rows written after the backup live nowhere else).",
        role=Role.ADMIN,
        mutates=True,
        check=confirm_protected,
        params=(
            Param(
                "older_than_hours",
                "Older than (hours)",
                kind=int,
                required=False,
                default=None,
                check=check_hours,
                help="default: the target's backups.keep_copies_hours",
            ),
            Param(
                "spare_unsaved",
                "Keep pre-restore and undone copies no backup holds",
                choices=("yes", "no"),
                default="yes",
                required=False,
                help="no drops them too, and with them the only copy of rows written after their backup",
            ),
            CONFIRM,
        ),
        steps=(Step("cleanup", "Drop old copies", clean_up),),
    )
)
