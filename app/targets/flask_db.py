"""`flask db upgrade|downgrade REV` in the target application's own environment.

A Flask-Migrate env.py imports the application, so migrations run as the
application would run them: its flask command (database.flask, else the
repository's .venv, else `flask` on the target's PATH), FLASK_APP from
database.flask_app, its env file, and Target.command_env() — never Rewind's
own environment. The exit status and the words are streamed to the sink and
otherwise not trusted: the caller reads alembic_version afterwards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from app.targets.command import CommandResult, CommandTimedOut, Sink, run_command, shown
from app.targets.envfile import EnvFile, decode, parse
from app.targets.errors import TargetError

if TYPE_CHECKING:
    from app.targets.target import Target

MIGRATE_TIMEOUT_S = 3600.0
# `rev@-N`: N steps down on rev's own branch alone (RevisionGraph.downgrade_argument: a second head taken down).
REVISION = re.compile(r"^(heads?|base|[0-9A-Za-z_]{1,64}|[0-9A-Za-z_]{1,64}@(head|-[1-9][0-9]{0,3}))$")


class FlaskDbError(TargetError):
    """`flask db` could not be started or did not finish."""


def read_env_file(path: Path) -> dict[str, str]:
    """The application's env file read as the application reads it (python-dotenv's rules: `export`, quotes,
    comments after values, a byte-order mark, values over several lines); lines it skips are skipped here too.

    A second, simpler reading once sent `flask db` a DATABASE_URL with its trailing comment, or none at all after
    a byte-order mark: migrations must see the very settings the application sees.
    """
    env_file = EnvFile(path)
    if not os.path.lexists(path):
        return {}
    text = decode(env_file.read().content, f"the env file {path}")
    return {key: value for key, value in parse(text).values().items() if value is not None}


def flask_argv(target: Target) -> list[str]:
    database = target.config.database
    if database is not None and database.flask:
        return list(database.flask)
    for venv in (".venv", "venv"):
        candidate = target.config.repo.path / venv / "bin" / "flask"
        if os.access(candidate, os.X_OK):
            return [str(candidate)]
    return ["flask"]


def environment(target: Target) -> dict[str, str]:
    """The env file under the target's configured env (which wins), plus FLASK_APP when configured."""
    env = read_env_file(target.config.env_file) if target.config.env_file else {}
    env |= target.command_env()
    database = target.config.database
    if database is not None and database.flask_app:
        env["FLASK_APP"] = database.flask_app
    return env


def run(
    target: Target,
    verb: str,
    revision: str,
    sink: Sink | None,
    *,
    directory: Path | None = None,
    timeout: float = MIGRATE_TIMEOUT_S,
) -> CommandResult:
    """Run `flask db VERB REVISION` in the application's repository; the result's status is only a hint.

    `directory` replaces the migrations folder, e.g. with a commit's copy whose scripts the deployed code lacks.
    """
    if verb not in ("upgrade", "downgrade"):
        raise ValueError(f"flask db {verb} is not run by Rewind")
    if not REVISION.match(revision):
        raise FlaskDbError(f"{revision!r} is not a revision Rewind passes to flask db")
    argv = [*flask_argv(target), "db", verb]
    folder = directory or (target.config.database.migrations if target.config.database else None)
    if folder:
        argv += ["--directory", str(folder)]
    argv += ["--", revision]
    if sink is not None:
        sink.line("cmd", "$ " + shown(argv))
    try:
        return run_command(argv, sink, timeout=timeout, cwd=str(target.config.repo.path), env=environment(target))
    except FileNotFoundError:
        raise FlaskDbError(
            f"{argv[0]} is not installed or not on the target's PATH",
            fix="set database.flask in the targets file to the application's flask command, "
            'e.g. ["/srv/app/.venv/bin/flask"]',
        ) from None
    except CommandTimedOut:
        raise FlaskDbError(f"flask db {verb} {revision} did not finish within {timeout:g} s and was stopped") from None
