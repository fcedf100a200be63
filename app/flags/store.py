"""Changing flags on a target, each change (and each refusal) audited with old and new values and the reason.

A flag change is one short transaction in the application's database, so it
is written at once rather than queued as a job; its audit row, naming what
was actually written, is added while the rows are still locked (so writes of
one flag are audited in the order they were made) and committed right after
the flag's commit. A toggle only takes its row's place in the chain while
the flag is locked and writes the row after the flag's commit, in the same
round trip as the audit commit: the chain's head lock, which every writer
waits for, is then held one round trip less; a row that fails then is written
again at the chain's end, saying so and naming the place it was given (the
history reads it there), or the person is told the change stands unaudited
(UnauditedChange). Views and the CLI both come through here, so both follow
the same rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.audit.store import MAX_DETAILS_CHARS, Actor, Reserved, record, record_and_commit, reserve, write_and_commit
from app.extensions import db
from app.flags import history
from app.jobs import runbook as runbooks
from app.jobs.models import Job
from app.jobs.runner import interrupt_if_dead
from app.jobs.service import busy_job
from app.statuses import JobState, Outcome
from app.targets.errors import TargetError
from app.targets.flags import (
    Change,
    Flag,
    FlagError,
    FlagTable,
    FlagTableError,
    FlagValueError,
    StaleFlag,
    VanishedFlags,
)
from app.targets.target import Target

log = logging.getLogger(__name__)

NAME_MAX = 80
REASON_MAX = 500


class NoFlagsTable(TargetError):
    def __init__(self, target: str) -> None:
        super().__init__(
            f"{target} has no flags table configured",
            fix=f"set database.flags_table under [targets.{target}.database] in the targets file",
        )


class ReasonRequired(TargetError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs a reason", fix="say why in a few words; it goes to the audit log")


class BadFlagInput(TargetError):
    """A name or value from a form or the shell that cannot be right."""


class UnauditedChange(TargetError):
    """A change committed whose audit rows, committed after it, could not be written even a second time."""

    def __init__(self, what: str, target: str, error: str) -> None:
        super().__init__(
            f"{target}: {what}, but the audit log could not record it: {error}",
            fix="the change stands; check Rewind's ops database, and note the change where the team will see it",
        )


def place(name: str) -> tuple[str, str]:
    """A flag name's place in a list of flags, the tab's and the shell's: case folded first (QA: "Upper" came
    before "beta_search"), then as written, so names differing only in case keep one order."""
    return name.casefold(), name


def by_name(flag: Flag) -> tuple[str, str]:
    """A flag's place in a list (see place): the key to sort flags by."""
    return place(flag.name)


def table_of(target: Target) -> FlagTable:
    table = target.flags()
    if table is None:
        raise NoFlagsTable(target.name)
    return table


class DatabaseBeingReplaced(TargetError):
    """A job is putting another database in live's place: a flag written to live now would stay behind in the
    database it replaces, and the flag would be back as the restored copy has it once the job swaps."""

    def __init__(self, target: str, job_id: int, title: str) -> None:
        super().__init__(
            f"job #{job_id} ({title}) is replacing {target}'s database: a flag change made now would be undone by "
            "its swap",
            fix=f"wait for job #{job_id} to end (or cancel it), then change the flag",
        )
        self.job_id = job_id


def replacing_job(target: str) -> Job | None:
    """The queued or running job that will put another database in the target's live one's place, if any: a read
    only, for the tab's notice and for the check inside a write's transaction."""
    job = busy_job(target)
    if job is None or job.runbook not in {b.name for b in runbooks.all_runbooks() if b.replaces_database}:
        return None
    return job


def writable(target: Target) -> FlagTable:
    """The flags table, to write to: refused while a job is replacing the target's database (one whose process
    died is marked interrupted here, so it does not hold flags back until a runner next starts)."""
    job = replacing_job(target.name)
    running = job is not None and job.job_state == JobState.RUNNING
    if running and interrupt_if_dead(current_app._get_current_object(), job):
        job = replacing_job(target.name)
    if job is not None:
        raise DatabaseBeingReplaced(target.name, job.id, runbooks.title_of(job.runbook))
    return table_of(target)


def still_writable(target: Target) -> None:
    """Looked again inside the write's transaction, once its audit row holds the chain's head: a restore queued
    (under that same lock) since writable() looked is seen here, and the write rolled back, not lost at its swap."""
    if (job := replacing_job(target.name)) is not None:
        raise DatabaseBeingReplaced(target.name, job.id, runbooks.title_of(job.runbook))


