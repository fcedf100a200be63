"""The code area's parts of every checkpoint: the deployed commit, and which blue/green slot served."""

from __future__ import annotations

from app.checkpoints.captures import Capture, register
from app.deployments.traffic import traffic_of
from app.targets.target import Target


def _take(target: Target) -> dict:
    repo = target.git()
    return {"commit": repo.head(), "branch": repo.branch}


CODE = register(Capture("code", "Code", _take, lambda v: f"{v['commit'][:12]} on {v['branch']}"))


def _take_traffic(target: Target) -> dict | None:
    """Recorded only: a checkpoint says which slot served, so "what changed?" has the answer; no restore uses it."""
    traffic = traffic_of(target.name)
    if traffic is None:
        return None
    return {"live": traffic.live, "how": traffic.how}


def _describe_traffic(value: dict) -> str:
    return value["live"] if value.get("live") else f"unknown — {value.get('how', 'not recorded')}"


TRAFFIC = register(Capture("traffic", "Traffic", _take_traffic, _describe_traffic))
