"""Ports for the servers the tests start, each worker in its own block below the kernel's ephemeral range.

A port the kernel hands out for `bind(0)` is ephemeral: once the test's server
has stopped, the kernel may give the same number to a server another worker
starts, and a probe meant to find nothing listening meets that server instead
(a stopped target then reads "connection reset", not "connection refused").
Ports from a worker's own block are never handed out by the kernel, and a worker
walks its block in order, so no two live servers of one session share a port.
"""

from __future__ import annotations

import itertools
import os
import socket

FIRST = 20_000
BLOCK = 1_500  # eight blocks end at 31 999, below Linux's ephemeral range (32 768 by default)
BLOCKS = 8


def _block() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, … ; "" outside xdist (benchmarks, one process)
    return int(worker[2:]) % (BLOCKS - 1) if worker.startswith("gw") else BLOCKS - 1


_candidates = itertools.cycle(range(FIRST + _block() * BLOCK, FIRST + (_block() + 1) * BLOCK))


def free_port() -> int:
    """The next port of this worker's block that nothing holds (a bind without SO_REUSEADDR also skips TIME_WAIT)."""
    for _ in range(BLOCK):
        port = next(_candidates)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in this worker's block of {BLOCK} from {FIRST}: is a test leaking servers?")
