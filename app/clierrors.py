"""How every `flask rewind` command says no: one line on stderr starting `rewind:`, and an exit status a script
can act on (app.statuses.ExitStatus, the README's table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from sqlalchemy.exc import DBAPIError

from app.jobs.redact import Redactor
from app.statuses import ExitStatus

if TYPE_CHECKING:
    from app.audit.store import Actor
    from app.auth.models import User
    from app.auth.roles import Role


class CliError(click.ClickException):
    """One line on stderr that says what went wrong and what to do; the exit status says which kind it was."""

    def __init__(self, message: str, exit_code: int = ExitStatus.ERROR) -> None:
        super().__init__(" ".join(message.split("\n")))
        self.exit_code = int(exit_code)

    def show(self, file=None) -> None:
        click.echo(f"rewind: {self.format_message()}", err=True)


class Refused(CliError):
    """A name that does not exist, a value that cannot be used, a missing role: nothing was queued or changed."""

    def __init__(self, message: str, exit_code: int = ExitStatus.REFUSED) -> None:
        super().__init__(message, exit_code)


def ops_database_error(exc: DBAPIError) -> CliError:
    """Rewind's own database failed under a command: one line with what to check, not a 150-line traceback."""
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    said = Redactor()(lines[0])
    no_tables = "no such table" in said or ('relation "' in said and "does not exist" in said)
    fix = (
        "create its tables first: flask db upgrade"
        if no_tables
        else "check REWIND_DATABASE_URL and that the database server is up"
    )
    return CliError(f"Rewind's ops database failed: {said}; {fix}")


def acting_user(name: str):
    """The enabled account `--as NAME` names, for a command that acts as someone; refused (6) otherwise."""
    from sqlalchemy import select

    from app.auth.models import User
    from app.extensions import db

    user = db.session.scalar(select(User).filter_by(name=name))
    if user is None or user.disabled:
        raise Refused(f"there is no active Rewind user {name!r}; see them with: flask rewind users list")
    return user


def allowed(user: User, role: Role, action: str, target: str, details: dict, what: str, *, key: str = "error") -> Actor:
    """The actor, once USER (acting_user) holds `role`; otherwise refused (6), the refusal audited under `action`
    with `details` and, under `key`, what the user lacks ("needs the operator role"). `what` is what they may not
    do, as the refusal says it: "viewer may not change flags: it needs the operator role; run it --as …"."""
    from app.audit.store import Actor, record_and_commit
    from app.statuses import Outcome

    actor = Actor.of(user)
    if not user.can(role):
        error = f"needs the {role.label} role"
        record_and_commit(action, outcome=Outcome.DENIED, target=target, actor=actor, details={**details, key: error})
        raise Refused(f"{user.name} may not {what}: it {error}; run it --as a user who may")
    return actor
