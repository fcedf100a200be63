"""Restore as of: the whole flags table put back as it was at a moment, in one transaction.

The states "then" are what Rewind can prove: a checkpoint chosen as the
moment holds them all (and says which audited changes it includes). For a
time, each flag's row, stamped at or before the moment, is as it was then;
otherwise the first change Rewind made after the moment says what it found
(its `old`, and the row's stamp as it found it), which is newer evidence
than Rewind's last record before the moment (the newest checkpoint then,
and the audited changes after it). A flag changed since by something other
than Rewind, with nothing to prove how it was, is listed as such and left as
it is. A moment before Rewind's first record is refused only when not one
flag's state then can be proven. Flags created since are left alone; flags
deleted since are listed and recreated (with their description and tag)
only when asked.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from app.audit.store import Actor
from app.checkpoints.models import Checkpoint
from app.clock import utcnow
from app.extensions import db
from app.flags import history
from app.flags.captures import THROUGH, snapshot
from app.flags.store import (
    BadFlagInput,
    clean_reason,
    commit_audited,
    old_stamps,
    record_batch,
    refused,
    still_writable,
    table_of,
    writable,
)
from app.jobs import swaps
from app.rowids import row_id
from app.targets.errors import TargetError
from app.targets.flags import Change, ChangedMeanwhile, Flag, FlagTable, TableMoved
from app.targets.flags import fingerprint as table_fingerprint
from app.targets.target import Target
from app.timetags import zone_words


class RestoreTooEarly(TargetError):
    def __init__(self, target: str, moment: datetime, first: datetime | None) -> None:
        when = moment.strftime("%Y-%m-%d %H:%M:%S UTC")  # the moment as read: a time typed elsewhere is said in UTC
        if first is None:
            message = f"Rewind has no record of {target}'s flags yet, so it cannot tell how they were at {when}"
            fix = "a checkpoint or a flag change through Rewind starts the record"
        else:
            message = f"{when} is before Rewind's first record of {target}'s flags ({first:%Y-%m-%d %H:%M:%S} UTC)"
            fix = "choose a later moment"
        super().__init__(message, fix=fix)


class PlanChanged(TargetError):
    """The table is not as the plan the person confirmed saw it; `plan`: the plan now (None: none can be made)."""

    def __init__(self, plan: Plan | None) -> None:
        super().__init__(
            "the flags changed since the plan was shown, so nothing was written", fix="review the new plan and confirm"
        )
        self.plan = plan


@dataclass
class Plan:
    target: str
    as_of: datetime
    source: str  # what the person chose: "2026-05-01 10:00", "checkpoint #4", "before job #12"
    changes: list[Change]  # now -> then, only flags whose state differs
    created_since: list[str]  # present now, absent then: left alone
    deleted_since: list[Flag]  # absent now, present then: recreated only when asked
    unchanged: int = 0
    params: dict = field(default_factory=dict)  # how to ask for this plan again
    unknown: list[Flag] = field(default_factory=list)  # changed outside Rewind, state then unknown: not written
    unknown_gone: list[str] = field(default_factory=list)  # the same, and deleted since: not recreated
    fingerprint: str = ""  # of the whole table as the plan read it: the confirm must find it so (see apply)
    swapped_by: list[int] = field(default_factory=list)  # jobs that put another database in live's place since

    @property
    def proves_anything(self) -> bool:
        """Whether any flag's state at the moment is known (every other one is listed as unknown)."""
        return bool(self.changes or self.unchanged or self.created_since or self.deleted_since)

    @property
    def expected(self) -> dict[str, bool]:
        return {c.name: bool(c.old) for c in self.changes}


_AGO = re.compile(r"^(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?)(\s+ago)?$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?([+-]\d{2}:\d{2})?$")  # 13:55, 13:55:15, 13:55+05:30


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """A moment in UTC: 2026-05-01 10:00[:00], 2026-05-01T10:00 (a datetime-local field), 10:00[:00] (today, as the
    pages show today's times), or '5 minutes ago'. A time is UTC unless it carries an offset; the Flags tab's field
    sends the browser's (static/js/rewind.js), so a refusal says the time as typed, in the zone it was typed in."""
    now = now or utcnow()
    value = (text or "").strip().lower()
    if match := _AGO.match(value):
        amount, unit = int(match.group(1)), match.group(2)[0]
        try:
            return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
        except OverflowError:  # before year 1: no datetime holds it, and no record of Rewind's is that old
            raise BadFlagInput(
                f"as of: {text} is too long ago; write a time since Rewind first saw the flags"
            ) from None
    value = value.upper().replace("Z", "+00:00")
    clock = _CLOCK.match(value)
    try:
        moment = _today_at(clock, now) if clock else datetime.fromisoformat(value)
    except ValueError:
        raise BadFlagInput(
            f"as of: cannot read {text!r} as a time; write 2026-05-01 10:00, 10:00 (today) or '15 minutes ago'"
        ) from None
    utc = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    if utc > now:  # said as typed: a moment from yesterday was not what a bare time meant
        today = "; a time without a date is today's" if clock else ""
        raise BadFlagInput(f"as of: {_as_typed(moment, bool(clock))} is in the future{today}")
    return utc