def clean_reason(reason: str | None, *, required: bool, what: str) -> str:
    reason = (reason or "").strip()
    if required and not reason:
        raise ReasonRequired(what)
    if len(reason) > REASON_MAX:
        raise BadFlagInput(f"the reason is {len(reason)} characters; keep it under {REASON_MAX}")
    return reason


def parse_state(value: str | None, what: str = "state") -> bool:
    """'on'/'off' (and true/false, 1/0) from a form or the shell."""
    text = (value or "").strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise BadFlagInput(f"{what}: expected on or off, got {value!r}")


def word(enabled: bool | None) -> str:
    return "absent" if enabled is None else ("on" if enabled else "off")


def refused(
    action: str, target: Target, actor: Actor, exc: TargetError, details: dict, *, written: bool = False
) -> None:
    """Audit a refusal; `written`: the change's own audit row was added before its commit failed, and goes."""
    if written:
        db.session.rollback()
    outcome = Outcome.FAILED if isinstance(exc, FlagTableError | FlagValueError) else Outcome.DENIED
    if isinstance(exc, StaleFlag):
        details["current"] = exc.flag.enabled
    details = {**details, "error": exc.message}
    record_and_commit(action, outcome=outcome, target=target.name, actor=actor, details=details)


@contextmanager
def refusing(action: str, target: Target, actor: Actor, details: dict) -> Iterator[None]:
    """Read a request's input inside this: input that cannot be right is refused and audited as every other refusal
    of the action is (`details`: the input as received), before anything is written."""
    try:
        yield
    except TargetError as exc:
        refused(action, target, actor, exc, dict(details))
        raise


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def old_stamps(changes: Iterable[Change]) -> dict[str, str]:
    """Each changed row's updated_at as the write found it: whether the row moved before Rewind wrote over it.

    A restore as of an earlier moment reads it: a flag stamped at or before that moment had not changed since,
    so the `old` of Rewind's write is how it was then (see app/flags/restore.py)."""
    return {
        c.name: _stamp(c.before.updated_at)
        for c in changes
        if c.changed and c.before is not None and c.before.updated_at is not None
    }


def record_batch(
    action: str, *, target: Target, actor: Actor, shared: dict, lists: dict[str, list], old_at: dict[str, str]
) -> list[AuditEvent]:
    """Audit a write of many flags in as many rows as it takes to keep every flag's change whole.

    record() cuts details past MAX_DETAILS_CHARS to a summary, and a kill or restore of a thousand flags is far
    past it: cut, the history would lose those changes, and a restore as of an earlier moment could not tell
    them from changes made outside Rewind. So the lists go into rows filled up to a budget, each row with the
    shared details, its flags' `old_at`, and "part": "i of n" when there is more than one."""
    budget = MAX_DETAILS_CHARS - len(json.dumps(shared)) - 512  # room for the keys and "part"
    rows: list[dict[str, list]] = [{key: [] for key in lists}]
    used = 0
    for key, items in lists.items():
        for item in items:
            size = len(json.dumps(item)) + 2
            stamp = old_at.get(item["flag"]) if isinstance(item, dict) else None
            size += len(json.dumps(stamp)) + len(item["flag"]) + 6 if stamp else 0
            if used + size > budget and any(rows[-1].values()):
                rows.append({k: [] for k in lists})
                used = 0
            rows[-1][key].append(item)
            used += size
    events = []
    for number, part in enumerate(rows, start=1):
        flags = {c["flag"] for c in part.get("changes", ())}
        details = {**shared, **part, "old_at": {k: v for k, v in old_at.items() if k in flags}}
        if len(rows) > 1:
            details["part"] = f"{number} of {len(rows)}"
        events.append(record(action, target=target.name, actor=actor, details=details))
    return events


