"""Signals acted on by a thread that is already waiting, never inside the handler.

A Python signal handler runs on the main thread between any two bytecodes,
also while that thread holds a lock: the one inside an Event's wait() or
clear() that set() takes, or the one starting a thread (the web worker's
thread pool starts threads from the main thread). A handler that set such an
event or started a thread there would wait on its own thread for ever. So the
handler only writes a byte to a pipe (and sets a plain flag); a relay thread,
started beforehand, reads it and sets the events.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


class SignalRelay:
    """Each noted signal sets these events, in this order, from a thread of its own that is already waiting."""

    def __init__(self, *events: threading.Event, name: str = "rewind-signals") -> None:
        self.noted = False  # set by the handler itself: true as soon as it returns, before the relay has run
        self._events = events
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)
        self._thread = threading.Thread(target=self._relay, name=name, daemon=True)
        self._thread.start()

    def note(self, *_) -> None:
        """The signal handler, or the part of one that tells the relay: a flag and one byte, no lock taken."""
        self.noted = True
        with contextlib.suppress(BlockingIOError):  # a full pipe already holds a signal
            os.write(self._write_end, b"\0")

    def _relay(self) -> None:
        while os.read(self._read_end, 64):
            for event in self._events:
                event.set()

    def close(self) -> None:
        """Stop the relay. Only once no handler can call note() any more (the previous handlers are back)."""
        os.close(self._write_end)  # the relay reads the end of the pipe and returns
        self._thread.join()
        os.close(self._read_end)


@contextlib.contextmanager
def signals_set(signums: tuple[signal.Signals, ...], *events: threading.Event) -> Iterator[None]:
    """While inside, each of these signals sets these events, in this order, through a SignalRelay."""
    relay = SignalRelay(*events)
    previous = {signum: signal.signal(signum, relay.note) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        relay.close()
