"""The audit page's filters: parsed from the query string once, applied to any select."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Select, or_, select

from app.audit.models import AuditEvent
from app.extensions import db
from app.statuses import Outcome


class FilterError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _parse_time(field: str, raw: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.removesuffix("Z"))
    except ValueError:
        raise FilterError(field, f"expected a UTC time like 2026-11-25T14:30, got {raw!r}") from None


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    target: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def as_typed(cls, args) -> AuditFilter:
        """The values as they came, unchecked: to give a refused filter back to its form."""
        return cls(**{name: args.get(name, "").strip()[:128] for name in cls.__dataclass_fields__})

    @classmethod
    def from_args(cls, args) -> AuditFilter:
        typed = cls.as_typed(args)
        if typed.outcome and typed.outcome not in set(Outcome):
            raise FilterError("outcome", f"choose one of {', '.join(Outcome)}, got {typed.outcome!r}")
        since = _parse_time("since", typed.since)
        until = _parse_time("until", typed.until)
        if since and until and until <= since:
            # an empty page would read as "nothing happened then"
            raise FilterError("until", f"{until:%Y-%m-%d %H:%M} is not after From ({since:%Y-%m-%d %H:%M}); swap them")
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
        if since := _parse_time("since", self.since):
            stmt = stmt.where(AuditEvent.ts >= since)
        if until := _parse_time("until", self.until):
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
