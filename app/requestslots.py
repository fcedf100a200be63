"""Each web worker runs a few page requests' Python at a time (REWIND_REQUEST_SLOTS); the rest wait their turn.

A gthread worker gives every request a thread, but only one thread of a process runs Python at a time (the GIL).
With several requests in one worker, every database round trip of one ends in a wait for the interpreter behind the
others' Python: a short write such as a flag toggle, which holds the audit chain's head across its round trips, is
stretched by everyone else's work, and the contention itself costs CPU. With one request at a time per worker
(cores are used by running more workers), the flags benchmark served 411 toggles/s at a p99 of 42-46 ms, against
266/s and 68 ms with every request let in at once (docs/benchmarks.md, "Twelfth pass").

A slow request (a big page, a sign-in's deliberately slow password hash) must not stall its worker: a request that
has waited WAIT_S for a slot runs anyway, beside the others. Websockets (a job page's live log, open as long as the
job) never take a slot. Nor does a request whose body is still arriving: gunicorn calls the app once the headers are
in, and the body is read from the socket only as the view asks for it, so a client sending it slowly (or never) would
hold the slot while the view waited for it; a body up to the app's size limit is read before the request takes one.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

WAIT_S = 0.25  # the longest a request waits in line before it runs beside the slot holders
BODY_LIMIT = 1024 * 1024  # bodies up to this are read before a slot is taken (create_app passes MAX_CONTENT_LENGTH)

WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class RequestSlots:
    """WSGI middleware letting at most `slots` requests into the app at once; a slot is given back when the app
    returns its response, so a streamed body is sent without holding one."""

    def __init__(self, app: WsgiApp, slots: int, wait_s: float = WAIT_S, body_limit: int = BODY_LIMIT) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}; leave the middleware out to admit all")
        self.app = app
        self.slots = slots
        self.wait_s = wait_s
        self.body_limit = body_limit
        self._lock = threading.Lock()
        self._free = slots
        self._line: deque[_Turn] = deque()  # requests waiting for a slot, longest first

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return self.app(environ, start_response)
        self._read_body(environ)
        held = self._take()
        try:
            return self.app(environ, start_response)
        finally:
            if held:
                self._give_back()

    def _take(self) -> bool:
        """A slot, in the order requests came; False when none came within wait_s (the request runs anyway).

        A slot given back goes straight to the request waiting longest. With a semaphore, a request arriving just
        then (a keep-alive connection's next one) took it before the woken waiter ran, and the waiter went back to
        the end of the line."""
        with self._lock:
            if self._free and not self._line:
                self._free -= 1
                return True
            turn = _Turn()
            self._line.append(turn)
        if turn.wake.acquire(timeout=self.wait_s):
            return True
        with self._lock:
            if turn.given:  # handed the slot as its wait ran out: it holds it
                return True
            self._line.remove(turn)
            return False

    def _give_back(self) -> None:
        with self._lock:
            if self._line:
                turn = self._line.popleft()
                turn.given = True
                turn.wake.release()
            else:
                self._free += 1

    def _read_body(self, environ: dict) -> None:
        """The whole body, when it has a length within the limit, read now and handed to the app from memory.

        A larger one is left to the app (Flask answers 413 without reading it), and so is one without a length. A body
        cut short (the client left) reaches the app as short as it came, as it would have from the socket."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        if not 0 < length <= self.body_limit:
            return
        stream, chunks, left = environ["wsgi.input"], [], length
        while left > 0:
            chunk = stream.read(min(left, 64 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        environ["wsgi.input"] = io.BytesIO(b"".join(chunks))


class _Turn:
    """One request's place in line: `wake` is released when the slot is handed to it."""

    __slots__ = ("given", "wake")

    def __init__(self) -> None:
        self.given = False
        self.wake = threading.Lock()
        self.wake.acquire()
