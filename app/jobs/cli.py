"""`flask rewind worker`: run jobs in a process of their own."""

from __future__ import annotations

import signal
import threading

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("worker")
@with_appcontext
def worker() -> None:
    """Claim and run queued jobs until stopped (SIGTERM or Ctrl-C)."""
    from app.jobs.engine import engine

    app = current_app._get_current_object()
    settings = app.config["REWIND_SETTINGS"]
    if not settings.is_postgres:
        raise click.ClickException(
            "separate workers need a PostgreSQL ops database (REWIND_DATABASE_URL); "
            "with SQLite, jobs run inside the web process"
        )
    runner = engine(app).start_runner()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"rewind worker {runner.identity}: running up to {runner.workers} jobs at once")
    stop.wait()
    click.echo("stopping: running jobs are left to finish their current command")
    runner.stop(wait=True)
