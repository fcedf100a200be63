"""`flask rewind schema status TARGET`: current revision(s), heads and drift; exits non-zero on drift."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.clierrors import CliError, Refused
from app.jobs.engine import current_targets
from app.schema.state import read_state
from app.targets.registry import UnknownTarget

DRIFT_EXIT = 1
UNREADABLE_EXIT = 2


@click.group(cls=AppGroup)
def schema() -> None:
    """Migration state of the targets."""


@schema.command("status")
@click.argument("target")
def status(target: str) -> None:
    """Print the current revision(s), the code's heads and any drift with what to do.

    Exit status: 0 code and schema match, 1 drift, 2 the state cannot be read
    (no database.migrations, the database unreachable), 6 no such target.

    Example: flask rewind schema status production
    """
    try:
        state = read_state(current_targets().open(target))
    except UnknownTarget as exc:
        raise Refused(str(exc)) from None
    if not state.configured or state.problem:
        (said,) = state.lines()  # "TARGET: cannot read …": one line, on stderr like every error
        raise CliError(said, UNREADABLE_EXIT)
    click.echo(f"{target}:")
    for line in state.lines():
        click.echo(f"  {line}")
    if not state.matches:  # several heads, all applied, are said but match
        sys.exit(DRIFT_EXIT)
