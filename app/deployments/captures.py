"""The code area's parts of every checkpoint: the deployed commit, and which blue/green slot served."""

from __future__ import annotations

from app.checkpoints.captures import Capture, register
from app.deployments.traffic import traffic_of
from app.targets.target import Target


def _take(target: Target) -> dict:
    """The branch's head; and, when the checkout is not that commit as committed (a detached HEAD, a hot-fix),
    what it is and why, since that is what the application ran."""
    repo = target.git()
    value = {"commit": repo.head(), "branch": repo.branch}
    if (drift := repo.checkout_drift()) is not None:
        value |= {"checkout": repo.worktree_head(), "drift": drift}
    return value


def _describe(value: dict) -> str:
    said = f"{value['commit'][:12]} on {value['branch']}"
    return f"{said} (the checkout differs: {value['drift']})" if value.get("drift") else said


CODE = register(Capture("code", "Code", _take, _describe))


def _take_traffic(target: Target) -> dict | None:
    """Recorded only: a checkpoint says which slot served, so "what changed?" has the answer; no restore uses it."""
    traffic = traffic_of(target.name)
    if traffic is None:
        return None
    return {"live": traffic.live, "how": traffic.how}


def _describe_traffic(value: dict) -> str:
    return value["live"] if value.get("live") else f"unknown — {value.get('how', 'not recorded')}"


TRAFFIC = register(Capture("traffic", "Traffic", _take_traffic, _describe_traffic))
