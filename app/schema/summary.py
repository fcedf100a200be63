"""The schema area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from app.schema.state import read_state
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, register_kind
from app.targets.target import Target

KIND = register_kind(
    Kind(
        "schema",
        "Migrations",
        actions=("schema.",),
        runbooks=("schema_upgrade", "schema_downgrade", "downgrade_then_reset", "downgrade_then_revert"),
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
