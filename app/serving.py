"""gunicorn's gthread worker, with new connections shared out evenly between the worker processes.

Every worker waits on the one listening socket, and whichever wakes first takes
the next connection. A browser keeps its connections open (keep-alive), so the
split made when people open Rewind lasts: under the flags bench, eight people's
connections landed 7 (of 8)/1, 6/2 or 5/3 on two workers (five runs, none 4/4). A
process runs Python on one core at a time, so the crowded worker queued
requests while the other core sat partly idle.

Here each worker publishes how many connections it holds in a small shared
memory table made by the master before forking. A worker that already holds
more than the least-loaded live sibling stops taking new connections until
that changes, so the siblings take them. The least-loaded worker always takes them,
so nothing waits that would not have waited anyway; a sibling silent for longer
than STALE_S (busy, hung or gone) is not counted, and then workers take
connections as stock gunicorn does.

A worker also stops at once on Ctrl-C at any moment of its start: a stop
signal landing before its handlers are in place waits for them (blocked
across the fork), and a second one (the terminal's SIGINT, then the
master's SIGQUIT) does not re-enter the stop under way.
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import time

from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # more workers than this take connections as stock gunicorn does
STALE_S = 2.0  # a worker's main loop publishes at least every second (gunicorn's poll timeout)
# A worker not taking connections looks again this often: a sibling taking one does not wake it.
RECHECK_S = 0.005
_SLOT = struct.Struct("=qd")  # connections held, monotonic time published (0: slot free)


class Table:
    """Per-worker connection counts in an anonymous shared mapping: made before fork, seen by every worker."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, slots * _SLOT.size)

    def publish(self, slot: int, held: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, held, time.monotonic())

    def clear(self, slot: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, 0, 0.0)

    def least_of_others(self, slot: int) -> int | None:
        """The fewest connections any other live worker holds, or None when there is no live sibling.

        Read on every pass of a worker's loop: the table is unpacked in one go rather than slot by slot."""
        now = time.monotonic()
        live = [
            held
            for other, (held, stamp) in enumerate(_SLOT.iter_unpack(self._map))
            if other != slot and stamp and now - stamp < STALE_S
        ]
        return min(live, default=None)


_table: Table | None = None
# Between its fork and its own handlers a worker still has the master's, which queue a signal for the master's
# loop: in the worker, a copy nobody reads, so a Ctrl-C landing then was lost and the worker served on until the
# master killed it at graceful_timeout. Blocked across that gap, these wait in the kernel for the worker's own.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGQUIT, signal.SIGTERM})
_unblock_registered = False


def _unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def prepare(server) -> None:
    """In the master, before any fork (gunicorn's on_starting hook)."""
    global _table, _unblock_registered
    _table = Table()
    if not _unblock_registered:  # the master takes its own stop signals again as soon as it has forked
        os.register_at_fork(after_in_parent=_unblock_stop_signals)
        _unblock_registered = True


def assign_slot(server, worker) -> None:
    """In the master, before forking `worker` (pre_fork): the first slot no live worker holds."""
    taken = {getattr(w, "rewind_slot", None) for w in server.WORKERS.values()}
    worker.rewind_slot = next((s for s in range(SLOTS) if s not in taken), None)
    if isinstance(worker, BalancedThreadWorker) and _unblock_registered:  # it unblocks them in init_signals
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def free_slot(server, worker) -> None:
    """In the master, when `worker` has exited (child_exit)."""
    slot = getattr(worker, "rewind_slot", None)
    if _table is not None and slot is not None:
        _table.clear(slot)


class BalancedThreadWorker(ThreadWorker):
    """gthread, taking a new connection only while it holds no more than the least-loaded live sibling."""

    def init_signals(self) -> None:
        super().init_signals()
        _unblock_stop_signals()  # a stop signal sent since the fork is handled now, by this worker's handlers

    def handle_quit(self, sig, frame) -> None:
        """Once: a second quit signal would run the stop again on top of the first, inside the first's handler,
        and wait for ever on a lock the first holds (or cut the first short), so it is left to the first.

        gthread's own quit shuts its thread pool down here, inside the handler. The main thread may be inside
        that pool's submit() then, holding the lock shutdown() takes: a Ctrl-C landing as a connection was
        handed to a thread hung the worker until the master killed it. So this skips to the plain worker's
        quit (the SystemExit it raises unwinds submit() and frees the lock); release_pool() shuts the pool
        down once the worker is out of its loop."""
        if getattr(self, "rewind_quitting", False):
            return
        self.rewind_quitting = True
        Worker.handle_quit(self, sig, frame)

    def release_pool(self) -> None:
        """As the worker exits (gunicorn's worker_exit): its pool threads are told to end, not left waiting."""
        pool = getattr(self, "tpool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    def _slot(self) -> int | None:
        return getattr(self, "rewind_slot", None) if _table is not None else None

    def _over_share(self) -> bool:
        slot = self._slot()
        if slot is None:
            return False
        least = _table.least_of_others(slot)
        return least is not None and self.nr_conns > least

    def wait_for_and_dispatch_events(self, timeout):
        slot = self._slot()
        if slot is not None and not self.alive:
            # Stopping (a restart, a reload): it takes no new connections, so none may be left to it. Its slot
            # counted, a sibling holding more would wait for it, and people could not connect until it has gone.
            _table.clear(slot)
        elif slot is not None:
            _table.publish(slot, self.nr_conns)
            # gunicorn's loop turns accepting back on whenever it is below worker_connections; keep it off
            # while over the share, and look again soon: a sibling taking connections does not wake this one.
            if self._accepting and self._over_share():
                self.set_accept_enabled(False)
            if not self._accepting:
                timeout = min(timeout, RECHECK_S)
        super().wait_for_and_dispatch_events(timeout)

    def accept(self, listener):
        if self._over_share():
            self.set_accept_enabled(False)  # a sibling takes it; this one looks again on its next pass
            return
        super().accept(listener)
        slot = self._slot()
        if slot is not None:
            _table.publish(slot, self.nr_conns)