def _today_at(match: re.Match, now: datetime) -> datetime:
    """HH:MM[:SS] today, in the zone of its offset (UTC without one): the day is that zone's, not the server's."""
    hour, minute, second, offset = match.groups()
    clock = time.fromisoformat(f"{int(hour):02d}:{minute}:{second or '00'}{offset or '+00:00'}")
    day = now.replace(tzinfo=UTC).astimezone(clock.tzinfo).date()
    return datetime.combine(day, clock.replace(tzinfo=None), clock.tzinfo)


def _as_typed(moment: datetime, today: bool) -> str:
    """'2026-11-27 23:00 (UTC+05:30)', '10:00 today (UTC)': the wall time the person wrote, and its zone."""
    clock = f"{moment:%H:%M:%S}" if moment.second or moment.microsecond else f"{moment:%H:%M}"
    day = f"{clock} today" if today else f"{moment:%Y-%m-%d} {clock}"
    return f"{day} ({zone_words(moment.utcoffset())})"


MOMENT_FIELDS = ("as_of", "checkpoint", "job")


def plan_args(source) -> dict:
    """plan()'s arguments from as_of (a time), checkpoint or job as typed (the tab's query string, its confirming
    form, the shell's options): exactly one of them, since taking the first filled one silently ignored a time
    typed beside a checkpoint left selected."""
    given = [key for key in MOMENT_FIELDS if (source.get(key) or "").strip()]
    if len(given) > 1:
        raise BadFlagInput(f"restore as of: you gave {_listed(source, given)}; choose one of them and clear the others")
    out = {}
    if source.get("checkpoint"):
        out["checkpoint"] = _int(source["checkpoint"], "checkpoint")
    elif source.get("job"):
        out["job"] = _int(source["job"], "job")
    elif given:
        out["moment"] = parse_moment(source.get("as_of", ""))
    # none given: restore.plan says to choose one (not "cannot read '' as a time")
    return out


def _listed(source, given: list[str]) -> str:
    """The moments given, as the person typed them: "a time ('15 minutes ago') and checkpoint #3"."""
    said = {
        "as_of": lambda v: f"a time ({v.strip()!r})",
        "checkpoint": lambda v: f"checkpoint #{v.strip().lstrip('#')}",
        "job": lambda v: f"job #{v.strip().lstrip('#')}",
    }
    parts = [said[key](source[key]) for key in given]
    return ", ".join(parts[:-1]) + f" and {parts[-1]}"


def _int(value: str, what: str) -> int:
    text = value.strip().lstrip("#")
    if not text.isdigit():
        raise BadFlagInput(f"{what}: expected a number, got {value!r}")
    number = row_id(text)
    if number is None:  # zero, or past what the ops database can hold: no such row
        raise BadFlagInput(f"there is no {what} #{text}")
    return number


def _checkpoint_states(cp: Checkpoint) -> dict[str, bool] | None:
    return _states_in(cp.captures)


def _states_in(captures: dict) -> dict[str, bool] | None:
    part = captures.get("flags")
    if isinstance(part, dict) and isinstance(part.get("states"), dict):
        return {str(k): bool(v) for k, v in part["states"].items()}
    return None


# checkpoints.store.record keeps captures as json.dumps(sort_keys=True), and the flags capture (captures.py) is
# {"states": {...}, "through_audit": n}: a checkpoint holding flag states reads '"flags": {"states": ' there. The
# filter lets the database skip the rest (checkpoints from before a target had a flags table, or whose capture
# failed); each row it lets through is still parsed and checked.
_HOLDS_STATES = '%"flags": {"states": %'


