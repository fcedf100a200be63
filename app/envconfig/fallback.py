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

from sqlalchemy import create_engine, make_url, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.envconfig import keys
from app.envconfig.models import EnvVersion
from app.envconfig.store import ran_or_unknown
from app.settings import Settings
from app.targets.config import EnvFallback
from app.targets.envfile import EnvFileError, decode, parse
from app.targets.errors import TargetError

log = logging.getLogger(__name__)


def newest_that_parses(settings: Settings) -> EnvFallback:
    """The fallback for the targets file's loader: (values, which version in words), or None when none is stored."""

    def fallback(target: str, path: Path) -> tuple[dict[str, str | None], str] | None:
        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            return None  # no ops database yet: opening one would make an empty file where migrations belong
        options = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
        try:
            engine = create_engine(url, connect_args=options)
            try:
                with Session(engine) as session:
                    # Columns, not the model: a migration still to run on this table must not stop the read.
                    # This file's own versions only (env_file may have moved), never one a failed restore left
                    # unverified (store.unverified).
                    found = session.execute(
                        select(EnvVersion.id, EnvVersion.sealed, EnvVersion.created_at)
                        .where(
                            EnvVersion.target == target,
                            EnvVersion.path == str(path),
                            EnvVersion.parse_error.is_(None),
                            ran_or_unknown(),
                        )
                        .order_by(EnvVersion.id.desc())
                        .limit(1)
                    ).first()
            finally:
                engine.dispose()
        except SQLAlchemyError as exc:  # no tables yet (before `flask db upgrade`), or the database is down
            log.warning("no stored version of %s's env file could be read: %s", target, exc)
            return None
        if found is None:
            return None
        number, sealed, created_at = found
        try:
            parsed = parse(decode(keys.unseal(settings.instance_dir, sealed)))
        except (TargetError, EnvFileError) as exc:
            log.warning("version #%s of %s's env file could not be read: %s", number, target, exc)
            return None
        if not parsed.ok:
            return None
        return parsed.values(), f"version #{number} (recorded {created_at:%Y-%m-%d %H:%M} UTC)"

    return fallback
