"""The flags area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from datetime import timedelta

from app.clock import utcnow
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, register_kind
from app.targets.target import Target

KIND = register_kind(Kind("flags", "Flag changes", actions=("flags.",), order=45))


@register_summary
def flags_line(target: Target) -> list[tuple[str, str, str]]:
    """How many flags are on, and which changed in the last day: turning one off is the fastest rollback."""
    table = target.flags()
    if table is None:
        return []
    flags = table.list()
    on = sum(1 for f in flags if f.enabled)
    since = utcnow() - timedelta(days=1)
    recent = [f.name for f in flags if f.updated_at and f.updated_at >= since]
    text = f"{on} of {len(flags)} on"
    if recent:
        shown = ", ".join(recent[:3]) + (f" and {len(recent) - 3} more" if len(recent) > 3 else "")
        text += f"; changed in the last day: {shown}"
    return [("Flags", text, "warn" if recent else "neutral")]
