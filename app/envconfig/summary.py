"""The config area on the target page: its overview line and its kind of timeline rows."""

from __future__ import annotations

from app.envconfig import store
from app.statuses import EnvSource
from app.targetpage.summaries import register_summary
from app.targetpage.timeline import Kind, register_kind
from app.targets.target import Target

KIND = register_kind(
    Kind(
        "config",
        "Configuration",
        actions=("envconfig.",),
        runbooks=("config_restore", "config_edit"),
        order=60,
    )
)


@register_summary
def config_line(target: Target) -> list[tuple[str, str, str]]:
    """The env file version in force, and whether it changed outside Rewind (the usual suspect after an incident)."""
    if target.config.env_file is None:
        return []
    newest = store.newest(target.name)
    if newest is None:
        return [("Config", "no version recorded yet: open the Config tab or take a snapshot", "neutral")]
    when = newest.created_at.strftime("%Y-%m-%d %H:%M UTC")
    if newest.source == EnvSource.OUTSIDE.value:
        return [("Config", f"version #{newest.id}: changed outside Rewind at {when}", "warn")]
    return [("Config", f"version #{newest.id}, recorded {when}", "ok")]
