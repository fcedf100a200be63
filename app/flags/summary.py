"""The flags area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from datetime import timedelta

from markupsafe import Markup

from app.audit.models import AuditEvent
from app.clock import utcnow
from app.statuses import Outcome
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, register_kind
from app.targets.target import Target

NAMED = 10  # flags a row names before "and N more": a kill of a thousand flags stays one readable line


def _state(value: object) -> str:
    return "absent" if value is None else ("on" if value else "off")


def _names(names: list[str]) -> str:
    more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
    return ", ".join(names[:NAMED]) + more


def _written(details: dict) -> str:
    """What a restore wrote, flag by flag: the words an on-call reads, not the audit row's lists."""
    changes = [c for c in details.get("changes") or () if isinstance(c, dict)]
    made = [f"{c.get('flag')} {'recreated ' if c.get('old') is None else ''}{_state(c.get('new'))}" for c in changes]
    return _names(made) if made else "nothing changed"


def _kill(details: dict) -> str:
    return "Kill switch" + (f" (tag {details['tag']})" if details.get("tag") else "")


def _asked_state(details: dict) -> str | None:
    """The state a toggle asked for, as recorded: a bool once read, the typed word ("on", "off") when refused before
    it was (any other text is no state: "maybe" is not "on"), or the opposite of the state the page showed."""
    new = details.get("new")
    if isinstance(new, bool):
        return _state(new)
    if isinstance(new, str):
        return new if new in ("on", "off") else None
    return {"on": "off", "off": "on"}.get(details.get("seen")) if isinstance(details.get("seen"), str) else None


def _moment(details: dict) -> str:
    """The moment a restore went back to, in words, from whichever field named it (review: refusals read "as of ?")."""
    if details.get("source") or details.get("as_of"):
        return f"as of {details.get('source') or details['as_of']}"
    if details.get("checkpoint"):
        return f"as of checkpoint #{details['checkpoint']}"
    if details.get("job"):
        return f"to before job #{details['job']}"
    return "as of ?"


def tried(event: AuditEvent, details: dict) -> str:
    """What a failed or refused change set out to do, in words ("Turning dark_mode off")."""
    flag = details.get("flag", "?")
    if event.action == "flags.toggle":
        state = _asked_state(details)
        return f"Turning {flag} {state}" if state else f"Changing flag {flag}"
    return {
        "flags.kill": _kill(details),
        "flags.restore": f"Restoring the flags {_moment(details)}",
        "flags.create": f"Creating flag {flag}",
        "flags.delete": f"Deleting flag {flag}",
    }.get(event.action, event.action)


def describe(event: AuditEvent, details: dict) -> str:
    """The area's rows in words: which flags went which way and why, not the audit row's keys."""
    flag, new = details.get("flag", "?"), _state(details.get("new"))
    why = f" — “{details['reason']}”" if details.get("reason") else ""
    part = f" (part {details['part']})" if details.get("part") else ""
    kill = _kill(details)
    source = details.get("source") or details.get("as_of", "?")
    if event.outcome == Outcome.FAILED.value:
        return f"{tried(event, details)} failed: {details.get('error', 'no reason recorded')}{why}"
    if event.action == "flags.toggle":
        return f"{flag} turned {new}{why}" if details.get("changes") else f"{flag} left {new}: it already was{why}"
    if event.action == "flags.kill":
        off = _names([str(c.get("flag", "?")) for c in details.get("changes") or ()]) or "no flag"
        already = f"; already off: {_names(details['already_off'])}" if details.get("already_off") else ""
        return f"{kill}{part}: {off} turned off{already}{why}"
    if event.action == "flags.restore":
        return f"Flags restored as of {source}{part}: {_written(details)}{why}"
    if event.action == "flags.create":
        return f"Flag {flag} created ({new}){why}"
    if event.action == "flags.delete":
        return f"Flag {flag} deleted (was {_state(details.get('old'))}){why}"
    return event.action


KIND = register_kind(Kind("flags", "Flag changes", actions=("flags.",), describe=describe, tried=tried, order=45))

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
    text = Markup("{} of {} on").format(on, len(flags))
    if recent:
        # each name as code: an odd one ("..", "100% on") reads as a name, not as part of the sentence
        shown = Markup(", ").join(Markup("<code>{}</code>").format(name) for name in recent[:3])
        more = f" and {len(recent) - 3} more" if len(recent) > 3 else ""
        text += Markup("; changed in the last day: {}{}").format(shown, more)
    return [("Flags", text, "warn" if recent else "neutral")]