def _with_states(
    target: str, *, newest: bool = False, at_or_before: datetime | None = None
) -> tuple[Checkpoint, dict[str, bool]] | None:
    """The oldest (or newest) of the target's checkpoints that holds flag states, however many others there are.

    One row is read at a time: a row the filter let through wrongly is passed over for the next one."""
    query = _holding_states(target)
    if at_or_before is not None:
        query = query.where(Checkpoint.created_at <= at_or_before)
    order = Checkpoint.id.desc() if newest else Checkpoint.id
    passed: int | None = None
    while True:
        page = query if passed is None else query.where(Checkpoint.id < passed if newest else Checkpoint.id > passed)
        cp = db.session.scalars(page.order_by(order).limit(1)).first()
        if cp is None:
            return None
        if (states := _checkpoint_states(cp)) is not None:
            return cp, states
        passed = cp.id


def _holding_states(target: str):
    return select(Checkpoint).where(Checkpoint.target == target, Checkpoint.captures_json.like(_HOLDS_STATES))


def recent_with_states(target: str, limit: int = 20) -> list[Checkpoint]:
    """The target's newest checkpoints that hold flag states, newest first."""
    rows = db.session.scalars(_holding_states(target).order_by(Checkpoint.id.desc()).limit(limit))
    return [cp for cp in rows if _checkpoint_states(cp) is not None]


class _FirstRecords:
    """Each target's first checkpoint with flag states, remembered per process once found: it never changes (no
    checkpoint is ever removed), and the Flags tab asks on every view. A remembered one is checked by its key,
    so another ops database at the same address (a test's) is never answered from memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], tuple[int, datetime]] = {}

    def of(self, target: str) -> datetime | None:
        key = (str(db.engine.url), target)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            checkpoint_id, created_at = known
            still = db.session.scalar(
                select(Checkpoint.created_at).where(Checkpoint.id == checkpoint_id, Checkpoint.target == target)
            )
            if still == created_at:
                return created_at
        found = _with_states(target)
        if found is None:
            return None
        with self._lock:
            self._known[key] = (found[0].id, found[0].created_at)
        return found[0].created_at


_first_records = _FirstRecords()


def _base(target: str, moment: datetime) -> tuple[Checkpoint, dict[str, bool]] | None:
    return _with_states(target, newest=True, at_or_before=moment)


def _first_record(target: str) -> datetime | None:
    firsts = [ts for ts in (history.first_change_at(target), _first_records.of(target)) if ts is not None]
    return min(firsts) if firsts else None


def newest_seen(checkpoints: list[Checkpoint]) -> history.Seen | None:
    """The newest of these checkpoints (newest first) as a reference for "changed outside Rewind"."""
    for cp in checkpoints:
        if (states := _checkpoint_states(cp)) is not None:
            return history.Seen(cp.created_at, states)
    return None


class _SeenStates:
    """Each checkpoint's flag states, read once per process: a checkpoint never changes once written, and
    reading every flag's state again (10,000 of them) on every toggle would cost more than the toggle."""

    SIZE = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple, dict[str, bool] | None] = {}

    def of(self, checkpoint_id: int, created_at: datetime) -> dict[str, bool] | None:
        key = (str(db.engine.url), checkpoint_id, created_at)  # never one ops database's row for another's
        with self._lock:
            if key in self._states:
                return self._states[key]
        raw = db.session.scalar(select(Checkpoint.captures_json).where(Checkpoint.id == checkpoint_id))
        states = _states_in(json.loads(raw or "{}"))
        with self._lock:
            self._states[key] = states
            while len(self._states) > self.SIZE:
                self._states.pop(next(iter(self._states)))
        return states


_seen_states = _SeenStates()


def newest_seen_of(target: str, limit: int = 5) -> history.Seen | None:
    """newest_seen over the target's newest checkpoints, reading only their ids and times once their states
    are known: what a single row (a toggle's answer) needs."""
    rows = db.session.execute(
        select(Checkpoint.id, Checkpoint.created_at)
        .where(Checkpoint.target == target, Checkpoint.captures_json.like(_HOLDS_STATES))
        .order_by(Checkpoint.id.desc())
        .limit(limit)
    ).all()
    for checkpoint_id, created_at in rows:
        if (states := _seen_states.of(checkpoint_id, created_at)) is not None:
            return history.Seen(created_at, states)
    return None


