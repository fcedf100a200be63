"""`flask rewind flags list|set`: the flags of a target from the shell, with the same rules and audit as the page."""

from __future__ import annotations

import textwrap

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.audit.store import Actor, record_and_commit
from app.auth.models import User
from app.auth.roles import Role
from app.clierrors import CliError, Refused
from app.extensions import db
from app.flags import store
from app.statuses import Outcome
from app.targets import registry
from app.targets.errors import TargetError
from app.targets.flags import UnknownFlag

LIST_WIDTH = 80
# What the person asked cannot be done as asked (exit 6); any other TargetError is Rewind's trouble with the table (1).
_REFUSALS = (UnknownFlag, store.BadFlagInput, store.ReasonRequired, store.NoFlagsTable)


@click.group("flags", cls=AppGroup)
def flags() -> None:
    """Feature flags in a target's own database."""


def _target(name: str):
    try:
        return registry.current().open(name)
    except registry.UnknownTarget as exc:
        raise Refused(str(exc)) from None


def _fail(exc: TargetError, target: str) -> CliError:
    if isinstance(exc, UnknownFlag):
        return Refused(f"{exc.message}; see them with: flask rewind flags list {target}")
    if isinstance(exc, store.ReasonRequired):
        return Refused(f'{exc.message}: pass --reason "why" (it goes to the audit log)')
    return Refused(exc.in_words()) if isinstance(exc, _REFUSALS) else CliError(exc.in_words())


@flags.command("list")
@click.argument("target")
def list_flags(target: str) -> None:
    """Every flag of TARGET with its state and description: the names `flags set` takes.

    Exits 1 when a row's state is neither on nor off (it is named after the others).
    """
    try:
        rows, unreadable = store.table_of(_target(target)).survey()
    except TargetError as exc:
        raise _fail(exc, target) from None
    width = max((len(f.name) for f in [*rows, *unreadable]), default=4)
    for flag in rows:
        click.echo(_row(f"{flag.name:<{width}}  {store.word(flag.enabled):<3}  ", flag.description or ""))
    for bad in unreadable:
        click.echo(f"{bad.name:<{width}}  ???  {bad.message}")
    if not rows and not unreadable:
        click.echo("no flags in the table")
    if unreadable:
        names = ", ".join(repr(bad.name) for bad in unreadable)
        raise CliError(f"the state of {names} is neither on nor off: set it to on or off in the database")


def _row(start: str, description: str) -> str:
    """A flag's line, its description wrapped under itself so the table stays readable on an 80-column terminal."""
    if not description:
        return start.rstrip()
    width = max(LIST_WIDTH, len(start) + 30)  # names so long that 80 columns leave no room: wrap at 30 characters
    return textwrap.fill(description, width, initial_indent=start, subsequent_indent=" " * len(start))


@flags.command("set")
@click.argument("target")
@click.argument("name")
@click.argument("state", metavar="on|off")
@click.option("--as", "as_user", required=True, metavar="USER", help="who does it (operator or admin; audited)")
@click.option("--reason", default="", help="why, for the audit log; required on a protected target")
def set_flag(target: str, name: str, state: str, as_user: str, reason: str) -> None:
    """Turn flag NAME of TARGET on or off at once, audited as USER (via: cli).

    NAME is as `flask rewind flags list TARGET` prints it. A flag already in
    that state is left alone (nothing written, exit 0).

    \b
    Example:
      flask rewind flags set production new_checkout off --as oncall \\
          --reason "checkout errors"
    """
    the_target = _target(target)
    user = db.session.scalar(select(User).filter_by(name=as_user))
    if user is None or user.disabled:
        raise Refused(f"there is no active Rewind user {as_user!r}; see them with: flask rewind users list")
    actor = Actor.of(user)
    if not user.can(Role.OPERATOR):
        record_and_commit(
            "flags.toggle",
            outcome=Outcome.DENIED,
            target=target,
            actor=actor,
            details={"flag": name, "reason": reason, "via": "cli", "error": "needs the operator role"},
        )
        raise Refused(f"{as_user} may not change flags: it needs the operator role; run it --as a user who may")
    try:
        asked = {"flag": name, "new": state, "reason": reason, "via": "cli"}
        with store.refusing("flags.toggle", the_target, actor, asked):
            store.check_text(name, "the flag name")
            enabled = store.parse_state(state, "state")
        change, _ = store.toggle(the_target, name, enabled, seen=None, actor=actor, reason=reason, via="cli")
    except TargetError as exc:
        raise _fail(exc, target) from None
    if change.changed:
        click.echo(f"{target}: {name} {store.word(change.old)} -> {store.word(change.new)}")
    else:
        click.echo(f"{target}: {name} was already {store.word(change.new)}; nothing written")
