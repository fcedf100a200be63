"""The config area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from markupsafe import Markup

from app.audit.models import AuditEvent
from app.envconfig import diff, store
from app.envconfig.suspect import changed_since
from app.statuses import EnvSource, Outcome
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, plain_words, register_kind
from app.targets.errors import TargetError
from app.targets.target import Target
from app.timetags import time_tag
from app.wording import sentence


def describe(event: AuditEvent, details: dict) -> str:
    """The area's rows in words: no action names, no 'recorded False'."""
    failed = event.outcome == Outcome.FAILED.value
    reason = f": {details['reason']}" if details.get("reason") else ""
    if event.action == "envconfig.snapshot":
        if failed:
            return f"Snapshot of the env file failed{reason}"
        if details.get("recorded"):
            return f"Snapshot of the env file kept as version #{details.get('version')}"
        return f"Snapshot of the env file: unchanged since version #{details.get('version')}, nothing new kept"
    if event.action == "envconfig.outside":
        keys = "; ".join(
            f"{kind}: {', '.join(details[kind])}" for kind in ("added", "removed", "changed") if details.get(kind)
        )
        broken = "; it does not parse (the Config tab says where)" if details.get("parses") is False else ""
        return (
            f"The env file changed outside Rewind (modified {details.get('modified', '?')} by owner "
            f"{details.get('owner', '?')}{f'; {keys}' if keys else ''}): kept as version #{details.get('version')}"
            f"{broken}"
        )
    if event.action == "envconfig.reveal":
        what = f"{details.get('key', '?')} of {diff.label_of(details.get('side', '?'))}"
        return f"Reveal of {what} failed{reason}" if failed else f"Revealed {what}"
    return plain_words(event, details)


KIND = register_kind(
    Kind(
        "config",
        "Configuration",
        actions=("envconfig.",),
        runbooks=("config_restore", "config_edit"),
        describe=describe,
        order=60,
    )
)


@register_summary
def config_line(target: Target) -> list[tuple[str, str, str]]:
    """The env file version in force, and whether it changed outside Rewind (the usual suspect after an incident)."""
    if target.config.env_file is None:
        return []
    if target.config.env_stale:  # Rewind itself reads its values from an older version meanwhile (fallback.py)
        return [("Config", Markup("{}").format(sentence(target.config.env_stale)), "bad")]
    newest = store.newest(target.name)
    if newest is None:
        return [("Config", "no version recorded yet: open the Config tab or take a snapshot", "neutral")]
    when = time_tag(newest.created_at)  # in the reader's zone, as every time on the page
    modified = changed_since(target, newest)
    if isinstance(modified, TargetError):  # gone or not allowed: the likeliest cause of a failing app
        text = Markup("version #{}: the file cannot be read: {}").format(newest.id, modified.in_words())
        return [("Config", text, "bad")]
    if modified is not None:  # before the health monitor's next look records it
        text = Markup("the file differs from version #{}: changed outside Rewind (modified {})")
        return [("Config", text.format(newest.id, time_tag(modified)), "warn")]
    if newest.source == EnvSource.OUTSIDE.value:
        text, tone = Markup("version #{}: changed outside Rewind at {}").format(newest.id, when), "warn"
    else:
        text, tone = Markup("version #{}, recorded {}").format(newest.id, when), "ok"
    if newest.parse_error:  # however it was recorded: the application reads this file, or fails to
        return [("Config", Markup("{}; it does not parse: {}").format(text, newest.parse_error), "warn")]
    return [("Config", text, tone)]
