"""`flask rewind …`: the command-line face of each area, gathered under one group."""

import click
from flask.cli import AppGroup

from app.audit.cli import audit
from app.auth.cli import init_admin, users
from app.backups.cli import backups
from app.demo.cli import demo
from app.envconfig.cli import config
from app.flags.cli import flags
from app.jobs.cli import jobs, run, worker
from app.targets.cli import targets


@click.group("rewind", cls=AppGroup)
def rewind() -> None:
    """Rewind's own commands."""


rewind.add_command(users)
rewind.add_command(init_admin)
rewind.add_command(audit)
rewind.add_command(worker)
rewind.add_command(run)
rewind.add_command(jobs)
rewind.add_command(targets)
rewind.add_command(demo)
rewind.add_command(flags)
rewind.add_command(backups)
rewind.add_command(config)
