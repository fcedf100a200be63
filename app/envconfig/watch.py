"""Env files changed on disk without Rewind: noticed at the health monitor's rhythm and kept as a version."""

from __future__ import annotations

from app.dashboard.monitor import on_each_pass
from app.envconfig import store
from app.envconfig.models import EnvVersion
from app.extensions import db
from app.jobs.engine import current_targets
from app.targets.errors import TargetError


def check(name: str) -> EnvVersion | None:
    """Record the target's env file if it differs from its newest version; the new version, or None.

    A target with a mutating job running is left alone: the job records the versions it makes.
    """
    from app.jobs.service import busy_job

    try:
        target = current_targets().open(name)
        if target.config.env_file is None or not store.env_file_of(target).exists() or busy_job(name) is not None:
            return None
        version, recorded = store.ensure_current(target)
        return version if recorded else None
    except TargetError:
        return None  # a file Rewind cannot read (too large, a folder, not allowed): the Config tab says why
    finally:
        db.session.remove()


on_each_pass(check)
