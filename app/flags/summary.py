"""The flags area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from datetime import timedelta

from app.clock import utcnow
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, register_kind
from app.targets.target import Target

KIND = register_kind(Kind("flags", "Flag changes", actions=("flags.",), order=45))

# The overview and every dashboard card read the flags table: while another transaction holds it (a migration's
# ALTER TABLE), the line gives up this soon and says so, rather than stall the page for a toggle's whole wait.
LOCK_WAIT_S = 0.3


@register_summary
def flags_line(target: Target) -> list[tuple[str, str, str]]:
    """How many flags are on, and which changed in the last day: turning one off is the fastest rollback."""
    table = target.flags()
    if table is None:
        return []
    flags = table.list(wait_s=LOCK_WAIT_S)
    on = sum(1 for f in flags if f.enabled)
    since = utcnow() - timedelta(days=1)
    recent = [f.name for f in flags if f.updated_at and f.updated_at >= since]
    text = f"{on} of {len(flags)} on"
    if recent:
        shown = ", ".join(recent[:3]) + (f" and {len(recent) - 3} more" if len(recent) > 3 else "")
        text += f"; changed in the last day: {shown}"
    return [("Flags", text, "warn" if recent else "neutral")]
