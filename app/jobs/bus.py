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
from sqlalchemy import text

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "rewind_events"  # payload "job_id:seq"
QUEUED_CHANNEL = "rewind_jobs_queued"  # no payload: runners re-read the queue
FINISHED_CHANNEL = "rewind_jobs_finished"  # payload "job_id": dashboards re-check that job's target

# callback(job_id, seq); (None, None) means "notices may have been missed: re-read what you watch"
Callback = Callable[[int | None, int | None], None]


class InProcessBus:
    def __init__(self) -> None:
        self._callbacks: list[Callback] = []
        self._queued_callbacks: list[Callable[[], None]] = []
        self._finished_callbacks: list[Callable[[int], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def unsubscribe(self, callback: Callback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def on_queued(self, callback: Callable[[], None]) -> None:
        """Runners listen here so a queued job starts at once, not at their next poll."""
        with self._lock:
            self._queued_callbacks.append(callback)

    def _deliver_queued(self) -> None:
        with self._lock:
            callbacks = list(self._queued_callbacks)
        for callback in callbacks:
            callback()

    def on_finished(self, callback: Callable[[int], None]) -> None:
        """Health monitors listen here, so a job run by any process refreshes every dashboard."""
        with self._lock:
            self._finished_callbacks.append(callback)

    def _deliver_finished(self, job_id: int) -> None:
        with self._lock:
            callbacks = list(self._finished_callbacks)
        for callback in callbacks:
            callback(job_id)

    def job_finished_in_transaction(self, session, job_id: int) -> None:
        """Nothing to do in-process: finished() runs after the commit."""

    def finished(self, job_id: int) -> None:
        self._deliver_finished(job_id)

    def job_queued_in_transaction(self, session) -> None:
        """Nothing to do in-process: queued() runs after the commit."""

    def queued(self) -> None:
        self._deliver_queued()

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
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": EVENTS_CHANNEL, "payload": f"{job_id}:{seq}"}
        )

    def published(self, job_id: int, seq: int) -> None:
        """The LISTEN thread delivers, in this process as in every other."""

    def job_queued_in_transaction(self, session) -> None:
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": QUEUED_CHANNEL})

    def queued(self) -> None:
        """The LISTEN thread delivers, so a worker in another process hears it too."""

    def job_finished_in_transaction(self, session, job_id: int) -> None:
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": FINISHED_CHANNEL, "payload": str(job_id)}
        )

    def finished(self, job_id: int) -> None:
        """The LISTEN thread delivers."""

    def on_finished(self, callback: Callable[[int], None]) -> None:
        super().on_finished(callback)
        self._start_listening()

    def subscribe(self, callback: Callback) -> None:
        super().subscribe(callback)
        self._start_listening()

    def on_queued(self, callback: Callable[[], None]) -> None:
        super().on_queued(callback)
        self._start_listening()

    def _start_listening(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="rewind-listen", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    conn.execute(f"LISTEN {QUEUED_CHANNEL}")
                    conn.execute(f"LISTEN {FINISHED_CHANNEL}")
                    self._deliver(None, None)  # anything sent while we were not listening is re-read
                    self._deliver_queued()
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            if notice.channel == QUEUED_CHANNEL:
                                self._deliver_queued()
                                continue
                            if notice.channel == FINISHED_CHANNEL:
                                self._deliver_finished(int(notice.payload))
                                continue
                            job, _, seq = notice.payload.partition(":")
                            self._deliver(int(job), int(seq))
            except psycopg.Error as exc:
                log.warning("event listener lost its connection (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
