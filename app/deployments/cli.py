"""`flask rewind traffic status`: which blue/green slot serves a target, beside the Deployments tab's Traffic panel.

Switching stays a job (`flask rewind run TARGET bluegreen slot=X`), so it is checked, audited and verified as the
panel's button is; this command only reads.
"""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.clierrors import Refused
from app.deployments.traffic import traffic_of
from app.statuses import ExitStatus
from app.targets import registry


@click.group("traffic", cls=AppGroup)
def traffic() -> None:
    """Blue/green traffic of a target."""


@traffic.command("status")
@click.argument("target")
def status(target: str) -> None:
    """Which slot of TARGET serves traffic, how that is known, and each slot's health URL.

    Exit status: 0 the live slot is known, 1 it cannot be told (the reason
    is printed), 6 no such target or it has no [targets.TARGET.bluegreen].

    Example: flask rewind traffic status production
    """
    try:
        now = traffic_of(target)
    except registry.UnknownTarget as exc:
        raise Refused(str(exc)) from None
    if now is None:
        raise Refused(f"{target} has no blue/green slots: add [targets.{target}.bluegreen] to the targets file")
    if now.live:
        click.echo(f"{target}: {now.live} serves traffic ({now.how})")
    else:
        click.echo(f"{target}: which slot serves traffic is unknown — {now.how}")
    width = max(len(slot) for slot in now.slots)
    for slot, url in now.slots.items():
        # with the live slot unknown, no slot is known to be idle: any of them may be serving
        state = "live" if slot == now.live else ("idle" if now.live else "unknown")
        click.echo(f"  {slot:<{width}}  {state}  {url}")
    to = now.idle[0] if len(now.idle) == 1 else "|".join(now.idle)
    click.echo(f"switch: flask rewind run {target} bluegreen slot={to} --as USER")
    if now.live is None:
        sys.exit(ExitStatus.ERROR)
