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
    from app import start_runner

    app = current_app._get_current_object()
    settings = app.config["REWIND_SETTINGS"]
    if not settings.is_postgres:
        raise click.ClickException(
            "separate workers need a PostgreSQL ops database (REWIND_DATABASE_URL); "
            "with SQLite, jobs run inside the web process"
        )
    runner = start_runner(app)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"rewind worker {runner.identity}: running up to {runner.workers} jobs at once")
    stop.wait()
    grace = settings.graceful_timeout_s
    click.echo(f"stopping: claiming no more jobs; running jobs have {grace} s to finish")
    interrupted = runner.drain(grace)
    if interrupted:
        click.echo(f"marked interrupted (Rewind was stopped): {', '.join(f'#{i}' for i in interrupted)}")
    runner.stop(wait=False)
