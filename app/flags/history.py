"""What Rewind did to a target's flags, read back from the audit log (the audit log is the flags' history).

Every successful flags.* row carries `changes`: [{flag, old, new}], with None
for "did not exist", `written_at`, the updated_at the database kept for
Rewind's write, and `old_at`, each changed row's updated_at as the write found it. From
those a page shows each flag's last change, and tells a change made outside
Rewind apart: a table row stamped later than Rewind's own write, or in
another state than Rewind left it.

A row whose first writing failed after its flags' commit is written again at
the chain's end (app/flags/store.py), possibly after a later change of the
same flag. It carries `placed`: the id and time it was given when the change
was made (the flag's row was locked then, so that id is at most the id of any
later change of the flag, which can only take its place once the failed one
gave it back). Readers order changes by that place (`FlagEvent.order`): ids
for every ordinary row, so the common path reads as it always did, and only a
late row, which is rare, costs a second look.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.pagination import Page, keyset_page
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
    place: int = 0  # the id the change was given when it was made: `id`, except for a late row (see the module)
    late: bool = False

    @property
    def order(self) -> tuple:
        """Where the change stands among the others, of the same flag above all (see the module): a late row
        given back its place goes before the row that took that place next, which was made after it."""
        return (self.place, not self.late, self.ts, self.id)

    @property
    def verb(self) -> str:
        """What was done, as a page says it ("toggled by oncall"), not the action's name ("toggle by oncall")."""
        name = self.action.removeprefix(PREFIX)
        return VERBS.get(name, name)

    def change_of(self, name: str) -> dict | None:
        return next((c for c in self.changes if c.get("flag") == name), None)

    def old_at(self, name: str) -> datetime | None:
        """The flag's updated_at as this write found it (recorded since the audit held it; None before)."""
        stamp = (self.details.get("old_at") or {}).get(name)
        return datetime.fromisoformat(stamp) if stamp else None


VERBS = {
    "create": "created",
    "delete": "deleted",
    "toggle": "toggled",
    "kill": "turned off (kill switch)",
    "restore": "restored",
}
PLACED = "placed"


def placed(event: AuditEvent) -> dict:
    """What a late row carries of the row that failed: the place and time it was given (see the module)."""
    return {"id": event.id, "ts": event.ts.isoformat(timespec="microseconds")}


def _place_of(row: AuditEvent, details: dict) -> tuple[int, datetime] | None:
    """A late row's place and time, or None for an ordinary row (or one whose `placed` cannot be read: taken as
    written). Never later than the row's own: the place was given before the row was written again."""
    placed = details.get(PLACED) if "audit_late" in details else None
    if not isinstance(placed, dict):
        return None
    place, stamp = placed.get("id"), placed.get("ts")
    if not isinstance(place, int) or isinstance(place, bool) or not isinstance(stamp, str):
        return None
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return min(place, row.id), min(at, row.ts)


def event_of(row: AuditEvent) -> FlagEvent:
    details = json.loads(row.details or "{}")
    written = details.get("written_at")
    late = _place_of(row, details)
    return FlagEvent(
        id=row.id,
        ts=late[1] if late else row.ts,  # when the change was made, a late row's too
        actor=row.actor_name,
        action=row.action,
        reason=details.get("reason") or "",
        written_at=datetime.fromisoformat(written) if written else None,
        changes=tuple(details.get("changes") or ()),
        details=details,
        place=late[0] if late else row.id,
        late=late is not None,
    )


