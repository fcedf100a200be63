"""Live job progress to many websocket watchers, from one thread per process.

Each new event is read once, rendered to HTML once and framed once; the same
bytes then go to every watcher of that job with a non-blocking send. A
watcher that cannot keep up gets its backlog sent in one write when its
socket drains, and is dropped (its browser reconnects and gets a fresh
snapshot) if the backlog grows past a limit. Handler threads only wait for
their socket to close, so a watcher that leaves frees its thread at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask

from app.extensions import db
from app.jobs.events import JobView, events_after
from app.jobs.models import JobEvent

log = logging.getLogger(__name__)

MAX_BACKLOG = 4 * 1024 * 1024
RETRY_S = 0.05


def text_frame(payload: str) -> bytes:
    """One unmasked, uncompressed WebSocket text frame (server to client)."""
    data = payload.encode()
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + data


@dataclass(eq=False)
class Watcher:
    job_id: int
    sock: socket.socket
    last_seq: int = 0
    backlog: bytearray = field(default_factory=bytearray)
    done: threading.Event = field(default_factory=threading.Event)
    closed: bool = False
    allowance: int = 0  # the snapshot may exceed MAX_BACKLOG by its own size
    feed: _JobFeed | None = None
    wake: Callable[[], None] = lambda: None  # rouses the handler thread, which waits on its socket

    def finish(self) -> None:
        self.done.set()
        self.wake()


@dataclass(eq=False)
class _JobFeed:
    view: JobView
    watchers: set[Watcher] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    dead: bool = False  # removed from the broadcaster; a watcher arriving late must find the new one


class Broadcaster:
    def __init__(
        self,
        app: Flask,
        render_event: Callable[[JobView, JobEvent], str],
        render_snapshot: Callable[[JobView], str],
    ) -> None:
        self.app = app
        self.render_event = render_event
        self.render_snapshot = render_snapshot
        self._feeds: dict[int, _JobFeed] = {}
        self._lock = threading.Lock()  # guards _feeds and _blocked
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._blocked: set[Watcher] = set()
        # Set when this process stops serving: open streams close with SERVICE_RESTART, and browsers reconnect
        # (to a worker that stays) instead of holding this one's graceful stop open until its timeout.
        self.leaving = threading.Event()

    # --- called from handler threads ---------------------------------------------------

    def attach(
        self, job_id: int, sock: socket.socket, load_view: Callable[[], JobView], wake: Callable[[], None]
    ) -> Watcher:
        """Send the job's state so far, then keep the watcher in step with every later event.

        `wake` rouses the handler thread when the job ends or the process leaves, so it closes at once.
        """
        self._ensure_thread()
        watcher = Watcher(job_id, sock, wake=wake)
        while True:
            with self._lock:
                feed = self._feeds.get(job_id)
            if feed is None:
                fresh = _JobFeed(load_view())  # read outside the lock; the first one in wins
                with self._lock:
                    feed = self._feeds.setdefault(job_id, fresh)
            with feed.lock:
                if feed.dead:  # its last watcher left between the lookup and here
                    continue
                watcher.feed = feed
                watcher.last_seq = feed.view.last_seq
                feed.watchers.add(watcher)
                snapshot = text_frame(self.render_snapshot(feed.view))
                watcher.allowance = len(snapshot)
                self._send(watcher, snapshot)
                if feed.view.state.is_final:
                    watcher.finish()
                break
        self.notify(job_id, None)  # pick up anything committed while the view was being read
        return watcher

    def going_away(self, settle_s: float = 5.0) -> None:
        """This process stops serving: every stream's handler is woken to close (see `leaving`).

        Events already committed go out first, so a job that ended while the process drained has its final
        event on its pages, which then close as after any job's end.
        """
        if self._thread is not None:
            sent = threading.Event()
            self._queue.put(sent)
            sent.wait(settle_s)
        self.leaving.set()
        with self._lock:
            feeds = list(self._feeds.values())
        for feed in feeds:
            with feed.lock:
                watchers = list(feed.watchers)
            for watcher in watchers:
                watcher.wake()

    def drain(self, watcher: Watcher, timeout: float) -> None:
        """Give a finished job's last events time to leave before the socket is closed."""
        deadline = time.monotonic() + timeout
        while watcher.backlog and not watcher.closed and time.monotonic() < deadline:
            time.sleep(RETRY_S)

    def detach(self, watcher: Watcher) -> None:
        feed = watcher.feed
        if feed is None:
            return
        with feed.lock:  # no send may be half-way through when the handler closes the socket
            watcher.closed = True
            feed.watchers.discard(watcher)
            with self._lock:
                self._blocked.discard(watcher)
                if not feed.watchers and self._feeds.get(watcher.job_id) is feed:
                    del self._feeds[watcher.job_id]
                    feed.dead = True

    # --- called from the bus -------------------------------------------------------------

    def notify(self, job_id: int | None, seq: int | None) -> None:
        self._queue.put(job_id)

    # --- the broadcasting thread -----------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="rewind-fanout", daemon=True)
                self._thread.start()

    def _next_jobs(self) -> set[int | threading.Event | None]:
        """Job ids to send; None: every watched job; an Event: the same, and set once the pass is over."""
        jobs: set[int | threading.Event | None] = set()
        try:
            jobs.add(self._queue.get(timeout=RETRY_S if self._blocked else None))
        except queue.Empty:
            return jobs
        while True:  # coalesce everything already waiting into one pass
            try:
                jobs.add(self._queue.get_nowait())
            except queue.Empty:
                return jobs

    def _loop(self) -> None:
        with self.app.app_context():
            while True:
                jobs = self._next_jobs()
                waiting = [item for item in jobs if isinstance(item, threading.Event)]
                try:
                    if None in jobs or waiting:  # the bus may have missed notices: re-read every watched job
                        with self._lock:
                            jobs = set(self._feeds)
                    for job_id in jobs:
                        self._broadcast(job_id)
                    self._retry_blocked()
                except Exception:
                    log.exception("fan-out pass failed; continuing")
                finally:
                    db.session.remove()
                    for sent in waiting:
                        sent.set()

    def _broadcast(self, job_id: int) -> None:
        with self._lock:
            feed = self._feeds.get(job_id)
        if feed is None:
            return
        # Read before taking the feed's lock: a handshake waiting for that lock may hold a pooled
        # connection, and this thread must never wait for a connection while holding it.
        # Only this thread advances the view, so last_seq cannot move meanwhile.
        new_events = events_after(job_id, feed.view.last_seq)
        with feed.lock:
            if feed.dead:
                return
            rendered: list[tuple[int, str]] = []
            for event in new_events:
                feed.view.apply(event)
                rendered.append((event.seq, self.render_event(feed.view, event)))
            db.session.commit()  # after rendering: a commit expires the rows, and reading them again costs a query each
            if not rendered:
                return
            final = feed.view.state.is_final
            shared = text_frame("".join(html for _, html in rendered))
            last = rendered[-1][0]
            for watcher in list(feed.watchers):
                if watcher.last_seq >= last:
                    continue
                if watcher.last_seq < rendered[0][0]:
                    frame = shared
                else:
                    frame = text_frame("".join(html for seq, html in rendered if seq > watcher.last_seq))
                watcher.last_seq = last
                self._send(watcher, frame)
                if final:
                    watcher.finish()

    def _send(self, watcher: Watcher, frame: bytes) -> None:
        """Write without blocking; keep what the socket would not take, in order."""
        if watcher.closed:
            return
        watcher.backlog += frame
        try:
            sent = watcher.sock.send(watcher.backlog, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(watcher)
            return
        del watcher.backlog[:sent]
        with self._lock:
            if not watcher.backlog:
                self._blocked.discard(watcher)
                return
            if len(watcher.backlog) <= MAX_BACKLOG + watcher.allowance:
                self._blocked.add(watcher)
                return
        log.warning("dropping a watcher of job %s: %d bytes behind", watcher.job_id, len(watcher.backlog))
        self._drop(watcher)

    def _retry_blocked(self) -> None:
        with self._lock:
            blocked = list(self._blocked)
        for watcher in blocked:
            if watcher.feed is not None:
                with watcher.feed.lock:
                    self._send(watcher, b"")

    def _drop(self, watcher: Watcher) -> None:
        watcher.closed = True
        with self._lock:
            self._blocked.discard(watcher)
        with contextlib.suppress(OSError):
            watcher.sock.shutdown(socket.SHUT_RDWR)  # wakes the handler thread, which detaches
