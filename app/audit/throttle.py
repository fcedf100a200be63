"""Refusals of anonymous requests: still audited, but one row per address per minute, then a count.

Without this, anyone who can reach the login page could write audit rows as
fast as they can send requests. The first refusal from an address in a
window is recorded as it is; the rest are counted and recorded as one row
("refused 50 times from 127.0.0.9 in 60 s") when the window has passed, by
the next request that finds it due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

WINDOW_S = 60
MAX_ADDRESSES = 1000  # beyond this, new addresses share one counter: the table cannot be flooded either
OTHERS = "other addresses"


@dataclass
class _Window:
    started: float
    count: int
    action: str


@dataclass(frozen=True)
class Summary:
    address: str
    action: str
    count: int

    @property
    def text(self) -> str:
        return f"refused {self.count} times from {self.address} in {WINDOW_S} s"


class RefusalThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def note(self, address: str, action: str) -> tuple[bool, list[Summary]]:
        """Count one refusal: returns whether to record it on its own, and the summaries now due."""
        now = self.clock()
        with self._lock:
            due = self._close_expired(now)
            if address not in self._windows and len(self._windows) >= MAX_ADDRESSES:
                address = OTHERS
            window = self._windows.get(address)
            if window is None:
                self._windows[address] = _Window(now, 1, action)
                return True, due
            window.count += 1
            return False, due

    def due(self) -> list[Summary]:
        """The counts whose window has passed (cheap when nothing is counted): any request may write them."""
        if not self._windows:
            return []
        with self._lock:
            return self._close_expired(self.clock())

    def _close_expired(self, now: float) -> list[Summary]:
        due = []
        for address, window in list(self._windows.items()):
            if now - window.started >= WINDOW_S:
                del self._windows[address]
                if window.count > 1:
                    due.append(Summary(address, window.action, window.count))
        return due


def record_throttled(action: str, details: dict, actor=None) -> None:
    """Audit an anonymous refusal, rate-limited per address (see the module's docstring); commits."""
    from app.audit.store import client_address, record
    from app.extensions import db
    from app.statuses import Outcome

    address = client_address() or "unknown"
    alone, due = current_app.extensions["rewind.refusals"].note(address, action)
    _record_counts(due)
    if alone:
        record(action, outcome=Outcome.DENIED, details=details, actor=actor)
    db.session.commit()


def write_due_counts() -> None:
    """Write the counts of windows that have passed, so a flood that stopped is still recorded."""
    from app.extensions import db

    due = current_app.extensions["rewind.refusals"].due()
    if due:
        _record_counts(due)
        db.session.commit()


def _record_counts(due: list[Summary]) -> None:
    from app.audit.store import Actor, record
    from app.statuses import Outcome

    for summary in due:
        record(
            summary.action,
            outcome=Outcome.DENIED,
            actor=Actor(None, "anonymous"),
            details={"address": summary.address, "count": summary.count, "summary": summary.text},
        )
