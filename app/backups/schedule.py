"""Scheduled backups: which targets are due, queued as the system actor like any other job.

`flask rewind backups due` (run from cron or a systemd timer, every few
minutes) queues a backup job for each target whose `backups.interval_minutes`
has passed since its newest backup; the job runner runs it, locked and
audited like any job, and retention follows its verification.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from app.backups.catalog import Catalog
from app.targets.config import TargetConfig


def is_due(config: TargetConfig, now: datetime) -> tuple[bool, str]:
    """Whether the target's next scheduled backup is due, and why in words."""
    backups = config.backups
    if backups is None or backups.interval_minutes is None:
        return False, "no schedule (backups.interval_minutes)"
    newest = next((b for b in Catalog(backups.dir).backups() if not b.foreign), None)
    if newest is None:
        return True, "no backup made by Rewind yet"
    age = now - newest.time
    if age >= timedelta(minutes=backups.interval_minutes):
        return True, f"the newest backup is {int(age.total_seconds() // 60)} min old"
    return False, f"the newest backup is {int(age.total_seconds() // 60)} min old"
