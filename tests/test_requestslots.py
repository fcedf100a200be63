"""RequestSlots: one request's Python at a time per worker, without letting a slow one stall the rest."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from app.requestslots import RequestSlots


class Recorder:
    """A WSGI app that counts how many calls are inside it at once; `gate`, when given, holds each call until set."""

    def __init__(self, hold_s: float = 0.05, gate: threading.Event | None = None) -> None:
        self.hold_s, self.gate = hold_s, gate
        self.inside = self.most = self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.inside += 1
            self.calls += 1
            self.most = max(self.most, self.inside)
        try:
            if environ.get("PATH_INFO") == "/fail":
                raise RuntimeError("the view failed")
            if self.gate is not None and environ.get("PATH_INFO") == "/slow":
                self.gate.wait(10)
            else:
                time.sleep(self.hold_s)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        finally:
            with self.lock:
                self.inside -= 1


def call(app, path: str = "/", **environ) -> list[bytes]:
    return list(app({"PATH_INFO": path, **environ}, lambda status, headers: None))


def at_once(app, paths: list[str]) -> list[float]:
    """Each path requested from its own thread, all started together; returns when each finished."""
    done: list[float] = [0.0] * len(paths)

    def one(i: int, path: str) -> None:
        call(app, path)
        done[i] = time.monotonic()

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return done


@pytest.mark.parametrize("slots", [1, 2])
def test_no_more_requests_run_at_once_than_there_are_slots(slots):
    inner = Recorder()
    at_once(RequestSlots(inner, slots, wait_s=10), ["/"] * 6)
    assert inner.calls == 6 and inner.most == slots


@contextmanager
def slow_request_inside(wait_s: float):
    """Slots with one slot, held by a request that stays inside the app until the block ends."""
    gate = threading.Event()
    inner = Recorder(gate=gate)
    app = RequestSlots(inner, 1, wait_s=wait_s)
    slow = threading.Thread(target=call, args=(app, "/slow"))
    slow.start()
    try:
        while inner.inside == 0:
            time.sleep(0.01)
        yield app, slow
    finally:
        gate.set()
        slow.join(10)


def test_a_request_waiting_longer_than_the_bound_runs_beside_a_slow_one():
    with slow_request_inside(wait_s=0.2) as (app, slow):
        started = time.monotonic()
        assert call(app) == [b"ok"]  # the slow one still holds the only slot
        waited = time.monotonic() - started
        assert slow.is_alive() and 0.2 <= waited < 5


def test_a_websocket_never_waits_for_a_slot():
    with slow_request_inside(wait_s=10) as (app, slow):
        started = time.monotonic()
        call(app, "/jobs/1/ws", HTTP_UPGRADE="WebSocket")
        assert time.monotonic() - started < 5 and slow.is_alive()


def test_a_view_that_raises_gives_its_slot_back():
    inner = Recorder(hold_s=0)
    app = RequestSlots(inner, 1, wait_s=10)
    with pytest.raises(RuntimeError, match="the view failed"):
        call(app, "/fail")
    started = time.monotonic()
    assert call(app) == [b"ok"] and time.monotonic() - started < 5  # not after the 10-s bound


def test_no_slot_at_all_is_refused_with_the_way_to_turn_it_off():
    with pytest.raises(ValueError, match="leave the middleware out"):
        RequestSlots(Recorder(), 0)


class SlowBody:
    """A request body whose bytes have not all arrived: read() blocks until `arrived` is set."""

    def __init__(self, body: bytes) -> None:
        self.body, self.arrived, self.reading = body, threading.Event(), threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.reading.set()
        self.arrived.wait(10)
        body, self.body = (self.body, b"") if size < 0 else (self.body[:size], self.body[size:])
        return body


def test_a_request_whose_body_is_still_arriving_holds_no_slot():
    """gunicorn calls the app once the headers are in; the body is read from the socket as the view asks for it
    (a form, the CSRF check). A client sending it slowly, or never, must not keep the slot meanwhile."""
    seen: list[bytes] = []

    def form_view(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        seen.append(environ["wsgi.input"].read(length) if length else b"")
        start_response("200 OK", [])
        return [b"ok"]

    app = RequestSlots(form_view, 1, wait_s=10)
    body = SlowBody(b"name=x&csrf_token=y")
    post = threading.Thread(
        target=call, args=(app, "/login"), kwargs={"CONTENT_LENGTH": str(len(body.body)), "wsgi.input": body}
    )
    post.start()
    try:
        assert body.reading.wait(5)
        started = time.monotonic()
        assert call(app, "/healthz") == [b"ok"]
        assert time.monotonic() - started < 5  # not after the 10-s bound
    finally:
        body.arrived.set()
        post.join(10)
    assert seen == [b"", b"name=x&csrf_token=y"]  # the view still gets the whole body


def test_a_body_over_the_limit_is_left_to_the_app():
    """Flask answers 413 for a body over MAX_CONTENT_LENGTH without reading it; it is not read here either."""
    body = SlowBody(b"x" * 11)
    body.arrived.set()
    seen = []

    def view(environ, start_response):
        seen.append(environ["wsgi.input"])
        start_response("413 Content Too Large", [])
        return [b""]

    call(RequestSlots(view, 1, body_limit=10), "/", CONTENT_LENGTH="11", **{"wsgi.input": body})
    assert seen == [body] and not body.reading.is_set()


def test_a_slot_given_back_goes_to_the_request_waiting_longest_not_a_newcomer():
    """A semaphore wakes its longest waiter, but a request arriving before that waiter has run takes the slot
    itself, and the waiter goes back to the end of the line (and, overtaken again, past its 0.25 s)."""
    order: list[str] = []
    waiter: threading.Thread

    def view(environ, start_response):
        order.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/first":
            waiter.start()
            time.sleep(0.2)  # the waiter is in line by now
        start_response("200 OK", [])
        return [b"ok"]

    app = RequestSlots(view, 1, wait_s=10)
    waiter = threading.Thread(target=call, args=(app, "/waiter"))
    call(app, "/first")  # gives the slot back with /waiter in line...
    call(app, "/newcomer")  # ...and comes straight back, as a keep-alive connection's next request can
    waiter.join(10)
    assert order == ["/first", "/waiter", "/newcomer"]


def test_a_request_that_gave_up_waiting_leaves_the_line():
    """After one request waited past the bound and ran beside the slow one, the slot is free again once the
    slow one ends: the next requests go straight in."""
    with slow_request_inside(wait_s=1) as (app, _slow):
        assert call(app) == [b"ok"]
    started = time.monotonic()
    assert call(app) == [b"ok"] and call(app) == [b"ok"]
    assert time.monotonic() - started < 1  # each takes 0.05 s inside; not a wait for the bound


def test_a_slot_handed_over_as_the_wait_runs_out_is_kept_not_lost():
    app = RequestSlots(Recorder(hold_s=0), 1, wait_s=0.3)
    assert app._take()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(app._take()))
    waiter.start()
    time.sleep(0.1)  # in line
    with app._lock:  # the waiter's wait runs out, and it waits here to leave the line...
        time.sleep(0.4)
        turn = app._line.popleft()  # ...when the slot is handed to it, as _give_back does
        turn.given = True
        turn.wake.release()
    waiter.join(5)
    assert result == [True]  # it holds the slot: it runs, and gives it back after
    app._give_back()
    assert app._free == 1 and not app._line
