"""`flask rewind targets check`: is the targets file valid, and can every target be reached?"""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.targets import registry
from app.targets.reach import reach


@click.group(cls=AppGroup)
def targets() -> None:
    """Inspect the configured targets."""


@targets.command("check")
def check() -> None:
    """Validate the targets file (start-up already did) and try to reach each target's parts."""
    targets = registry.current()
    names = targets.names()
    if targets.problem:
        click.echo(f"the targets file on disk is broken: {targets.problem}", err=True)
        sys.exit(1)
    if not names:
        click.echo("no targets configured")
        return
    failures = 0
    for name in names:
        for part, ok, detail in reach(targets.open(name)):
            failures += not ok
            click.echo(f"{name}: {part}: {'ok' if ok else 'UNREACHABLE'} — {detail}")
    if failures or targets.problem:
        click.echo(f"{failures} part(s) unreachable", err=True)
        sys.exit(1)
