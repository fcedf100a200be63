"""`flask rewind …`: the command-line face of each area, gathered under one group."""

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from app.audit.cli import audit
from app.auth.cli import init_admin, users
from app.backups.cli import backups
from app.clierrors import ops_database_error
from app.demo.cli import demo
from app.deployments.cli import traffic
from app.envconfig.cli import config
from app.flags.cli import flags
from app.jobs.cli import jobs, run, worker
from app.schema.cli import schema
from app.targetpage.cli import targets


class RewindGroup(AppGroup):
    """Says an ops database failure the way every other error is said (README: exit 1, one `rewind:` line)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            raise ops_database_error(exc) from None


@click.group("rewind", cls=RewindGroup)
def rewind() -> None:
    """Rewind's own commands.

    Each command's --help says what it takes. An error is one line on
    standard error starting "rewind:"; exit status 6 means refused with
    nothing changed (an unknown name, a bad value, a missing role), 1 that
    Rewind hit an error or a check found a problem, 2 a usage mistake
    (the README's "Jobs from the command line" lists them all).
    """


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
rewind.add_command(schema)
rewind.add_command(traffic)
