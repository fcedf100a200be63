"""Which targets exist: the targets file, read once and re-read when it changes.

Every request that names a target is checked against it before anything
else happens.
"""

from __future__ import annotations

import threading
from pathlib import Path

from flask import current_app

from app.targets.config import TargetConfig, TargetsFileError, load_targets

__all__ = [
    "TargetsFileError",
    "UnknownTarget",
    "check_target",
    "file_problem",
    "get_target",
    "target",
    "target_names",
    "targets",
]


class UnknownTarget(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        choices = ", ".join(known) if known else "none are configured"
        super().__init__(f"there is no target {name!r} (known targets: {choices})")
        self.name = name


_lock = threading.Lock()
# path -> (mtime of the file as last read, the last good targets, the problem with the file on disk or None)
_cache: dict[Path, tuple[float, dict[str, TargetConfig], str | None]] = {}


def targets(path: Path | None = None) -> dict[str, TargetConfig]:
    """The targets as the file says, re-read when it changes.

    A file broken while Rewind runs does not take the pages down: the last
    good configuration stays in use and file_problem() says what is wrong.
    At start-up (nothing good read yet) the error is raised, so a broken file
    stops Rewind.
    """
    path = path or current_app.config["REWIND_SETTINGS"].config_path
    if not path.exists():
        return {}
    mtime = path.stat().st_mtime
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
    try:
        loaded = load_targets(path)
    except TargetsFileError as exc:
        if cached is None:
            raise
        with _lock:
            _cache[path] = (mtime, cached[1], str(exc))
        return cached[1]
    with _lock:
        _cache[path] = (mtime, loaded, None)
    return loaded


def file_problem(path: Path | None = None) -> str | None:
    """Why the targets file on disk cannot be used (the last good one is in use), or None."""
    path = path or current_app.config["REWIND_SETTINGS"].config_path
    targets(path)
    with _lock:
        cached = _cache.get(path)
    return cached[2] if cached else None


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
