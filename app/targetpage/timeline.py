"""One list of everything that happened to a target, newest first: "what changed just before it broke?"

The audit log is the spine: every job is queued through an audited row
(`job.queued`, carrying its job id and runbook), every refusal is an audited
row, and every area names its actions `<area>.<verb>`. So the timeline is one
keyset-paginated query over audit rows for the target; a job appears once, at
the moment it was asked for, with its outcome read from the job table.

Kinds are what a person filters by. An area adds its own with
`register_kind(Kind("flags", "Flag changes", actions=("flags.",)))`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, not_, or_, select

from app.audit.models import AuditEvent
from app.checkpoints.store import moment_of
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs.models import Job
from app.pagination import Page, keyset_page
from app.statuses import Outcome

PAGE_SIZE = 50
QUEUED = "job.queued"


@dataclass(frozen=True)
class Kind:
    key: str  # the ?kind= value
    title: str
    actions: tuple[str, ...] = ()  # audit action prefixes ("flags.") or exact actions ("auth.denied")
    runbooks: tuple[str, ...] = ()  # jobs of these runbooks
    describe: Callable[[AuditEvent, dict], str] | None = None  # an area's words for its own rows
    tried: Callable[[AuditEvent, dict], str] | None = None  # what a refused row of its own tried ("Turning x on")
    order: int = 50


_kinds: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    if kind.key in _kinds and _kinds[kind.key] != kind:
        raise ValueError(f"two timeline kinds are keyed {kind.key!r}")
    _kinds[kind.key] = kind
    return kind


def all_kinds() -> list[Kind]:
    return sorted(_kinds.values(), key=lambda k: (k.order, k.title))


class UnknownKind(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"there is no timeline kind {key!r}; choose one of {', '.join(k.key for k in all_kinds())}")
        self.key = key


def kind(key: str) -> Kind:
    try:
        return _kinds[key]
    except KeyError:
        raise UnknownKind(key) from None


# Rewind's own kinds; areas add theirs next to their views.
JOBS = register_kind(Kind("jobs", "All jobs", order=10))
register_kind(Kind("deploys", "Deploys", runbooks=("deploy", "bluegreen"), order=20))
register_kind(Kind("reverts", "Reverts", runbooks=("revert",), order=21))
register_kind(Kind("resets", "Resets", runbooks=("reset",), order=22))
register_kind(Kind("restarts", "Starts, stops and restarts", runbooks=("start", "stop", "restart"), order=23))
register_kind(Kind("checkpoints", "Checkpoints and known-good marks", actions=("checkpoints.",), order=30))
REFUSALS = register_kind(Kind("refusals", "Refusals", order=90))


@dataclass
class Entry:
    event: AuditEvent
    kind: Kind
    text: str
    tone: str  # badge colour family, shown beside the words
    word: str  # the outcome in words
    job: Job | None = None
    details: dict = field(default_factory=dict)

    @property
    def ts(self) -> datetime:
        return self.event.ts


def _runbook_is(names: tuple[str, ...]):
    """details is canonical JSON (sorted keys, no spaces), so a runbook name appears exactly like this."""
    clauses = []
    for name in names:
        quoted = json.dumps(name)
        clauses += [
            AuditEvent.details.contains(f'"runbook":{quoted},', autoescape=True),
            AuditEvent.details.contains(f'"runbook":{quoted}}}', autoescape=True),
        ]
    return or_(*clauses)


def _action_is(prefixes: tuple[str, ...]):
    return or_(
        *(
            AuditEvent.action.startswith(p, autoescape=True) if p.endswith(".") else AuditEvent.action == p
            for p in prefixes
        )
    )


def _where(selected: Kind | None):
    """Audit rows that are timeline entries: each job once (its queueing), refusals, and every area action."""
    job_row = and_(AuditEvent.action == QUEUED, AuditEvent.outcome == Outcome.OK.value)
    if selected is None:
        return or_(job_row, not_(AuditEvent.action.startswith("job.")), AuditEvent.outcome == Outcome.DENIED.value)
    if selected is REFUSALS:
        return AuditEvent.outcome == Outcome.DENIED.value
    if selected is JOBS:
        return job_row
    clauses = []
    if selected.runbooks:
        clauses.append(and_(job_row, _runbook_is(selected.runbooks)))
    if selected.actions:
        clauses.append(_action_is(selected.actions))
    return or_(*clauses) if clauses else AuditEvent.id.is_(None)


def page(target: str, selected: Kind | None = None, *, before: int | None = None, limit: int = PAGE_SIZE):
    """One page of the target's timeline, newest first, and the cursor of the next (older) page."""
    stmt = select(AuditEvent).where(AuditEvent.target == target, _where(selected))
    rows: Page = keyset_page(stmt, AuditEvent.id, before=before, limit=limit)
    return Page(_entries(rows.items), rows.next_cursor)