def ensure_baseline(target: str, table: FlagTable) -> None:
    """Record the flags as Rewind first sees them (a checkpoint), so "as of" has a start to go back to.

    Until then Rewind has no record of the table; afterwards every change it makes is audited, and a later
    checkpoint or audit row takes over. Cheap when a record exists: remembered per process once found.
    The table is read again here, as every checkpoint reads it (captures.snapshot), so the record says which
    audited changes it holds.
    """
    if _first_records.of(target) is not None:
        return
    from app.checkpoints import store as checkpoints

    checkpoints.record(target, None, "flags first seen", {"flags": snapshot(table)})


def _through(cp: Checkpoint) -> int | None:
    """The last audit row whose change the checkpoint's flag states include; None for one taken before it was kept."""
    through = cp.captures.get("flags", {}).get(THROUGH)
    return through if isinstance(through, int) and not isinstance(through, bool) else None


def _events_after(target: str, base: tuple[Checkpoint, dict[str, bool]] | None) -> list[history.FlagEvent]:
    """Rewind's changes the base checkpoint does not include: those audited after its position, or (a checkpoint
    from before positions were kept) after its time."""
    if base is None:
        return history.events(target)
    if (through := _through(base[0])) is not None:
        return history.events(target, after_id=through)
    return history.events(target, after=base[0].created_at)


def plan(target: Target, *, moment: datetime | None = None, checkpoint: int | None = None, job: int | None = None):
    """The diff between the flags now and then; nothing is written."""
    name = target.name
    base: tuple[Checkpoint, dict[str, bool]] | None = None
    if checkpoint is not None:
        cp = db.session.scalars(select(Checkpoint).filter_by(id=checkpoint, target=name)).first()
        states = _checkpoint_states(cp) if cp else None
        if states is None:
            raise BadFlagInput(f"checkpoint #{checkpoint} of {name} does not exist or holds no flag states")
        base, moment, source = (cp, states), cp.created_at, f"checkpoint #{checkpoint}"
        params = {"checkpoint": checkpoint}
    elif job is not None:
        from app.jobs.models import Job

        row = db.session.get(Job, job)
        if row is None:
            raise BadFlagInput(f"there is no job #{job}")
        if row.target != name:
            raise BadFlagInput(f"job #{job} ran on {row.target}, not on {name}")
        cp = db.session.scalars(select(Checkpoint).where(Checkpoint.job_id == job).order_by(Checkpoint.id)).first()
        states = _checkpoint_states(cp) if cp else None
        if states is not None:
            base, moment = (cp, states), cp.created_at
        else:
            moment = row.created_at - timedelta(microseconds=1)
        source, params = f"before job #{job}", {"job": job}
    elif moment is not None:
        source, params = f"{moment:%Y-%m-%d %H:%M:%S} UTC", {"as_of": moment.isoformat(timespec="microseconds")}
    else:
        raise BadFlagInput("as of: choose a time, a checkpoint or a job")
    too_early = None
    if base is None:
        first = _first_record(name)
        if first is None or moment < first:
            # No record of Rewind's that old, yet the rows and Rewind's changes since may still prove how flags were.
            too_early = RestoreTooEarly(name, moment, first)
        else:
            base = _base(name, moment)

    exact = checkpoint is not None or (job is not None and base is not None)  # a record taken at the moment itself
    swapped = [] if exact else swaps.since(name, moment)
    # A checkpoint taken at the moment itself holds every change before it: each change not in it came after.
    records, firsts, gone = _records(base, _events_after(name, base), None if exact else moment)
    now = {flag.name: flag for flag in table_of(target).list()}
    the_plan = Plan(name, moment, source, [], [], [], 0, params, fingerprint=table_fingerprint(now.values()))
    the_plan.swapped_by = [swap.job_id for swap in swapped]
    swapped_at = swapped[0].at if swapped else None
    # Without a record at or before the moment, Rewind's first look at the flags (after it) tells a flag Rewind
    # created after a swap apart from one that was already there without it (see _state_then).
    first_look = _first_look(name) if swapped and base is None else None
    for flag_name in sorted(set(now) | set(records) | set(firsts)):
        current, record, first = now.get(flag_name), records.get(flag_name), firsts.get(flag_name)
        if exact:
            wanted = record.state if record else (first[1].get("old") if first else None)
        else:
            wanted = _state_then(flag_name, current, record, first, moment, swapped_at, first_look, base is not None)
        if wanted is UNKNOWN:
            if current is not None:
                the_plan.unknown.append(current)
            else:
                the_plan.unknown_gone.append(flag_name)
        elif current is None:
            if wanted is not None:
                was = gone.get(flag_name, {})  # the delete's audit row holds what the row was
                the_plan.deleted_since.append(Flag(flag_name, wanted, was.get("description") or "", tag=was.get("tag")))
        elif wanted is None:
            the_plan.created_since.append(flag_name)
        elif current.enabled != wanted:
            the_plan.changes.append(Change(flag_name, current.enabled, wanted, before=current))
        else:
            the_plan.unchanged += 1
    if too_early is not None and not the_plan.proves_anything:
        raise too_early
    return the_plan


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()  # Rewind cannot prove how a flag was at the moment


