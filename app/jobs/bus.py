"""The event bus: tells watchers in this process that a job has new events.

Only ids travel (job id and event number); watchers read the rows. With a
PostgreSQL ops database the notice is a NOTIFY sent in the event's own
transaction, so every process hears about events committed by any other,
and never before they are readable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from app.jobs.events import NOTIFY_CHANNEL, pg_notify

log = logging.getLogger(__name__)

# callback(job_id, seq); (None, None) means "notices may have been missed: re-read what you watch"
Callback = Callable[[int | None, int | None], None]


class InProcessBus:
    def __init__(self) -> None:
        self._callbacks: list[Callback] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def _deliver(self, job_id: int | None, seq: int | None) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(job_id, seq)

    def notify_in_transaction(self, session, job_id: int, seq: int) -> None:
        """Nothing to do in-process: published() runs after the commit."""

    def published(self, job_id: int, seq: int) -> None:
        self._deliver(job_id, seq)

    def close(self) -> None:
        pass


class PostgresBus(InProcessBus):
    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn.replace("postgresql+psycopg://", "postgresql://", 1)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def notify_in_transaction(self, session, job_id: int, seq: int) -> None:
        pg_notify(session, job_id, seq)

    def published(self, job_id: int, seq: int) -> None:
        """The LISTEN thread delivers, in this process as in every other."""

    def subscribe(self, callback: Callback) -> None:
        super().subscribe(callback)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="rewind-listen", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._deliver(None, None)  # anything sent while we were not listening is re-read
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            job, _, seq = notice.payload.partition(":")
                            self._deliver(int(job), int(seq))
            except psycopg.Error as exc:
                log.warning("event listener lost its connection (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