def toggle(
    target: Target,
    name: str,
    enabled: bool,
    *,
    seen: bool | None,
    actor: Actor,
    reason: str = "",
    via: str = "web",
) -> tuple[Change, history.FlagEvent]:
    """Set one flag; `seen` is the state the person saw (None from the shell's `set`, which says the goal).

    Returns the change (with the row as written) and its audit row.
    """
    details = {"flag": name, "new": enabled, "seen": seen, "reason": reason, "via": via}
    reserved: list[Reserved] = []

    def audit(change: Change, stamp: datetime) -> None:
        # The row's place in the chain is taken while the flag is locked, so one flag's writes are audited in
        # the order they were made; the row itself is written after the flag's commit (write_and_commit).
        reserved.append(
            reserve(
                "flags.toggle",
                target=target.name,
                actor=actor,
                details={
                    **details,
                    "old": change.old,
                    "changes": [change.as_dict()] if change.changed else [],
                    "written_at": _stamp(stamp) if change.changed else None,
                    "old_at": old_stamps([change]),
                },
            )
        )
        still_writable(target)

    try:
        reason = clean_reason(reason, required=target.config.protected, what=f"changing a flag on {target.name}")
        change, _ = writable(target).set(name, enabled, seen=seen, before_commit=audit)
    except TargetError as exc:
        refused("flags.toggle", target, actor, exc, details, written=bool(reserved))
        raise
    what = f"{name} was turned {word(change.new)}"
    try:
        event = write_and_commit(reserved[0])
    except Exception as exc:  # noqa: BLE001 the flag's change is committed: whatever failed, it is audited late
        [event] = _audited_late([reserved[0].event], exc, what=what, target=target)
    return change, history.event_of(event)  # what the answering row shows as the last change


def commit_audited(events: list[AuditEvent], *, what: str, target: Target) -> list[AuditEvent]:
    """Commit audit rows written before the flags' commit, which has happened (see _audited_late)."""
    try:
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 the flags' change is committed: whatever failed, it is audited late
        db.session.rollback()
        return _audited_late(events, exc, what=what, target=target)
    return events


def _audited_late(events: list[AuditEvent], exc: Exception, *, what: str, target: Target) -> list[AuditEvent]:
    """Audit rows that failed after their flags' commit (their places given back, nothing of them kept): the change
    stands, so they are written again at the chain's end, saying so; if that fails too, the person is told the change
    stands unaudited rather than shown an error that reads as if nothing happened."""
    error = _first_line(exc)
    if _already_kept(events):  # the commit got through and only its answer was lost: nothing to write again
        log.warning("%s on %s: the audit commit's answer was lost, but its rows are kept: %s", what, target.name, error)
        return events
    log.error("%s on %s committed but its audit rows failed: %s", what, target.name, error)
    try:
        late = [
            record(
                event.action,
                target=event.target,
                actor=Actor(event.actor_id, event.actor_name),
                details={**json.loads(event.details), "audit_late": error, history.PLACED: history.placed(event)},
            )
            for event in events
        ]
        db.session.commit()
    except Exception as again:  # reported to the person as UnauditedChange
        db.session.rollback()
        log.exception("%s on %s stands unaudited", what, target.name)
        raise UnauditedChange(what, target.name, _first_line(again)) from again
    return late


def _already_kept(events: list[AuditEvent]) -> bool:
    """Whether the rows are in the log after all, found by their hashes (each names its row and place)."""
    try:
        hashes = [event.hash for event in events]
        kept = db.session.scalars(select(AuditEvent.hash).where(AuditEvent.hash.in_(hashes))).all()
        db.session.rollback()
    except Exception:  # noqa: BLE001 the database cannot say: the late path writes them (or says it could not)
        db.session.rollback()
        return False
    return len(set(kept)) == len(set(hashes))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def kill(
    target: Target,
    *,
    names: Iterable[str] | None = None,
    tag: str | None = None,
    actor: Actor,
    reason: str,
    via: str = "web",
) -> list[Change]:
    """Turn several flags off in one transaction with one reason: all of them, or none and the refusal audited."""
    names = sorted(set(names)) if names is not None else None
    details = {"flags": names, "tag": tag, "reason": reason, "via": via}
    recorded = []

    def audit(changes: list[Change], stamp: datetime) -> None:
        shared = {key: details[key] for key in ("tag", "reason", "via")} | {"written_at": _stamp(stamp)}
        lists = {
            "changes": [c.as_dict() for c in changes if c.changed],
            "already_off": [c.name for c in changes if not c.changed],
            "flags": details["flags"] or [],
        }
        recorded.extend(
            record_batch(
                "flags.kill", target=target, actor=actor, shared=shared, lists=lists, old_at=old_stamps(changes)
            )
        )
        still_writable(target)

    try:
        reason = clean_reason(reason, required=True, what="the kill switch")
        changes, _ = writable(target).kill(names, tag=tag, before_commit=audit)
    except TargetError as exc:
        if isinstance(exc, VanishedFlags):
            details["vanished"] = exc.names
        refused("flags.kill", target, actor, exc, details, written=bool(recorded))
        raise
    turned = sum(c.changed for c in changes)
    commit_audited(recorded, what=f"the kill switch turned {turned} flag(s) off", target=target)
    return changes


