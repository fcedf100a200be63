"""`flask rewind demo`: build (or start again) the demo sandbox and point the targets file at it."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from app.clierrors import CliError
from app.demo import targetsfile
from app.demo.build import build_demo, stop_demo
from app.demo.target import DemoError


@click.command("demo")
@click.option("--reset", is_flag=True, help="Stop the demo apps and rebuild both targets from scratch.")
@click.option("--no-start", is_flag=True, help="Build, but leave the demo apps stopped.")
@click.option("--stop", "stop_only", is_flag=True, help="Stop the demo apps and its PostgreSQL, and do nothing else.")
@click.option("--sqlite", is_flag=True, help="Build on SQLite files even when the PostgreSQL server is installed.")
@click.option(
    "--skip-if-configured",
    is_flag=True,
    help="Do nothing (and succeed) when the targets file is your own rather than the demo's.",
)
@with_appcontext
def demo(reset: bool, no_start: bool, stop_only: bool, sqlite: bool, skip_if_configured: bool) -> None:
    """Two demo targets, staging and production, to try rollbacks on.

    Each is a small Flask app in its own git repository (with a bad-code branch
    and a branch adding a migration, for drills), a database built by its
    Alembic migrations in a PostgreSQL cluster the demo runs under the instance
    folder (SQLite files where the server is not installed), a GnuPG key and
    two backups, and a process Rewind supervises.
    Running it again only starts what is not running.
    """
    settings = current_app.config["REWIND_SETTINGS"]
    root = settings.instance_dir / "demo"
    path = settings.config_path
    if stop_only:
        stopped = stop_demo(root, on_line=click.echo)
        click.echo(f"stopped: {', '.join(stopped)}" if stopped else "no demo app was running")
        return
    if skip_if_configured and path.exists() and not targetsfile.written_by_demo(path):
        click.echo(f"{path} is your own targets file; the demo is not built")
        return
    try:
        targets = build_demo(root, path, reset=reset, start=not no_start, on_line=click.echo, use_postgres=not sqlite)
    except DemoError as exc:
        raise CliError(str(exc)) from None
    click.echo("")
    for t in targets.values():
        click.echo(f"  {t.name:<11} {t.base_url}   repo {t.app_dir}")
    click.echo(f"Databases: {'  '.join(t.database_url for t in targets.values())}")
    click.echo(f"Targets file: {path}")
