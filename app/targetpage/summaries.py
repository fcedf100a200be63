"""Lines an area adds to a target's overview: "Schema: at 7b3e5a90", "Flags: 3 on, 1 changed today".

An area calls `register_summary(fn)` when its views module is imported;
fn(target) returns (label, text, tone) tuples. One area's failure to read its
part shows as that area's line in words, never as a broken page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

from app.targets.errors import TargetError

log = logging.getLogger(__name__)

TONES = frozenset({"ok", "warn", "bad", "info", "neutral"})


class Summary(NamedTuple):
    label: str
    text: str  # Markup where it holds a <time> (app.timetags), shown in the reader's zone, or names as <code>
    tone: str = "neutral"  # a badge colour family, always shown beside the words


SummaryFn = Callable[[object], Iterable[tuple]]

_providers: dict[str, SummaryFn] = {}


def register_summary(fn: SummaryFn) -> SummaryFn:
    """Add an area's overview lines; registering the same function again (a re-import) replaces it."""
    _providers[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


def unregister_summary(fn: SummaryFn) -> None:
    _providers.pop(f"{fn.__module__}.{fn.__qualname__}", None)


def summaries(target) -> list[Summary]:
    lines: list[Summary] = []
    for key, fn in _providers.items():
        area = fn.__module__.split(".")[1] if fn.__module__.startswith("app.") else fn.__module__
        try:
            for line in fn(target) or ():
                summary = Summary(*line)
                if summary.tone not in TONES:
                    summary = summary._replace(tone="neutral")
                lines.append(summary)
        except TargetError as exc:  # a state of the target (unreachable, locked, missing): said, not a bug
            log.warning("overview summary %s for %s: %s", key, target.name, exc)
            lines.append(Summary(area.capitalize(), f"could not be read: {exc}", "bad"))
        except Exception as exc:  # one area's bug must not take the target page down
            log.exception("overview summary %s failed for %s", key, target.name)
            lines.append(Summary(area.capitalize(), f"could not be read: {type(exc).__name__}: {exc}", "bad"))
    return lines
