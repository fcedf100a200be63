"""`flask db …`: the app's Alembic migrations, run with the app's own settings.

The same commands and arguments as Flask-Migrate's (upgrade, downgrade,
current, history, heads, stamp), without the extra dependency.
"""

from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import current_app
from flask.cli import AppGroup

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

db_cli = AppGroup("db", help="Database migrations (Alembic).")
directory_option = click.option("-d", "--directory", default=None, help="migrations folder (default: migrations/)")


def alembic_config(directory: str | None = None) -> Config:
    folder = Path(directory) if directory else MIGRATIONS
    config = Config(str(folder / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    config.attributes["database_url"] = current_app.config["DATABASE_URL"]
    return config


@db_cli.command()
@directory_option
@click.option("--sql", is_flag=True, help="print the SQL instead of running it")
@click.option("--tag", default=None, help="a tag for custom env.py scripts")
@click.argument("revision", default="head")
def upgrade(directory, sql, tag, revision):
    """Upgrade to a later revision (default: head)."""
    command.upgrade(alembic_config(directory), revision, sql=sql, tag=tag)


@db_cli.command(context_settings={"ignore_unknown_options": True})  # so `downgrade -1` reads -1 as a revision
@directory_option
@click.option("--sql", is_flag=True, help="print the SQL instead of running it")
@click.option("--tag", default=None, help="a tag for custom env.py scripts")
@click.argument("revision", default="-1")
def downgrade(directory, sql, tag, revision):
    """Revert to a previous revision (default: one step back)."""
    command.downgrade(alembic_config(directory), revision, sql=sql, tag=tag)


@db_cli.command()
@directory_option
@click.option("-v", "--verbose", is_flag=True)
def current(directory, verbose):
    """Show the database's current revision."""
    command.current(alembic_config(directory), verbose=verbose)


@db_cli.command()
@directory_option
@click.option("-r", "--rev-range", default=None, help="a range like base:head")
@click.option("-v", "--verbose", is_flag=True)
def history(directory, rev_range, verbose):
    """List the revisions in order."""
    command.history(alembic_config(directory), rev_range, verbose=verbose)


@db_cli.command()
@directory_option
@click.option("-v", "--verbose", is_flag=True)
def heads(directory, verbose):
    """Show the newest revisions."""
    command.heads(alembic_config(directory), verbose=verbose)


@db_cli.command()
@directory_option
@click.argument("revision", default="head")
def stamp(directory, revision):
    """Record a revision as current without running migrations."""
    command.stamp(alembic_config(directory), revision)
