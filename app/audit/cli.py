"""`flask rewind audit head|verify`: anchor the chain outside the database and check it."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.audit import store
from app.audit.chain import Head
from app.clierrors import CliError


@click.group(cls=AppGroup)
def audit() -> None:
    """Check the tamper-evident audit log."""


@audit.command("head")
def head() -> None:
    """Print the newest row as ID:HASH; keep it outside the ops database."""
    current = store.head()
    if current is None:
        raise CliError("the audit log is empty: there is no row to anchor yet")
    click.echo(str(current))


def _saved_head(ctx, param, value: str | None) -> Head | None:
    if value is None:
        return None
    try:
        return Head.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@audit.command("verify")
@click.option("--head", "saved", callback=_saved_head, help="a head saved earlier (ID:HASH) that must still be there")
def verify(saved: Head | None) -> None:
    """Check every row of the chain; exit status 0 only when it is intact."""
    verdict = store.verify(saved)
    if verdict.intact:
        click.echo(f"audit chain intact: {verdict.checked} rows, head {verdict.head or 'none (empty log)'}")
        return
    click.echo(f"audit chain BROKEN: {verdict.problem.message}", err=True)
    click.echo(f"({verdict.checked} rows checked before the break)", err=True)
    sys.exit(1)
