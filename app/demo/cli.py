"""`flask rewind demo`: build (or start again) the demo sandbox and point the targets file at it."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from app.clierrors import CliError
from app.demo import targetsfile
from app.demo.build import build_demo, stop_demo
from app.demo.target import DemoError, OnLine
from app.envconfig import keys as envconfig_keys


@click.command("demo")
@click.option("--reset", is_flag=True, help="Stop the demo apps and rebuild both targets from scratch.")
@click.option("--no-start", is_flag=True, help="Build, but leave the demo apps stopped.")
@click.option(
    "--stop",
    "stop_only",
    is_flag=True,
    help="Stop the demo apps, its PostgreSQL and the gpg-agents Rewind started, and do nothing else.",
)
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
        try:
            stopped = stop_in(settings.instance_dir, on_line=click.echo)
        except DemoError as exc:
            raise CliError(str(exc)) from None
        click.echo(f"stopped: {', '.join(stopped)}" if stopped else "no demo app was running")
        return
    if skip_if_configured and path.exists() and not targetsfile.written_by_demo(path):
        click.echo(f"{path} is your own targets file; the demo is not built")
        return
    try:
        targets = build_demo(
            root,
            path,
            reset=reset,
            start=not no_start,
            on_line=click.echo,
            use_postgres=not sqlite,
            gpg_homes=_own_gpg_homes(settings.instance_dir),
        )
    except DemoError as exc:
        raise CliError(str(exc)) from None
    click.echo("")
    for t in targets.values():
        click.echo(f"  {t.name:<11} {t.base_url}   repo {t.app_dir}")
    click.echo(f"Databases: {'  '.join(t.database_url for t in targets.values())}")
    click.echo(f"Targets file: {path}")


def stop_in(instance_dir: Path, on_line: OnLine) -> list[str]:
    """Stop the demo under instance_dir, and the gpg-agent of Rewind's own GnuPG home; the apps that ran.

    Also what `make run` does when it is stopped (gunicorn.conf.py's on_exit)."""
    return stop_demo(Path(instance_dir) / "demo", on_line=on_line, gpg_homes=_own_gpg_homes(instance_dir))


def _own_gpg_homes(instance_dir: Path) -> list[Path]:
    """Rewind's own GnuPG home (env file versions): its agent is stopped with the demo's."""
    return [envconfig_keys.gpg_home(instance_dir).home]
