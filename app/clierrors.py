"""How every `flask rewind` command says no: one line on stderr starting `rewind:`, and an exit status a script
can act on (app.statuses.ExitStatus, the README's table)."""

from __future__ import annotations

import click

from app.statuses import ExitStatus


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
