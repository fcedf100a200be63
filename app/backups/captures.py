"""The backups area's part of every checkpoint: the newest verified backup."""

from __future__ import annotations

from datetime import UTC, datetime

from app.backups.setup import catalog_of
from app.backups.status import freshness
from app.checkpoints.captures import Capture, register
from app.targets.target import Target


def _take(target: Target) -> dict | None:
    if target.config.backups is None:
        return None
    # As the tab, the RPO and retention take it: one dated in the future (a clock skew) is of unknown age, so it is
    # not what was newest at this moment (QA: a restore's checkpoints named it while the tab named another).
    newest = freshness(catalog_of(target).backups(), None).newest_verified
    if newest is None:
        return {"file": None}
    return {"file": newest.id, "time": newest.time.isoformat(), "sha256": newest.sha256}


def _describe(value: dict) -> str:
    if not value.get("file"):
        return "none"
    try:
        when = datetime.fromisoformat(value["time"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (KeyError, TypeError, ValueError):
        when = value.get("time") or "time unknown"
    return f"{value['file']} (taken {when})"


# Labelled in full: right after a restore, "backup: <newest>" read as if that backup were what is live.
BACKUP = register(Capture("backup", "Newest verified backup", _take, _describe, label="newest verified backup"))