def events(target: str, *, after: datetime | None = None, after_id: int | None = None) -> list[FlagEvent]:
    """Every change Rewind made to the target's flags, oldest first (refusals changed nothing: left out);
    `after`: made after that time, `after_id`: placed after that audit row (ids follow the order of commits).

    A late row placed at or before `after_id` is left out though its own id is after it: a checkpoint that held
    the chain's head at or past its place read the flags after its change (see app/flags/captures.py)."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.target == target, AuditEvent.action.startswith(PREFIX), AuditEvent.outcome == Outcome.OK)
        .order_by(AuditEvent.id)
    )
    if after is not None:  # a late row's own time is later than when it was made: the rows are checked below
        query = query.where(AuditEvent.ts > after)
    if after_id is not None:  # likewise its id is later than its place
        query = query.where(AuditEvent.id > after_id)
    found = [event_of(row) for row in db.session.scalars(query) if json.loads(row.details or "{}").get("changes")]
    if not any(event.late for event in found):
        return found
    found = [e for e in found if (after is None or e.ts > after) and (after_id is None or e.place > after_id)]
    return sorted(found, key=lambda event: event.order)


def last_changes(target: str) -> dict[str, FlagEvent]:
    """The newest Rewind change of each flag."""
    last: dict[str, FlagEvent] = {}
    for event in events(target):
        for change in event.changes:
            last[change["flag"]] = event
    return last


PAGE_SIZE = 100  # changes on one page of a flag's history, on its page and in `flask rewind flags history`


def _changes_of(target: str, name: str):
    """The target's audit rows that changed the flag, found by the JSON of a change's flag key (see last_change)
    in a row whose changes list is not empty (a `set` to the state a flag had names it and changed nothing)."""
    needle = '"flag":' + json.dumps(name, ensure_ascii=False)
    return select(AuditEvent).where(
        AuditEvent.target == target,
        AuditEvent.action.startswith(PREFIX),
        AuditEvent.outcome == Outcome.OK,
        AuditEvent.details.contains(needle, autoescape=True),
        AuditEvent.details.contains('"changes":[{', autoescape=True),
    )


def of_flag(target: str, name: str, *, before: int | None = None, limit: int = PAGE_SIZE) -> Page:
    """One page of a flag's changes, newest first, each as (event, its {old, new}), through the shared keyset
    helper: `before` is the audit row id the page before ended at (its `next_cursor`).

    Pages go by audit row id, so a change made meanwhile shifts nothing. A late row (see the module) stands at its
    own id across pages; within a page the changes are in their order. A row the needles let through that does
    not change the flag (a future detail of that shape) is passed over: a page may then hold fewer, never lose one.
    """
    rows = keyset_page(_changes_of(target, name), AuditEvent.id, before=before, limit=limit)
    found = [(e, c) for row in rows.items if (c := (e := event_of(row)).change_of(name))]
    found.sort(key=lambda pair: pair[0].order, reverse=True)
    return Page(found, rows.next_cursor)


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
    of that shape) is checked, and then the rows are read on.

    The newest row of the flag is its last change unless it is a late row (see the module): then the rows from its
    place on are read too, for a later change of the flag that was logged before it."""
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
                return event if not event.late else _placed_last(query, event, name)
    return None


def _placed_last(query, late: FlagEvent, name: str) -> FlagEvent:
    """The flag's last change when its newest row is late: a row logged before it (after its place) may be later.

    A row before the late one's place cannot be: its own place is no later than its id."""
    rows = db.session.scalars(query.where(AuditEvent.id >= late.place, AuditEvent.id < late.id))
    found = [event for row in rows if (event := event_of(row)).change_of(name)]
    return max([late, *found], key=lambda event: event.order)


def first_change_at(target: str) -> datetime | None:
    """When Rewind first changed (or created, or deleted) one of the target's flags, however many audited writes
    that changed nothing (a shell `set` to the state a flag had) came before.

    The needle is the JSON of a non-empty changes list (audit details are compact JSON: see app/audit/chain.py);
    a reason quoting it is escaped and cannot match. A row that matched some other way is checked and passed.
    A late row logged after the first one may have been made before it (see the module): those are looked at too."""
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
                placed_needle = AuditEvent.details.contains(f'"{PLACED}":{{', autoescape=True)
                late = query.where(AuditEvent.id > row.id, placed_needle)
                made = [event_of(row)] + [e for r in db.session.scalars(late) if (e := event_of(r)).changes]
                return min(event.ts for event in made)
    return None
