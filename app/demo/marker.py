"""`demo.json` in the demo root: a finished build, with each target's port and interpreter."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from app.demo.target import TARGET_NAMES, DemoTarget

MARKER = "demo.json"
MARKER_FORMAT = 1


def save(root: Path, demo: dict[str, DemoTarget]) -> None:
    data = {
        "format": MARKER_FORMAT,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "targets": {t.name: {"port": t.port, "python": t.python, "pg_port": t.pg_port} for t in demo.values()},
    }
    tmp = root / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, root / MARKER)


def remove(root: Path) -> None:
    (root / MARKER).unlink(missing_ok=True)


def load(root: Path) -> dict[str, DemoTarget] | None:
    """The demo recorded in the marker, if the marker is sound and every target's repository is there."""
    try:
        data = json.loads((root / MARKER).read_text())
        if data.get("format") != MARKER_FORMAT:
            return None
        demo = {}
        for name in TARGET_NAMES:
            entry = data["targets"][name]
            port, python = entry["port"], entry["python"]
            if not (isinstance(port, int) and 0 < port < 65536 and isinstance(python, str) and python):
                return None
            pg_port = entry.get("pg_port", 0)
            if not (isinstance(pg_port, int) and 0 <= pg_port < 65536):
                return None
            demo[name] = DemoTarget(name, root / name, port, python, pg_port)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all((t.app_dir / ".git").is_dir() and (t.pg_port or t.db_path.is_file()) for t in demo.values()):
        return None
    return demo


def on_disk(root: Path, name: str) -> DemoTarget:
    """A target as far as can be told without a sound marker (a half-built demo): enough to stop its app."""
    recorded = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        recorded = json.loads((root / MARKER).read_text())["targets"][name]
    target = DemoTarget(name, root / name, 0, sys.executable)
    if isinstance(recorded, dict):
        with contextlib.suppress(TypeError, ValueError, KeyError):
            target = replace(target, port=int(recorded["port"]), python=str(recorded["python"]))
            target = replace(target, pg_port=int(recorded.get("pg_port", 0)))
    return target