@dataclass(frozen=True)
class _Record:
    """Rewind's last record of a flag at or before the moment: its state (None: absent) and the time to compare
    with the row's updated_at (a write's written_at, or the checkpoint's time)."""

    state: bool | None
    at: datetime


def _records(base: tuple[Checkpoint, dict[str, bool]] | None, events: list[history.FlagEvent], moment: datetime | None):
    """Each flag's last record at or before the moment, its first Rewind change after it, and its last delete
    after it (which holds the row's description and tag). No moment: every event came after the base."""
    records = {n: _Record(on, base[0].created_at) for n, on in base[1].items()} if base else {}
    firsts: dict[str, tuple[history.FlagEvent, dict]] = {}
    gone: dict[str, dict] = {}
    for event in events:  # only those after the base checkpoint, which already holds everything before it
        for c in event.changes:
            if moment is not None and event.ts <= moment:
                records[c["flag"]] = _Record(c.get("new"), event.written_at or event.ts)
                continue
            firsts.setdefault(c["flag"], (event, c))
            if c.get("new") is None:
                gone[c["flag"]] = c
    return records, firsts, gone


def _as_it_was(state: bool, stamped: datetime, record: _Record | None, moment: datetime) -> Any:
    """`state`, held by a row stamped `stamped`, as the flag's state at the moment, or UNKNOWN.

    A row not stamped since Rewind's record must still be as recorded (if not, it was changed without a stamp,
    and the stamp proves nothing); a row stamped after the record but at or before the moment has not changed
    since the moment. A row stamped after the moment was changed since, by something other than Rewind.
    """
    latest = _latest(stamped)
    if record is not None and latest <= record.at:
        return state if state == record.state else UNKNOWN
    return state if latest <= moment else UNKNOWN


def _latest(stamped: datetime) -> datetime:
    """The latest time a stamp may stand for: one without a fraction may come from a clock that keeps whole seconds
    (SQLite's CURRENT_TIMESTAMP), and a change stamped 10:00:00 then may have been made at 10:00:00.9."""
    return stamped.replace(microsecond=999_999) if stamped.microsecond == 0 else stamped


def _first_look(target: str) -> history.Seen | None:
    """Rewind's first checkpoint of the target's flags (their states, and when it was taken), if any."""
    found = _with_states(target)
    return history.Seen(found[0].created_at, found[1]) if found else None


def _state_then(
    name: str,
    row: Flag | None,
    record: _Record | None,
    first: tuple[history.FlagEvent, dict] | None,
    moment: datetime,
    swapped_at: datetime | None = None,
    first_look: history.Seen | None = None,
    based: bool = False,
) -> Any:
    """How one flag was at the moment (None: absent), from what Rewind can prove, or UNKNOWN.

    A flag Rewind changed after the moment: the first such change's `old` is newer evidence than any record
    before the moment, and the row's stamp as that write found it tells whether anything changed it between
    (audit rows from before that stamp was kept are taken at their word); the row's stamp now is Rewind's own
    write, and proves nothing of the moment. Otherwise the row itself: stamped at or before the moment, it is
    as it was then. Last, a flag deleted since by
    something else keeps Rewind's last record (recreated only when asked); one changed since by something else
    has no provable state then.

    `swapped_at`: when a job put another database in live's place (a restore, its undo), after the
    moment. What a row (or a write that found it) says from then on is of that other database, not of the moment:
    Rewind's own record at or before the moment stands instead, as a checkpoint chosen as the moment does. A flag
    Rewind created after the swap (its first change after the moment found no row) was absent then if Rewind's
    record proves it: a checkpoint at or before the moment lacks it (`based`), or, with none, Rewind's first look
    at the flags (`first_look`) lacks it and was taken before both the swap and the creation (a look after the swap
    saw the swapped-in database). Else it is unknown. A flag that existed then (Rewind's record says so) and was
    missing from the database swapped in keeps its state then.
    """
    if first is not None and (swapped_at is None or first[0].ts < swapped_at):
        event, change = first
        old, old_at = change.get("old"), event.old_at(name)
        if old is None or old_at is None:
            return old
        return _as_it_was(old, old_at, record, moment)
    if swapped_at is not None:
        if record is not None:
            return record.state
        created = first is not None and first[1].get("old") is None
        if created and (based or _absent_at_first_look(name, first[0], first_look, swapped_at)):
            return None  # created by Rewind, whose record proves it absent before: absent then
        return UNKNOWN
    if row is not None and row.updated_at is not None:
        return _as_it_was(row.enabled, row.updated_at, record, moment)
    if row is None and record is not None:
        return record.state
    return UNKNOWN


