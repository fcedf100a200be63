"""The audit page's filters: parsed from the query string once, applied to any select."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Select, or_

from app.audit.models import AuditEvent
from app.statuses import Outcome


class FilterError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


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
    def from_args(cls, args) -> AuditFilter:
        values = {name: args.get(name, "").strip()[:128] for name in cls.__dataclass_fields__}
        outcome = values["outcome"]
        if outcome and outcome not in set(Outcome):
            raise FilterError("outcome", f"choose one of {', '.join(Outcome)}, got {outcome!r}")
        _parse_time("since", values["since"])
        _parse_time("until", values["until"])
        return cls(**values)

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    def apply(self, stmt: Select) -> Select:
        if self.actor:
            stmt = stmt.where(AuditEvent.actor_name == self.actor)
        if self.action:
            # A prefix matches whole dotted segments: "auth" finds auth.login, not authz.x.
            prefix = self.action.rstrip(".")
            stmt = stmt.where(
                or_(
                    AuditEvent.action == prefix,
                    (AuditEvent.action >= prefix + ".") & (AuditEvent.action < prefix + "/"),
                )
            )
        if self.target:
            stmt = stmt.where(AuditEvent.target == self.target)
        if self.outcome:
            stmt = stmt.where(AuditEvent.outcome == self.outcome)
        if since := _parse_time("since", self.since):
            stmt = stmt.where(AuditEvent.ts >= since)
        if until := _parse_time("until", self.until):
            stmt = stmt.where(AuditEvent.ts < until)
        return stmt
