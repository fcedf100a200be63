"""Which targets exist: the targets file, read once and re-read when it changes.

Every request that names a target is checked against it before anything
else happens.
"""

from __future__ import annotations

import threading
from pathlib import Path

from flask import current_app

from app.targets.config import TargetConfig, TargetsFileError, load_targets

__all__ = ["TargetsFileError", "UnknownTarget", "check_target", "get_target", "target", "target_names", "targets"]


class UnknownTarget(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        choices = ", ".join(known) if known else "none are configured"
        super().__init__(f"there is no target {name!r} (known targets: {choices})")
        self.name = name


_lock = threading.Lock()
_cache: dict[Path, tuple[float, dict[str, TargetConfig]]] = {}


def targets(path: Path | None = None) -> dict[str, TargetConfig]:
    path = path or current_app.config["REWIND_SETTINGS"].config_path
    if not path.exists():
        return {}
    mtime = path.stat().st_mtime
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
    loaded = load_targets(path)
    with _lock:
        _cache[path] = (mtime, loaded)
    return loaded


def target_names() -> list[str]:
    return sorted(targets())


def get_target(name: str) -> TargetConfig:
    known = targets()
    if name not in known:
        raise UnknownTarget(name, sorted(known))
    return known[name]


def check_target(name: str) -> str:
    return get_target(name).name


def target(name: str):
    """The Target with its adapters; raises UnknownTarget."""
    from app.targets.target import Target

    return Target(get_target(name), current_app.config["REWIND_SETTINGS"].instance_dir)
