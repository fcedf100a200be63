"""`flask rewind targets check`: is the targets file valid, and can every target be reached?"""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.clierrors import CliError
from app.jobs.engine import current_targets
from app.targets.reach import PARTS, reach


@click.group(cls=AppGroup)
def targets() -> None:
    """Inspect the configured targets."""


@targets.command("list")
def list_targets() -> None:
    """The names TARGET takes in every command, each with what Rewind manages of it (no target is contacted)."""
    known = current_targets()
    configs = known.all()  # reads the file again if it changed: only then is `problem` current
    if known.problem:
        click.echo(f"the targets file on disk is broken (the last good version is listed): {known.problem}", err=True)
    if not configs:
        click.echo(f"no targets configured in {known.path}")
        return
    width = max(len(c.name) for c in configs)
    for c in configs:
        parts = [label for label, present in _PARTS if present(c)]
        shield = "protected" if c.protected else "unprotected"
        click.echo(f"{c.name:<{width}}  {shield:<11}  {', '.join(parts)}".rstrip())


_PARTS = (
    ("code", lambda c: True),
    ("process", lambda c: c.process is not None),
    ("health", lambda c: c.health is not None),
    ("schema", lambda c: c.database is not None and c.database.migrations is not None),
    ("flags", lambda c: c.database is not None and bool(c.database.flags_table)),
    ("backups", lambda c: c.backups is not None),
    ("config", lambda c: c.env_file is not None),
    ("blue/green", lambda c: c.bluegreen is not None),
)


@targets.command("check")
def check() -> None:
    """Validate the targets file (start-up already did), try to reach each target's parts, check its paths."""
    targets = current_targets()
    names = targets.names()
    if targets.problem:
        raise CliError(
            f"the targets file on disk is broken: {targets.problem} — Rewind keeps using the last good version until "
            "the file is fixed"
        )
    if not names:
        click.echo("no targets configured")
        return
    failures = 0
    for name in names:
        target = targets.open(name)
        if target.config.env_stale:  # Rewind runs on a stored version meanwhile: a problem until the file is fixed
            failures += 1
            click.echo(f"{name}: env file: WRONG — {target.config.env_stale}")
        for part, ok, detail in reach(target):
            failures += not ok
            bad = "UNREACHABLE" if part in PARTS else "WRONG"
            click.echo(f"{name}: {part}: {'ok' if ok else bad} — {detail}")
    if failures or targets.problem:
        click.echo(f"{failures} problem(s): unreachable parts, or keys naming what does not exist", err=True)
        sys.exit(1)
