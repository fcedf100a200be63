"""Which targets exist: the names declared in the targets file.

Only the names are read here; every request that names a target is checked
against them before anything else happens.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from flask import current_app


class UnknownTarget(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        choices = ", ".join(known) if known else "none are configured"
        super().__init__(f"there is no target {name!r} (known targets: {choices})")
        self.name = name


class TargetsFileError(ValueError):
    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


_cache: dict[Path, tuple[float, list[str]]] = {}


def target_names(path: Path | None = None) -> list[str]:
    path = path or current_app.config["REWIND_SETTINGS"].config_path
    if not path.exists():
        return []
    mtime = path.stat().st_mtime
    cached = _cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TargetsFileError(path, f"not valid TOML: {exc}") from None
    targets = data.get("targets", {})
    if not isinstance(targets, dict):
        raise TargetsFileError(path, "[targets] must be a table of tables, e.g. [targets.staging]")
    names = sorted(targets)
    _cache[path] = (mtime, names)
    return names


def check_target(name: str) -> str:
    known = target_names()
    if name not in known:
        raise UnknownTarget(name, known)
    return name
