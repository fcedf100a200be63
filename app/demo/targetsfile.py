"""The targets file the demo writes, and the check that it only ever replaces its own."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.demo.target import DemoTarget

HEADER = "# written by flask rewind demo"


class NotTheDemosFile(RuntimeError):
    """The targets file exists and was not written by the demo: it is the operator's, never overwritten."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path} was not written by `flask rewind demo` (its first line is not {HEADER!r}), so the demo "
            "will not replace it. Move it away to use the demo, or point REWIND_CONFIG at another file."
        )
        self.path = path


def written_by_demo(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith(HEADER)
    except FileNotFoundError:
        return False


def check_replaceable(path: Path) -> None:
    """NotTheDemosFile unless the file is missing or the demo's own."""
    if (path.exists() or path.is_symlink()) and not written_by_demo(path):
        raise NotTheDemosFile(path)


def _value(value: object) -> str:
    """A TOML value: strings (JSON escapes are valid TOML basic strings), numbers, booleans, arrays, tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, Iterable):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _table(header: str, values: Mapping[str, object]) -> list[str]:
    return [f"[{header}]", *(f"{key} = {_value(value)}" for key, value in values.items()), ""]


def render(targets: Iterable[DemoTarget]) -> str:
    lines = [
        f"{HEADER} — the demo sandbox, two local copies of a small Flask app.",
        "# `flask rewind demo --reset` rebuilds them; `flask rewind demo --stop` stops them.",
        "# To manage your own application, replace this file (see docs/targets.example.toml).",
        "",
    ]
    for t in targets:
        prefix = f"targets.{t.name}"
        lines += _table(prefix, {"protected": t.protected, "auto_rollback": True, "env_file": t.env_file})
        lines += _table(f"{prefix}.repo", {"path": t.app_dir, "branch": "main"})
        process = {
            "command": t.command(),
            "cwd": t.app_dir,
            "env": t.process_env(),
            "pid_file": t.pid_file,
            "log_file": t.log_file,
        }
        if t.reload_signal:
            process["reload"] = t.reload_signal.removeprefix("SIG")
        lines += _table(f"{prefix}.process", process)
        lines += _table(
            f"{prefix}.health", {"url": t.health_url, "status": 200, "json": {"status": "healthy"}, "timeout": 15}
        )
        lines += _table(
            f"{prefix}.database",
            {
                "url": t.database_url,
                "migrations": t.migrations_dir,
                "flask": [t.python, "-m", "flask"],
                "flask_app": "wsgi",
                "key_tables": ["users", "sessions", "segments"],
                "flags_table": "feature_flags",
                "migrate_on_deploy": True,  # the default with migrations; said here so a reader sees deploys upgrade
            },
        )
        lines += _table(
            f"{prefix}.backups", {"dir": t.backups_dir, "gpg_home": t.gpg_home, "recipients": [t.recipient]}
        )
    return "\n".join(lines)


def write(path: Path, targets: Iterable[DemoTarget]) -> None:
    """Write-then-rename, after checking once more that the file there (if any) is the demo's."""
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render(targets))
            os.fchmod(fh.fileno(), 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
