"""`flask rewind backups list TARGET`, `backups rolls-back TARGET BACKUP` and `backups due`: the catalog and what a
restore would roll back from a shell, and the schedule from cron."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.backups.catalog import CatalogError, NoAccess
from app.backups.expiry import NOTHING, queue_expired
from app.backups.preview import rolls_back as read_rolls_back
from app.backups.schedule import queue_due
from app.backups.setup import NotConfigured, catalog_of, setup_of
from app.backups.status import ago, ahead_of, freshness, future_words
from app.clierrors import CliError, Refused
from app.jobs.engine import current_targets
from app.statuses import BackupState
from app.targets.errors import TargetError
from app.targets.registry import UnknownTarget
from app.wording import byte_size

MISSING_FOLDER = " (the folder does not exist: the first backup makes it; check backups.dir)"
LATE_EXIT = 1  # a check found a problem, as drift in `schema status`: cron and monitors act on the status


@click.group(cls=AppGroup)
def backups() -> None:
    """Inspect a target's backups."""


@backups.command("list")
@click.argument("target")
def list_backups(target: str) -> None:
    """Every backup of TARGET, newest first, with its verified state; then the RPO line.

    The last column is the name the restore_backup and verify_backup runbooks
    take as backup=NAME. Exit status: 0, or 1 when the newest verified backup
    is older than backups.rpo_minutes (or there is none), 6 no such target.

    Example: flask rewind backups list production
    """
    try:
        config = current_targets().config(target)
    except UnknownTarget as exc:
        raise Refused(str(exc)) from None
    try:
        catalog = catalog_of(current_targets().open(target))
        listing = catalog.listing()
        found, unlisted = listing.backups, listing.unlisted
    except NotConfigured as exc:
        raise Refused(exc.in_words()) from None
    except TargetError as exc:
        raise CliError(exc.in_words()) from None
    if not found:
        click.echo(f"no backups in {catalog.folder}" + ("" if listing.exists else MISSING_FOLDER))
    else:
        click.echo(f"{'TIME (UTC)':<16} {'SIZE':>8} {'FORMAT':<7} {'STATE':<10} NAME (restore_backup backup=NAME)")
    fresh = freshness(found, config.backups.rpo_minutes)
    for b in found:
        notes = ["not made by Rewind"] if b.foreign else []
        # A backup of a restore's copy is not live as it was: said, as the tab does.
        if purpose := b.manifest.get("purpose"):
            notes.append(str(purpose))
        if b.manifest_unreadable:
            notes = [f"manifest unreadable: {b.manifest_unreadable.in_words()}"]
        elif b.manifest_problem:
            notes = [f"manifest damaged: {b.manifest_problem}"]
        if b.state is BackupState.CHANGED:
            notes.append(f"changed since verified: {b.size} bytes now, {b.recorded_size} then; verify it again")
        elif b.state is BackupState.FAILED:  # why, as the tab says it: "failed" alone sent a person to the job list
            why = str(b.verified.get("detail") or "no reason recorded")
            notes.append(
                f"failed {b.verified.get('how') or ''} verification: {why[:137] + '…' if len(why) > 140 else why}"
            )
        if ahead := ahead_of(b.time, fresh.now):
            notes.append(future_words(ahead))
        if b.size == 0:
            notes.append("empty file")
        if b.file_unreadable:
            notes.append(f"unreadable: {b.file_unreadable.in_words()}")
        click.echo(f"{b.time:%Y-%m-%d %H:%M} {byte_size(b.size):>8} {b.format or 'unknown':<7} {b.state:<10} {b.id}")
        for note in notes:  # below the row, so the row itself fits an 80-column terminal
            click.echo(f"{'':17}({note})")
    for u in unlisted:
        click.echo(f"not listed: {u.name}: {u.reason}")
    newest = fresh.newest_verified
    if fresh.age_unknown:
        line = f"newest verified: {fresh.future_verified.id} ({fresh.future_note})"
    elif newest is None:
        line = "newest verified: none"
    else:
        if fresh.future_verified is not None:  # apart, before the verdict's line: it decides nothing
            click.echo(f"warning: {fresh.future_verified.id} is verified but {fresh.future_note}; its age is unknown")
        line = f"newest verified: {newest.id} ({ago(fresh.age)} old)"
    if fresh.rpo is not None:
        verdict = "AGE UNKNOWN" if fresh.age_unknown else "LATE" if fresh.late else "ok"
        line += f"; RPO {config.backups.rpo_minutes} min: {verdict}"
    click.echo(line)
    if fresh.late:
        sys.exit(LATE_EXIT)


@backups.command("rolls-back")
@click.argument("target")
@click.argument("backup")
def rolls_back(target: str, backup: str) -> None:
    """What restoring BACKUP on TARGET now would do to its key tables.

    Rows per key table in the backup (as its manifest recorded them), live now, and written (added or changed)
    after the backup, which the restore rolls back: they stay readable in the replaced database. Reads live (one
    scan per key table). Exit status: 0; 6 no such target or backup.

    Example: flask rewind backups rolls-back production shop_20261127T101500Z.dump.gpg
    """
    try:
        setup = setup_of(current_targets().open(target))
        found = read_rolls_back(setup, chosen := setup.catalog.get(backup))
    except UnknownTarget as exc:
        raise Refused(str(exc)) from None
    except NoAccess as exc:  # a folder Rewind may not read: no "no such backup" about it
        raise CliError(exc.in_words()) from None
    except (NotConfigured, CatalogError) as exc:
        raise Refused(exc.in_words()) from None
    except TargetError as exc:
        raise CliError(exc.in_words()) from None
    if found.live_gone:
        click.echo(f"{target}'s live database is not there: restoring {chosen.id} makes it again; nothing can be lost")
        return
    if not found.live:
        click.echo(f"{target} names no key tables (database.key_tables): nothing to count")
        return
    for line in found.lines():
        click.echo(line)
    untold = f"unknown in {', '.join(found.untold)} ({found.untold_why})" if found.untold else ""
    if found.total:
        untold = f"; {untold}" if untold else ""
        click.echo(f"restoring {chosen.id} now rolls back at least {found.total} row(s) written after it{untold}")
    elif untold:  # not "at least 0": nothing is known of those tables
        click.echo(f"restoring {chosen.id} now rolls back an unknown number of rows written after it: {untold}")
    else:
        click.echo(f"restoring {chosen.id} now rolls back no rows written after it (none stamped later or beyond it)")
    if found.regained:
        click.echo(f"and brings back at least {sum(found.regained.values())} row(s) deleted since it")


@backups.command("due")
@click.option("--dry-run", is_flag=True, help="only say which targets are due")
def due(dry_run: bool) -> None:
    """Queue a backup, as the system actor, for each target whose backups.interval_minutes has passed;
    then the backup or cleanup of restore copies past backups.keep_copies_hours.

    What Rewind's own scheduler does every minute; for cron when it is turned off (REWIND_SCHEDULER=0).
    """
    for decision in queue_due(dry_run=dry_run, via="cli"):
        click.echo(str(decision))
    if not dry_run:
        for expired in queue_expired(via="cli"):
            if expired.action != NOTHING:
                click.echo(str(expired))