def check_text(value: str, what: str) -> str:
    """Refuse bytes that are not UTF-8 (the shell hands them over as lone surrogates): no database takes them."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadFlagInput(f"{what} holds bytes that are not UTF-8 text: {value!r}") from None
    return value


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise BadFlagInput("a flag needs a name")
    if len(name) > NAME_MAX or not all(ch.isalnum() or ch in "_-.:" for ch in name):
        raise BadFlagInput(
            f"flag name {name!r}: use up to {NAME_MAX} letters, digits and _ - . : (no spaces)",
        )
    if name in (".", ".."):  # in a web address a browser drops these, so the flag's buttons could not reach it
        raise BadFlagInput(f"flag name {name!r}: a name cannot be only dots; add a letter or digit")
    return name


def new_flag(name: str, state: str | None, description: str | None) -> Flag:
    """A flag to create from what a person typed (the tab's form, the shell): its name checked, its state on or off
    (off when not said), its description trimmed."""
    return Flag(
        name=check_name(check_text(name or "", "the flag name")),
        enabled=parse_state(state or "off", "initial state"),
        description=check_text((description or "").strip(), "the description"),
    )


def create(target: Target, flag: Flag, *, actor: Actor, reason: str = "", via: str = "web") -> Flag:
    """Add a flag, audited while its row is still uncommitted (as a toggle is); a refusal is audited too."""
    details = {
        "flag": flag.name,
        "new": flag.enabled,
        "description": flag.description,
        "tag": flag.tag,
        "reason": reason,
        "via": via,
    }
    recorded = []

    def audit(change: Change, stamp: datetime) -> None:
        recorded.append(
            record(
                "flags.create",
                target=target.name,
                actor=actor,
                details={**details, "old": None, "changes": [change.as_dict()], "written_at": _stamp(stamp)},
            )
        )
        still_writable(target)

    try:
        check_name(flag.name)
        reason = clean_reason(reason, required=target.config.protected, what=f"creating a flag on {target.name}")
        writable(target).create(flag, before_commit=audit)
    except TargetError as exc:
        refused("flags.create", target, actor, exc, details, written=bool(recorded))
        raise
    commit_audited(recorded, what=f"flag {flag.name} was created", target=target)
    return flag


def delete(target: Target, name: str, *, seen: bool | None, actor: Actor, reason: str = "", via: str = "web") -> Flag:
    """Remove a flag, audited (with its description and tag, for a later restore) before the delete commits."""
    details = {"flag": name, "seen": seen, "reason": reason, "via": via}
    recorded = []

    def audit(gone: Flag) -> None:
        change = Change(name, gone.enabled, None, before=gone)
        recorded.append(
            record(
                "flags.delete",
                target=target.name,
                actor=actor,
                details={
                    **details,
                    "old": gone.enabled,
                    "new": None,
                    "description": gone.description,
                    "tag": gone.tag,
                    "changes": [{**change.as_dict(), "description": gone.description, "tag": gone.tag}],
                    "old_at": old_stamps([change]),
                },
            )
        )
        still_writable(target)

    try:
        reason = clean_reason(reason, required=target.config.protected, what=f"deleting a flag on {target.name}")
        gone = writable(target).delete(name, seen=seen, before_commit=audit)
    except TargetError as exc:
        refused("flags.delete", target, actor, exc, details, written=bool(recorded))
        raise
    commit_audited(recorded, what=f"flag {name} was deleted", target=target)
    return gone


__all__ = [
    "BadFlagInput",
    "FlagError",
    "NoFlagsTable",
    "ReasonRequired",
    "UnauditedChange",
    "by_name",
    "check_name",
    "check_text",
    "clean_reason",
    "commit_audited",
    "create",
    "delete",
    "kill",
    "new_flag",
    "parse_state",
    "place",
    "refused",
    "refusing",
    "table_of",
    "toggle",
    "word",
]
