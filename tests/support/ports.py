"""Ports for the servers the tests start, each worker in its own block below the kernel's ephemeral range.

A port the kernel hands out for `bind(0)` is ephemeral: once the test's server
has stopped, the kernel may give the same number to a server another worker
starts, and a probe meant to find nothing listening meets that server instead
(a stopped target then reads "connection reset", not "connection refused").
Ports from a worker's own block are never handed out by the kernel, and a worker
walks its block in order, from a random place in it (another test session on the
machine, e.g. a single file run meanwhile, starts elsewhere), so no two live
servers of one session share a port.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

FIRST, END = 20_000, 32_000  # below Linux's ephemeral range (32 768 by default)


def _block() -> range:
    """This process's ports: one block per xdist worker, and one for a process outside xdist (a benchmark)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") else count
    size = (END - FIRST) // (count + 1)
    return range(FIRST + index * size, FIRST + (index + 1) * size)


_BLOCK = _block()
_start = random.randrange(len(_BLOCK))
_candidates = itertools.cycle([*_BLOCK[_start:], *_BLOCK[:_start]])


def free_port() -> int:
    """The next port of this worker's block that nothing holds (a bind without SO_REUSEADDR also skips TIME_WAIT)."""
    for _ in range(len(_BLOCK)):
        port = next(_candidates)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(
        f"no free port in this worker's block {_BLOCK.start}-{_BLOCK.stop - 1}: is a test leaking servers?"
    )
