"""The capture registry: each area says what it contributes to a checkpoint.

An area registers a Capture once, at import; `take_all` asks every one of
them. A capture that cannot read its part (a database down, a flags table
missing) is recorded as an error for that part and never stops the others:
a checkpoint with a gap is still worth more than none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.targets.errors import TargetError
from app.targets.target import Target


@dataclass(frozen=True)
class Capture:
    name: str  # the key in Checkpoint.captures: "code", "schema", "flags" …
    title: str
    take: Callable[[Target], Any]  # a JSON-able value; None when the target has no such part
    describe: Callable[[Any], str] = str  # a few words for pages and job logs
    # what a line naming the part starts with ("code: …"), when the key alone could be misread
    label: str | None = None
    # an application's own start may change it (a start script that runs `flask db upgrade`): a restart compares it
    # before and after, and says when it moved
    moved_by_start: bool = False


_captures: dict[str, Capture] = {}


def register(capture: Capture) -> Capture:
    if capture.name in _captures and _captures[capture.name] is not capture:
        raise ValueError(f"two checkpoint captures are named {capture.name!r}")
    _captures[capture.name] = capture
    return capture


def registered() -> list[Capture]:
    return list(_captures.values())


def take_all(target: Target, *, moved_by_start: bool = False) -> dict[str, Any]:
    """Every registered area's part of the target now (with `moved_by_start`, only the parts an application's start
    may change); an unreadable part becomes {"error": why}."""
    taken: dict[str, Any] = {}
    for capture in _captures.values():
        if moved_by_start and not capture.moved_by_start:
            continue
        try:
            value = capture.take(target)
        except TargetError as exc:
            taken[capture.name] = {"error": exc.message}
            continue
        if value is not None:
            taken[capture.name] = value
    return taken


def moved(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The parts read both times that changed between two take_all() calls: (label, before, after) in words."""
    said = []
    for name, old in before.items():
        new = after.get(name)
        if name not in after or old == new or _unread(old) or _unread(new):
            continue
        capture = _captures.get(name)
        said.append(((capture.label if capture else None) or name, describe(name, old), describe(name, new)))
    return said


def _unread(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"error"}


def line(name: str, value: Any) -> str:
    """One part of a checkpoint as a page or a job log says it: its label, then its words."""
    capture = _captures.get(name)
    return f"{(capture.label if capture else None) or name}: {describe(name, value)}"


def describe(name: str, value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"error"}:
        return f"not captured: {value['error']}"
    capture = _captures.get(name)
    return capture.describe(value) if capture else str(value)
