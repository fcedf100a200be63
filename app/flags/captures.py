"""The flags area's part of every checkpoint: each flag's state, so the whole table can be put back."""

from __future__ import annotations

from app.checkpoints.captures import Capture, register
from app.targets.target import Target


def _take(target: Target) -> dict | None:
    table = target.flags()
    if table is None:
        return None
    return {"states": table.states()}


def _describe(value: dict) -> str:
    states = value.get("states", {})
    return f"{len(states)} flags, {sum(states.values())} on"


FLAGS = register(Capture("flags", "Flags", _take, _describe))
