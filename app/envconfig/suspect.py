"""The env file as a suspect: changed outside Rewind, lately or right now (said at a failed verification, and on
the overview and dashboard before the health monitor's next look records it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.clock import utcnow
from app.envconfig import keys, store
from app.envconfig.models import EnvVersion
from app.jobs.steps import register_suspect
from app.statuses import EnvSource
from app.targets.errors import TargetError
from app.targets.target import Target

LATELY = timedelta(hours=1)  # an outside change older than this is no longer news at a failure


def changed_since(target: Target, newest: EnvVersion) -> datetime | TargetError | None:
    """When the file on disk was modified, if it is no longer the newest version Rewind recorded (UTC); the error,
    when it cannot be read (gone, not allowed): then the likeliest cause of all."""
    try:
        state = store.current_state(target)
    except TargetError as exc:
        return exc
    if newest.file_digest == keys.file_digest(target.instance_dir, state.content):
        return None
    return datetime.fromtimestamp(state.mtime, tz=UTC)


def changed_outside(target: Target) -> str | None:
    """Said with a failed verification: a hand edit of the env file is the usual cause Rewind already knows of."""
    if target.config.env_file is None:
        return None
    newest = store.newest(target.name)
    if newest is None:
        return None
    modified = changed_since(target, newest)
    if isinstance(modified, TargetError):
        why = modified.in_words()
        return f"{target.name}'s env file cannot be read: {why}; the Config tab puts version #{newest.id} back"
    if modified is not None:
        return (
            f"{target.name}'s env file differs from its version #{newest.id}: it was changed outside Rewind "
            f"(modified {modified:%H:%M:%S} UTC); the Config tab shows what changed and puts version #{newest.id} back"
        )
    if newest.source == EnvSource.OUTSIDE.value and utcnow() - newest.created_at < LATELY:
        return (
            f"{target.name}'s env file was changed outside Rewind (version #{newest.id}, noticed "
            f"{newest.created_at:%H:%M:%S} UTC); the Config tab shows what changed and can put an earlier version back"
        )
    return None


register_suspect("config", changed_outside)
