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
"""

from __future__ import annotations

import mmap
import struct
import time

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


def prepare(server) -> None:
    """In the master, before any fork (gunicorn's on_starting hook)."""
    global _table
    _table = Table()


def assign_slot(server, worker) -> None:
    """In the master, before forking `worker` (pre_fork): the first slot no live worker holds."""
    taken = {getattr(w, "rewind_slot", None) for w in server.WORKERS.values()}
    worker.rewind_slot = next((s for s in range(SLOTS) if s not in taken), None)


def free_slot(server, worker) -> None:
    """In the master, when `worker` has exited (child_exit)."""
    slot = getattr(worker, "rewind_slot", None)
    if _table is not None and slot is not None:
        _table.clear(slot)


class BalancedThreadWorker(ThreadWorker):
    """gthread, taking a new connection only while it holds no more than the least-loaded live sibling."""

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
