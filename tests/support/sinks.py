"""A sink for adapter tests: keeps every (stream, text) line, and cancels when told to."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Lines(list):
    def __init__(self, cancel_when: Callable[[Lines], bool] | None = None) -> None:
        super().__init__()
        self.cancel_when = cancel_when
        self.ticks = 0
        self.groups: list[int] = []
        self._lock = threading.Lock()

    def line(self, stream: str, text: str) -> None:
        with self._lock:
            self.append((stream, text))

    def tick(self) -> None:
        self.ticks += 1

    def cancelled(self) -> bool:
        return bool(self.cancel_when and self.cancel_when(self))

    def group_started(self, pgid: int) -> None:
        self.groups.append(pgid)

    def text(self) -> str:
        return "\n".join(text for _stream, text in self)

    def of(self, stream: str) -> list[str]:
        return [text for s, text in self if s == stream]
