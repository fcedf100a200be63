"""The deployments area's overview and dashboard line: which blue/green slot serves traffic."""

from __future__ import annotations

from app.deployments.traffic import traffic_of
from app.targetpage.summaries import register_summary
from app.targets.target import Target


@register_summary
def traffic_line(target: Target) -> list[tuple[str, str, str]]:
    """ "Traffic: blue", or "unknown — why" in warning colours: a switch back needs to know where traffic is now."""
    traffic = traffic_of(target.name)
    if traffic is None:
        return []
    return [("Traffic", traffic.words, "info" if traffic.live else "warn")]
