"""`flask db`: Rewind's own migrations, with Flask-Migrate loaded only when a migration command runs.

Flask-Migrate imports Alembic, about a quarter of what a process spends importing Rewind. A gunicorn worker
never migrates, so the `db` commands are a group that loads Flask-Migrate when one of them is asked for.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import ScriptInfo

from app.settings import REPO_ROOT

MIGRATIONS = REPO_ROOT / "migrations"


def enable(app: Flask) -> None:
    """Wire Flask-Migrate to `app`: needed before flask_migrate.upgrade() and its kin run in an app context."""
    if "migrate" in app.extensions:
        return
    from flask_migrate import Migrate

    from app.extensions import db

    Migrate(app, db, directory=str(MIGRATIONS))


class LazyMigrate:
    """Flask-Migrate's place among the extensions (app.extensions.migrate), wired when a `db` command runs."""

    def init_app(self, app: Flask) -> None:
        app.cli.add_command(MigrationCommands())


class MigrationCommands(click.Group):
    """Stands in for Flask-Migrate's `db` group: takes its options, callback and commands when it is used."""

    def __init__(self) -> None:
        super().__init__("db", help="Rewind's own database migrations (Flask-Migrate: upgrade, current, …).")

    def _real(self, ctx: click.Context) -> click.Group:
        enable(ctx.ensure_object(ScriptInfo).load_app())
        from flask_migrate.cli import db

        return db

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        real = self._real(ctx)
        # its -d/-x, the callback that reads them, and its commands (a mistyped one gets "did you mean")
        self.params, self.callback, self.commands = real.params, real.callback, real.commands
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._real(ctx).list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._real(ctx).get_command(ctx, cmd_name)
