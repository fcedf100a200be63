"""What Rewind did to a target's flags, read back from the audit log (the audit log is the flags' history).

Every successful flags.* row carries `changes`: [{flag, old, new}], with None
for "did not exist", `written_at`, the updated_at the database kept for
Rewind's write, and `old_at`, each changed row's updated_at as the write found it. From
those a page shows each flag's last change, and tells a change made outside
Rewind apart: a table row stamped later than Rewind's own write, or in
another state than Rewind left it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.statuses import Outcome
from app.targets.flags import Flag

PREFIX = "flags."


@dataclass(frozen=True)
class FlagEvent:
    id: int
    ts: datetime
    actor: str
    action: str  # flags.toggle, flags.kill …
    reason: str
    written_at: datetime | None
    changes: tuple[dict, ...]
    details: dict = field(default_factory=dict)

    @property
    def verb(self) -> str:
        return self.action.removeprefix(PREFIX)

    def change_of(self, name: str) -> dict | None:
        return next((c for c in self.changes if c.get("flag") == name), None)

    def old_at(self, name: str) -> datetime | None:
        """The flag's updated_at as this write found it (recorded since the audit held it; None before)."""
        stamp = (self.details.get("old_at") or {}).get(name)
        return datetime.fromisoformat(stamp) if stamp else None


def event_of(row: AuditEvent) -> FlagEvent:
    details = json.loads(row.details or "{}")
    written = details.get("written_at")
    return FlagEvent(
        id=row.id,
        ts=row.ts,
        actor=row.actor_name,
        action=row.action,
        reason=details.get("reason") or "",
        written_at=datetime.fromisoformat(written) if written else None,
        changes=tuple(details.get("changes") or ()),
        details=details,
    )


def events(target: str, *, after: datetime | None = None, after_id: int | None = None) -> list[FlagEvent]:
    """Every change Rewind made to the target's flags, oldest first (refusals changed nothing: left out);
    `after`: audited after that time, `after_id`: after that audit row (ids follow the order of commits)."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.target == target, AuditEvent.action.startswith(PREFIX), AuditEvent.outcome == Outcome.OK)
        .order_by(AuditEvent.id)
    )
    if after is not None:
        query = query.where(AuditEvent.ts > after)
    if after_id is not None:
        query = query.where(AuditEvent.id > after_id)
    return [event_of(row) for row in db.session.scalars(query) if json.loads(row.details or "{}").get("changes")]


def last_changes(target: str) -> dict[str, FlagEvent]:
    """The newest Rewind change of each flag."""
    last: dict[str, FlagEvent] = {}
    for event in events(target):
        for change in event.changes:
            last[change["flag"]] = event
    return last


def of_flag(target: str, name: str) -> list[tuple[FlagEvent, dict]]:
    """One flag's changes, newest first, each with its {old, new}."""
    found = [(e, c) for e in events(target) if (c := e.change_of(name))]
    return list(reversed(found))


@dataclass(frozen=True)
class Seen:
    """The flags as a checkpoint recorded them: a reference for flags Rewind has not changed since."""

    at: datetime
    states: dict[str, bool]


def changed_outside(flag: Flag, last: FlagEvent | None, seen: Seen | None = None) -> bool:
    """True when the row moved after Rewind last knew it: its stamp is newer, or its state differs.

    What Rewind last knew is its newest change of the flag, or the newest checkpoint if that is newer.
    """
    if seen is not None and (last is None or seen.at > last.ts):
        if flag.name in seen.states and seen.states[flag.name] != flag.enabled:
            return True
        return bool(flag.updated_at and flag.updated_at > seen.at)
    if last is None:
        return False
    change = last.change_of(flag.name) or {}
    if change.get("new") is not None and change["new"] != flag.enabled:
        return True
    return bool(flag.updated_at and last.written_at and flag.updated_at > last.written_at)


def last_change(target: str, name: str) -> FlagEvent | None:
    """The newest Rewind change of one flag, found without reading the whole history.

    The needle is the JSON of a change's flag key: a reason quoting it is escaped and cannot match, so the newest
    row found is nearly always the answer, and asking for one row lets the server stop at the first it meets (a
    hot flag's 50 newest rows lie among thousands of others). A row that matched some other way (a future detail
    of that shape) is checked, and then the rows are read on."""
    needle = '"flag":' + json.dumps(name, ensure_ascii=False)
    query = (
        select(AuditEvent)
        .where(
            AuditEvent.target == target,
            AuditEvent.action.startswith(PREFIX),
            AuditEvent.outcome == Outcome.OK,
            AuditEvent.details.contains(needle, autoescape=True),
        )
        .order_by(AuditEvent.id.desc())
    )
    for limit in (1, None):
        for row in db.session.scalars(query.limit(limit)):
            event = event_of(row)
            if event.change_of(name):
                return event
    return None


def first_change_at(target: str) -> datetime | None:
    """When Rewind first changed (or created, or deleted) one of the target's flags, however many audited writes
    that changed nothing (a shell `set` to the state a flag had) came before.

    The needle is the JSON of a non-empty changes list (audit details are compact JSON: see app/audit/chain.py);
    a reason quoting it is escaped and cannot match. A row that matched some other way is checked and passed."""
    query = (
        select(AuditEvent)
        .where(
            AuditEvent.target == target,
            AuditEvent.action.startswith(PREFIX),
            AuditEvent.outcome == Outcome.OK,
            AuditEvent.details.contains('"changes":[{', autoescape=True),
        )
        .order_by(AuditEvent.id)
    )
    for limit in (1, None):
        for row in db.session.scalars(query.limit(limit)):
            if json.loads(row.details or "{}").get("changes"):
                return row.ts
    return None
