"""How many job websockets may be open at once: per session, per user, and per process.

Each open socket holds one server thread for as long as it is open, so
without a cap one viewer's tabs could take every thread and leave none for
page loads and /healthz. The process-wide cap keeps a reserve of threads for
ordinary requests.
"""

from __future__ import annotations

import threading
from collections import Counter

# Policy violation: the htmx websocket extension does not reconnect after this code.
CLOSE_CODE = 1008


class SocketCap:
    def __init__(self, per_session: int, per_user: int, total: int) -> None:
        self.per_session, self.per_user, self.total = per_session, per_user, total
        self._lock = threading.Lock()
        self._sessions: Counter = Counter()
        self._users: Counter = Counter()
        self._open = 0

    def acquire(self, session_id: int, user_id: int) -> str | None:
        """Take a slot; returns None, or the reason to give the browser when there is none."""
        with self._lock:
            if self._sessions[session_id] >= self.per_session:
                return (
                    f"too many live job pages in this browser session (at most {self.per_session}); "
                    "close some tabs and reload"
                )
            if self._users[user_id] >= self.per_user:
                return f"too many live job pages for your account (at most {self.per_user}); close some and reload"
            if self._open >= self.total:
                return "Rewind is watching as many jobs as it can right now; reload this page in a minute"
            self._sessions[session_id] += 1
            self._users[user_id] += 1
            self._open += 1
            return None

    def release(self, session_id: int, user_id: int) -> None:
        with self._lock:
            self._sessions[session_id] -= 1
            self._users[user_id] -= 1
            self._open -= 1
            if self._sessions[session_id] <= 0:
                del self._sessions[session_id]
            if self._users[user_id] <= 0:
                del self._users[user_id]

    @property
    def open(self) -> int:
        with self._lock:
            return self._open
