"""gunicorn's worker processes share out kept-alive connections evenly (app/serving.py)."""

import os
import selectors
import signal
import socket
import threading
from pathlib import Path

import pytest

from app import serving
from tests.conftest import wait_for
from tests.jobs.conftest import start_server


def test_the_least_loaded_live_sibling_is_what_a_worker_compares_itself_with():
    table = serving.Table(slots=4)
    assert table.least_of_others(0) is None, "alone: no sibling to leave connections to"
    table.publish(0, 5)
    table.publish(1, 3)
    table.publish(2, 7)
    assert table.least_of_others(0) == 3
    assert table.least_of_others(1) == 5
    table.clear(1)
    assert table.least_of_others(0) == 7, "a worker gone is not counted"


def test_a_sibling_that_has_not_published_lately_is_not_counted(monkeypatch):
    table = serving.Table(slots=2)
    table.publish(1, 0)
    assert table.least_of_others(0) == 0
    later = serving.time.monotonic() + serving.STALE_S + 1
    monkeypatch.setattr(serving.time, "monotonic", lambda: later)
    assert table.least_of_others(0) is None, "a hung sibling must not stop the others taking connections"


def _workers(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    return inodes


def _held_by(pid: int, inodes: set[str]) -> int:
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        held += link.startswith("socket:[") and link[8:-1] in inodes
    return held


@pytest.fixture
def two_workers(tmp_path, pg_server):
    server = start_server(tmp_path / "instance", pg_server.create_database("serving"), REWIND_WORKERS="2")

    def both_serving():  # a worker starts its job runner's threads just before it starts serving
        workers = _workers(server.process.pid)
        return len(workers) == 2 and all(len(os.listdir(f"/proc/{pid}/task")) > 1 for pid in workers)

    wait_for(both_serving, timeout=30)
    yield server
    server.stop()


def test_kept_alive_connections_are_shared_evenly_between_workers(two_workers):
    connections = []
    try:
        for _ in range(20):  # one after another, as people open Rewind: each waits for its answer and stays open
            conn = socket.create_connection(("127.0.0.1", two_workers.port), timeout=10)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: rewind\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200"), "answered, and the connection kept alive"
            connections.append(conn)
        inodes = _established_inodes(two_workers.port)
        held = sorted(_held_by(pid, inodes) for pid in _workers(two_workers.process.pid))
        assert held == [10, 10], f"20 kept-alive connections split {held} between the two workers"
    finally:
        for conn in connections:
            conn.close()


def _worker(slot: int) -> serving.BalancedThreadWorker:
    """A real gunicorn worker object, not started: its main loop's one pass is what is tested."""
    from gunicorn.config import Config

    worker = serving.BalancedThreadWorker(0, os.getpid(), [], None, 30, Config(), None)
    worker.poller = selectors.DefaultSelector()
    worker.rewind_slot = slot
    return worker


def test_a_stopping_worker_is_no_place_to_leave_connections(monkeypatch):
    monkeypatch.setattr(serving, "_table", serving.Table(slots=2))
    stopping, sibling = _worker(0), _worker(1)
    stopping.nr_conns, sibling.nr_conns = 1, 3  # e.g. a websocket keeps the stopping one busy
    stopping.wait_for_and_dispatch_events(0)
    assert sibling._over_share(), "while it serves, the sibling holding more leaves new connections to it"
    stopping.alive = False  # SIGTERM: gunicorn's graceful stop
    stopping.wait_for_and_dispatch_events(0)
    assert not sibling._over_share(), "a stopping worker takes none: the sibling must take them all"


def test_a_stop_signal_sent_between_the_fork_and_the_workers_handlers_reaches_the_worker(monkeypatch):
    """Until its own handlers are in place a worker has the master's, which queue a signal nobody in the worker
    reads: a Ctrl-C then was lost and the worker served on until the master killed it at graceful_timeout."""
    from gunicorn.config import Config

    class Master:
        WORKERS: dict = {}

    monkeypatch.setattr(serving, "_table", None)  # prepare makes this process's; put back after
    serving.prepare(Master())  # the master's on_starting (its at-fork unblock stays: it only ever unblocks)
    worker = serving.BalancedThreadWorker(0, os.getpid(), [], None, 30, Config(), None)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    read_end, write_end = os.pipe()
    serving.assign_slot(Master(), worker)  # gunicorn's pre_fork, in the master
    pid = os.fork()
    if pid == 0:  # the worker, before its handlers: nothing here may raise into pytest
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # pending, not acted on by the master's handler (or the default)
            pending = signal.SIGTERM in signal.sigpending()
            worker.PIPE = os.pipe()
            for end in worker.PIPE:
                os.set_blocking(end, False)  # as gunicorn makes it, for set_wakeup_fd
            worker.method_queue.init()
            worker.init_signals()  # its handlers, then the signal: gthread's graceful stop
            os.write(write_end, b"%d %d" % (pending, not worker.alive))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == held, "the master takes its own signals again"
        with os.fdopen(read_end, "rb") as answer:
            assert answer.read() == b"1 1", "the signal waited for the worker's handler, and reached it"
    finally:
        os.waitpid(pid, 0)


def test_a_quit_signal_landing_while_a_connection_is_handed_to_the_pool_stops_the_worker():
    """A Ctrl-C landing while the main thread was inside the pool's submit() (holding the lock that shutdown()
    takes) hung the worker until the master killed it: gthread's quit shut the pool down inside the handler."""
    from gunicorn.config import Config

    worker = serving.BalancedThreadWorker(0, os.getpid(), [], None, 30, Config(), None)
    worker.tpool = worker.get_thread_pool()
    outcome: list = []

    def main_thread_inside_submit():
        with worker.tpool._shutdown_lock:  # what submit() holds when the signal's handler runs on top of it
            try:
                worker.handle_quit(signal.SIGINT, None)
            except SystemExit as exc:
                outcome.append(exc.code)

    quitting = threading.Thread(target=main_thread_inside_submit, daemon=True)
    quitting.start()
    quitting.join(5)
    assert outcome == [0], "the quit waited on the lock its own thread held"
    assert not worker.alive
    worker.release_pool()  # worker_exit, once out of the loop: the pool's threads are told to end
    assert worker.tpool._shutdown
