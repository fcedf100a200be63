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
    problem = registry.file_problem()
    if problem:
        click.echo(f"the targets file on disk is broken (Rewind keeps using the last good one): {problem}", err=True)
        sys.exit(1)
    names = registry.target_names()
    if not names:
        click.echo("no targets configured")
        return
    failures = 0
    for name in names:
        for part, ok, detail in reach(registry.target(name)):
            failures += not ok
            click.echo(f"{name}: {part}: {'ok' if ok else 'UNREACHABLE'} — {detail}")
    if failures:
        click.echo(f"{failures} part(s) unreachable", err=True)
        sys.exit(1)
