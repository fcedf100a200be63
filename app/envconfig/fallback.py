"""A stored version of a target's env file standing in for the file when it does not parse.

A targets file may read values from the application's env file (`database.url = "envfile:DATABASE_URL"`). A syntax
error in that file, which is what a config rollback exists to undo, would otherwise stop Rewind from starting, and
every `flask rewind` command with it. The newest version Rewind recorded that parses stands in until the file is
fixed; the target's pages say so.

Needs no Flask app: gunicorn's master checks the targets file (app.preflight) before any app exists. It opens the
ops database on its own for the one read, and only when a file does not parse.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.envconfig import keys
from app.envconfig.models import EnvVersion
from app.settings import Settings
from app.targets.config import EnvFallback
from app.targets.envfile import EnvFileError, decode, parse
from app.targets.errors import TargetError

log = logging.getLogger(__name__)


def newest_that_parses(settings: Settings) -> EnvFallback:
    """The fallback for the targets file's loader: (values, which version in words), or None when none is stored."""

    def fallback(target: str, path: Path) -> tuple[dict[str, str | None], str] | None:
        try:
            engine = create_engine(settings.database_url)
            try:
                with Session(engine) as session:
                    version = session.scalar(
                        select(EnvVersion)
                        .where(EnvVersion.target == target, EnvVersion.parse_error.is_(None))
                        .order_by(EnvVersion.id.desc())
                        .limit(1)
                    )
            finally:
                engine.dispose()
        except SQLAlchemyError as exc:  # no ops database yet (before `flask db upgrade`), or it is down
            log.warning("no stored version of %s's env file could be read: %s", target, exc)
            return None
        if version is None:
            return None
        try:
            parsed = parse(decode(keys.unseal(settings.instance_dir, version.sealed)))
        except (TargetError, EnvFileError) as exc:
            log.warning("version #%s of %s's env file could not be read: %s", version.id, target, exc)
            return None
        if not parsed.ok:
            return None
        return parsed.values(), f"version #{version.id} (recorded {version.created_at:%Y-%m-%d %H:%M} UTC)"

    return fallback
