"""The schema area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from app.audit.models import AuditEvent
from app.jobs import runbook as runbooks
from app.schema.state import read_state
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, plain_words, register_kind
from app.targets.target import Target


def describe(event: AuditEvent, details: dict) -> str:
    """The area's rows in words. Its one audited action is a gate override: the row read "schema.gate_override:
    reason …, refused the database is at …", a refusal's word on a change that went ahead."""
    if event.action == "schema.gate_override":
        runbook = details.get("runbook")
        what = f" for “{runbooks.title_of(runbook)}”" if runbook else ""
        job = f" (job #{details['job_id']})" if details.get("job_id") else ""
        why = f": “{details['reason']}”" if details.get("reason") else ""
        said = f" — the gate had said: {details['refused']}" if details.get("refused") else ""
        return f"Schema gate overridden{what}{job}{why}{said}"
    return plain_words(event, details)


KIND = register_kind(
    Kind(
        "schema",
        "Migrations",
        actions=("schema.",),
        runbooks=("schema_upgrade", "schema_downgrade", "downgrade_then_reset", "downgrade_then_revert"),
        describe=describe,
        order=40,
    )
)


@register_summary
def schema_line(target: Target) -> list[tuple[str, str, str]]:
    """Current revision, and drift said in words (code behind schema, schema behind code, several heads)."""
    state = read_state(target)
    if not state.configured:
        return []
    if state.problem:
        return [("Schema", f"cannot be read: {state.problem}", "bad")]
    current = ", ".join(sorted(state.current)) or "no revision applied"
    if state.drift:
        return [("Schema", f"at {current} — {state.drift[0].words}", "bad")]
    return [("Schema", f"at {current}, matching the deployed code", "ok")]
