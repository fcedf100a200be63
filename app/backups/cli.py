"""`flask rewind backups list TARGET` and `backups due`: the catalog from a shell, and the schedule from cron."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.backups.expiry import NOTHING, queue_expired
from app.backups.schedule import queue_due
from app.backups.setup import NotConfigured, catalog_of
from app.backups.status import ago, freshness
from app.clierrors import CliError, Refused, said
from app.targets import registry
from app.targets.errors import TargetError
from app.targets.registry import UnknownTarget

MISSING_FOLDER = " (the folder does not exist: the first backup makes it; check backups.dir)"


@click.group(cls=AppGroup)
def backups() -> None:
    """Inspect a target's backups."""


@backups.command("list")
@click.argument("target")
def list_backups(target: str) -> None:
    """Every backup of TARGET, newest first, with its verified state; then the RPO line.

    The last column is the name the restore_backup and verify_backup runbooks
    take as backup=NAME.

    Example: flask rewind backups list production
    """
    try:
        config = registry.current().config(target)
    except UnknownTarget as exc:
        raise Refused(str(exc)) from None
    try:
        catalog = catalog_of(registry.current().open(target))
        found, unlisted = catalog.backups(), catalog.unlisted()
    except NotConfigured as exc:
        raise Refused(said(exc)) from None
    except TargetError as exc:
        raise CliError(said(exc)) from None
    if not found:
        click.echo(f"no backups in {catalog.folder}" + ("" if catalog.exists() else MISSING_FOLDER))
    for b in found:
        made = "" if not b.foreign else "  (not made by Rewind)"
        if b.manifest_unreadable:
            made = f"  (manifest unreadable: {b.manifest_unreadable.message}; {b.manifest_unreadable.fix})"
        elif b.manifest_problem:
            made = f"  (manifest damaged: {b.manifest_problem})"
        if b.size == 0:
            made += "  (empty file)"
        if b.file_unreadable:
            made += f"  (unreadable: {b.file_unreadable.message}; {b.file_unreadable.fix})"
        click.echo(f"{b.time:%Y-%m-%d %H:%M:%S}  {b.size:>12} B  {b.format or 'unknown':<7} {b.state:<10} {b.id}{made}")
    for u in unlisted:
        click.echo(f"not listed: {u.name}: {u.reason}")
    fresh = freshness(catalog, config.backups.rpo_minutes)
    newest = fresh.newest_verified
    line = f"newest verified: {newest.id} ({ago(fresh.age)} old)" if newest else "newest verified: none"
    if fresh.rpo is not None:
        line += f"; RPO {config.backups.rpo_minutes} min: {'LATE' if fresh.late else 'ok'}"
    click.echo(line)


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
