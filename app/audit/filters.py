"""The audit page's filters: parsed from the query string once, applied to any select."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Select, or_, select

from app.audit.models import AuditEvent
from app.extensions import db
from app.statuses import Outcome

TIME_FORM = "use 2026-11-26 14:05 or an ISO 8601 time"


class FilterError(ValueError):
    """Filter values that cannot be read, each with its field; carries every value as typed so none is lost."""

    def __init__(self, problems: dict[str, str], typed: AuditFilter) -> None:
        super().__init__(" · ".join(f"{field}: {problem}" for field, problem in problems.items()))
        self.problems = problems
        self.typed = typed


def _parse_time(raw: str) -> datetime | None:
    """A UTC time as the form's inputs send it (2026-11-26T14:05) or any ISO 8601 time; an offset is turned to UTC."""
    raw = raw.strip()
    if not raw:
        return None
    parsed = datetime.fromisoformat(raw.removesuffix("Z"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _form_time(value: datetime) -> str:
    """A datetime-local input's value for a UTC time: to the minute, or as finely as given down to milliseconds
    (the box shows nothing for six decimals, so a finer time is cut to what it can show)."""
    if value.microsecond:
        return value.isoformat(timespec="milliseconds")
    return value.isoformat(timespec="seconds" if value.second else "minutes")


PAGE_LABELS = {"since": "From", "until": "Until"}  # the audit page's words for the fields whose names differ


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    target: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def from_args(cls, args, labels: Mapping[str, str] = PAGE_LABELS) -> AuditFilter:
        """The filters of a query string; FilterError names every field that cannot be read, not only the first.

        `labels`: how the person asking names a field where a problem names another (the page's "From", the
        shell's "--from")."""
        typed = cls(**{name: args.get(name, "").strip()[:128] for name in cls.__dataclass_fields__})
        problems = {
            name: "has a NUL character, which no stored value has; remove it"
            for name, value in asdict(typed).items()
            if "\x00" in value  # PostgreSQL cannot even compare one: the query would fail
        }
        if typed.outcome and typed.outcome not in set(Outcome):
            problems["outcome"] = f"{typed.outcome!r} is not an outcome; choose one of {', '.join(Outcome)}"
        times = {}
        for field in ("since", "until"):
            raw = getattr(typed, field)
            try:
                times[field] = _parse_time(raw)
            except (ValueError, OverflowError):  # OverflowError: an offset that takes it out of the calendar
                problems[field] = f"{raw!r} is not a time; {TIME_FORM}"
        # Times kept as the form's boxes spell a UTC time, so one typed with an offset or a space shows in them.
        typed = replace(typed, **{field: _form_time(value) for field, value in times.items() if value})
        since, until = times.get("since"), times.get("until")
        if since and until and until <= since:  # an empty page would read as "nothing happened then"
            swap = "; swap them" if until < since else ""
            problems["until"] = f"{until:%Y-%m-%d %H:%M} is not after {labels['since']} ({since:%Y-%m-%d %H:%M}){swap}"
        if problems:
            raise FilterError(problems, typed)
        return typed

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    def apply(self, stmt: Select) -> Select:
        if self.actor:
            stmt = stmt.where(AuditEvent.actor_name == self.actor)
        if self.action:
            stmt = stmt.where(_action_matches(self.action.rstrip(".")))
        if self.target:
            stmt = stmt.where(AuditEvent.target == self.target)
        if self.outcome:
            stmt = stmt.where(AuditEvent.outcome == self.outcome)
        if since := _parse_time(self.since):
            stmt = stmt.where(AuditEvent.ts >= since)
        if until := _parse_time(self.until):
            stmt = stmt.where(AuditEvent.ts < until)
        return stmt


def _action_matches(prefix: str):
    """A prefix matches whole dotted segments: "auth" finds auth and auth.login, not authz.check.

    The query shape is chosen for the planner. With no action below the prefix,
    plain equality walks the (action, id) index already newest-first. Otherwise
    PostgreSQL's planner picks well from an OR of ranges; SQLite's, without
    statistics, would collect and sort every match, so there the test is put
    in a form no index serves and SQLite walks ids newest-first, stopping
    after one page.
    """
    exact = AuditEvent.action == prefix
    below = (AuditEvent.action >= prefix + ".") & (AuditEvent.action < prefix + "/")
    if db.session.scalar(select(AuditEvent.id).where(below).limit(1)) is None:
        return exact
    if db.engine.dialect.name == "postgresql":
        return or_(exact, below)
    dotted = AuditEvent.action.op("||")(".")
    return (dotted >= prefix + ".") & (dotted < prefix + "/")
