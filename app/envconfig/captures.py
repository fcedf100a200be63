"""The config area's part of every checkpoint: the env file version the target has now."""

from __future__ import annotations

from app.checkpoints.captures import Capture, register
from app.envconfig import store
from app.targets.target import Target


def _take(target: Target) -> dict | None:
    if target.config.env_file is None:
        return None
    version, _ = store.ensure_current(target)
    return {"version": version.id}


ENV = register(Capture("env", "Env file", _take, lambda v: f"env file version #{v['version']}"))