def _entries(events: list[AuditEvent]) -> list[Entry]:
    details = {e.id: _details(e) for e in events}
    job_ids = {_job_id(e, details[e.id]) for e in events if e.action == QUEUED}
    job_ids.discard(None)
    jobs = {j.id: j for j in db.session.scalars(select(Job).where(Job.id.in_(job_ids)))} if job_ids else {}
    return [_entry(e, details[e.id], jobs) for e in events]


def _job_id(event: AuditEvent, details: dict) -> int | None:
    """The indexed column; rows written before it existed carry the id only in their details."""
    return event.job_id or details.get("job_id")


def _details(event: AuditEvent) -> dict:
    try:
        value = json.loads(event.details or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _kind_of(event: AuditEvent, details: dict) -> Kind:
    if event.outcome == Outcome.DENIED.value:
        return REFUSALS
    if event.action == QUEUED:
        runbook = details.get("runbook")
        return next((k for k in all_kinds() if runbook in k.runbooks), JOBS)
    area = _area_of(event.action)
    if area is not None:
        return area
    return JOBS if event.action.startswith("job.") else Kind(event.action.split(".")[0], event.action)


def _area_of(action: str) -> Kind | None:
    """The kind whose audit actions include `action` ("flags." takes "flags.kill")."""
    for candidate in all_kinds():
        if any(action.startswith(p) if p.endswith(".") else action == p for p in candidate.actions):
            return candidate
    return None


def _params_text(params: dict) -> str:
    """The parameters in words: 'revision c3d9f27e4b10; skip backup', not 'backup_confirmed False; …'."""
    shown = []
    for key, value in runbooks.shown_params(params).items():
        if value is True:
            shown.append(key.replace("_", " "))
            continue
        if f"{key}_typed" in params and isinstance(value, str):
            value = f"{params[f'{key}_typed']} ({value[:12]})"  # what was typed, and what it resolved to
        elif key.endswith("_typed"):
            continue
        if isinstance(value, list):
            value = ", ".join(str(v)[:12] for v in value)
        elif isinstance(value, str) and len(value) == 40:
            value = value[:12]
        shown.append(f"{key.replace('_', ' ')} {value}")
    return "; ".join(shown)


def _entry(event: AuditEvent, details: dict, jobs: dict[int, Job]) -> Entry:
    kind_ = _kind_of(event, details)
    if event.action == QUEUED and event.outcome == Outcome.OK.value:
        job = jobs.get(_job_id(event, details))
        title = runbooks.title_of(details.get("runbook", "?"))
        params = _params_text(details.get("params") or {})
        text = f"{title}{f' ({params})' if params else ''}"
        if job is None:
            return Entry(event, kind_, text, "neutral", "unknown", None, details)
        state = job.job_state
        return Entry(event, kind_, text, state.tone, state.label, job, details)
    if event.outcome == Outcome.DENIED.value:
        if "runbook" in details:
            what = runbooks.title_of(details["runbook"])
        elif details.get("path"):  # a guard's refusal: the request it refused
            what = f"{details.get('method', '')} {details['path']}".strip()
        elif (area := _area_of(event.action)) and area.tried:  # QA: the row read "flags.kill refused: …"
            what = area.tried(event, details)
        else:
            what = event.action
        # The flags area keeps the person's own reason for the change under "reason" and why it was refused
        # under "error": the refusal is said by the latter, or "refused: checkout errors" reads as the cause.
        reason = details.get("error") or details.get("reason", "")
        return Entry(
            event, kind_, f"{what} refused: {reason}" if reason else f"{what} refused", "warn", "refused", None, details
        )
    text = kind_.describe(event, details) if kind_.describe is not None else _describe(event, details)
    tone = "bad" if event.outcome == Outcome.FAILED.value else "ok"
    return Entry(event, kind_, text, tone, "failed" if tone == "bad" else "done", None, details)


def _describe(event: AuditEvent, details: dict) -> str:
    if event.action == "checkpoints.record":
        commit = f"commit {details['commit'][:12]}" if details.get("commit") else "no commit recorded"
        return f"Checkpoint #{details.get('checkpoint_id')} {moment_of(str(details.get('reason', '')))}: {commit}"
    if event.action == "checkpoints.known_good":
        return f"{(details.get('commit') or '?')[:12]} marked known good: {details.get('why', '')}".rstrip(": ")
    return plain_words(event, details)


def plain_words(event: AuditEvent, details: dict) -> str:
    """A row no area words itself: its action and its plain details (the job id has a column of its own)."""
    shown = ", ".join(f"{k} {v}" for k, v in details.items() if k not in ("job_id",) and not isinstance(v, dict | list))
    return f"{event.action}{f': {shown}' if shown else ''}"