def _absent_at_first_look(
    name: str, created: history.FlagEvent, first_look: history.Seen | None, swapped_at: datetime
) -> bool:
    """Whether Rewind's first look at the flags, taken before the swap and before it created this one, lacked it."""
    if first_look is None:
        return False
    return first_look.at < swapped_at and first_look.at < created.ts and name not in first_look.states


def again(target: Target, the_plan: Plan) -> Plan | None:
    """The same plan asked for again (the table or the records may have moved); None if none can be made now."""
    params = dict(the_plan.params)
    if "as_of" in params:
        params["moment"] = datetime.fromisoformat(params.pop("as_of"))
    try:
        return plan(target, **params)
    except TargetError:
        return None


def apply(
    target: Target,
    the_plan: Plan,
    *,
    seen: dict[str, bool],
    fingerprint: str,
    recreate: list[str],
    actor: Actor,
    reason: str,
    via: str = "web",
) -> list[Change]:
    """Write the plan in one transaction, provided it is still, as a whole, the plan the person confirmed: the
    changes they saw (`seen`) and the table they were made against (`fingerprint`, see Plan). Otherwise
    PlanChanged, with the plan as it is now, and nothing written."""
    details = {
        "as_of": the_plan.as_of.isoformat(timespec="seconds"),
        "source": the_plan.source,
        "reason": reason,
        "recreate": sorted(recreate),
        "via": via,
    }
    recorded = []

    def audit(changes: list[Change], stamp: datetime) -> None:
        shared = {**details, "written_at": stamp.isoformat(timespec="microseconds")}
        lists = {
            "changes": [c.as_dict() for c in changes],
            "created_since": the_plan.created_since,
            "deleted_since": [f.name for f in the_plan.deleted_since],
            "unknown": sorted([f.name for f in the_plan.unknown] + the_plan.unknown_gone),
        }
        recorded.extend(
            record_batch(
                "flags.restore", target=target, actor=actor, shared=shared, lists=lists, old_at=old_stamps(changes)
            )
        )
        still_writable(target)

    try:
        reason = clean_reason(reason, required=target.config.protected, what=f"restoring {target.name}'s flags")
        if not fingerprint:
            raise BadFlagInput("the confirmed plan is missing from the form; show the diff again")
        if seen != the_plan.expected or fingerprint != the_plan.fingerprint:
            raise PlanChanged(the_plan)
        deleted = {f.name: f for f in the_plan.deleted_since}
        if unknown := sorted(set(recreate) - set(deleted)):
            raise BadFlagInput(f"cannot recreate {', '.join(unknown)}: not deleted since {the_plan.source}")
        if not the_plan.changes and not recreate:  # else "restored: 0 change(s) written", and a row saying it
            raise BadFlagInput("nothing to write: tick the deleted flags to recreate, or leave the flags as they are")
        try:
            changes, _ = writable(target).apply(
                {c.name: bool(c.new) for c in the_plan.changes},
                expected=the_plan.expected,
                whole=fingerprint,  # every row locked and checked: a flag equal in the plan cannot move unseen
                create=[deleted[n] for n in sorted(recreate)],
                before_commit=audit,  # audited while the rows are locked: see FlagTable
            )
        except (TableMoved, ChangedMeanwhile):
            raise PlanChanged(again(target, the_plan)) from None
    except TargetError as exc:
        refused("flags.restore", target, actor, exc, details, written=bool(recorded))
        raise
    commit_audited(recorded, what=f"the flags were restored as of {the_plan.source}", target=target)
    return changes
