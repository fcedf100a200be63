"""`flask rewind users …` and `flask rewind init-admin`."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from app.audit.store import Actor
from app.auth import accounts
from app.auth.models import User
from app.auth.roles import Role
from app.clierrors import Refused
from app.extensions import db

CLI_ACTOR = Actor(None, "system")


def _role(ctx, param, value: str) -> Role:
    try:
        return Role.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _password_from(stdin: bool) -> str | None:
    """The password piped in; an empty one is refused: it would have meant a generated password nobody is shown."""
    if not stdin:
        return None
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise Refused(
            "no password on standard input: pipe one in, or leave out --password-stdin to have one generated and shown"
        )
    return password


def _fail(exc: accounts.AccountError) -> None:
    """Nothing changed: an unknown name or a value the account rules refuse (see the README's exit statuses)."""
    hint = "; see them with: flask rewind users list" if isinstance(exc, accounts.UnknownUser) else ""
    raise Refused(f"{exc}{hint}")


@click.group(cls=AppGroup)
def users() -> None:
    """Manage Rewind accounts."""


@users.command("list")
def list_users() -> None:
    """Every account with its role, and whether it is disabled: the names `--as` takes."""
    rows = db.session.scalars(select(User).order_by(User.name)).all()
    if not rows:
        click.echo("no users yet: create the first admin with: flask rewind init-admin")
        return
    width = max(len("NAME"), *(len(u.name) for u in rows))
    click.echo(f"{'NAME':<{width}}  {'ROLE':<8}  STATE")
    for u in rows:
        click.echo(f"{u.name:<{width}}  {u.role.label:<8}  {'disabled' if u.disabled else 'active'}")


@users.command("create")
@click.argument("name")
@click.option("--role", default="viewer", callback=_role, help="viewer, operator or admin")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def create(name: str, role: Role, password_stdin: bool) -> None:
    """Add a user; prints the generated password unless one is read from stdin."""
    try:
        user, password = accounts.create_user(name, role, CLI_ACTOR, _password_from(password_stdin))
    except accounts.AccountError as exc:
        _fail(exc)
    click.echo(f"created {user.name} ({role.label})")
    if not password_stdin:
        click.echo(f"password: {password}")


@users.command("set-role")
@click.argument("name")
@click.argument("role", callback=_role)
def set_role(name: str, role: Role) -> None:
    """Change NAME's role to ROLE: viewer, operator or admin.

    Example: flask rewind users set-role oncall operator
    """
    try:
        accounts.set_role(accounts.find_user(name), role, CLI_ACTOR)
    except accounts.AccountError as exc:
        _fail(exc)
    click.echo(f"{name} is now {role.label}")


@users.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def set_password(name: str, password_stdin: bool) -> None:
    """Set a new password; prints the generated one unless one is read from stdin."""
    try:
        password = accounts.set_password(accounts.find_user(name), CLI_ACTOR, _password_from(password_stdin))
    except accounts.AccountError as exc:
        _fail(exc)
    click.echo(f"password changed for {name}")
    if not password_stdin:
        click.echo(f"password: {password}")


@users.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Enable a disabled user again: they may sign in and be named by --as."""
    _set_disabled(name, False)


@users.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Disable a user: they are signed out and cannot sign in."""
    _set_disabled(name, True)


@users.command("unlock")
@click.argument("name")
@click.option(
    "--address",
    "addresses",
    multiple=True,
    metavar="ADDR",
    help="also forget this address's recent failures, across names (it locks after 20); repeatable",
)
def unlock(name: str, addresses: tuple[str, ...]) -> None:
    """Let a user locked out by failed sign-ins sign in again now (the failures stay in the audit log).

    A name locks after 5 failures, an address after 20 across names: NAME's are forgotten, and with --address
    that address's too. An address NAME recently tried from that is still locked is said, with the option to add.
    """
    try:
        done = accounts.unlock(accounts.find_user(name), CLI_ACTOR, addresses)
    except accounts.AccountError as exc:
        _fail(exc)
    # "may sign in again" only when no address it tried from is locked still (QA: said, then a 429 from there)
    said = f"{name}'s own failures are forgotten" if done.still_locked else f"{name} may sign in again"
    said += f" ({done.forgotten} recent failed sign-in(s) no longer count"
    for address, forgotten in done.addresses.items():
        said += f"; {address}: {forgotten} recent failed sign-in(s) across names no longer count"
    said += ")"
    if done.still_locked:
        said += ", but " + "; ".join(
            f"{address} is locked ({failures} failures across names): add --address {address}"
            for address, failures in done.still_locked
        )
    click.echo(said)


def _set_disabled(name: str, disabled: bool) -> None:
    try:
        accounts.set_disabled(accounts.find_user(name), disabled, CLI_ACTOR)
    except accounts.AccountError as exc:
        _fail(exc)
    click.echo(f"{name} is {'disabled' if disabled else 'enabled'}")


@click.command("init-admin")
@with_appcontext
def init_admin() -> None:
    """Create the first admin when there are no users, and print its password once."""
    path = current_app.config["REWIND_SETTINGS"].instance_dir / "initial-admin-password"
    password = accounts.ensure_initial_admin(path)
    if password is None:
        click.echo("users exist already; no initial admin created")
        return
    click.echo("Created the first admin account.")
    click.echo("  user:     admin")
    click.echo(f"  password: {password}")
    click.echo(f"  (also saved, readable only by you, in {path})")
