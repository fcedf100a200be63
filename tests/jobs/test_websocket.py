"""The live stream against a real gunicorn server and real websocket clients."""

import base64
import contextlib
import json
import os
import re
import socket
import sqlite3
import struct
import threading
import time

import pytest
import websocket

from tests.conftest import wait_for
from tests.support.http import Session

EVENT = re.compile(r'data-seq="(\d+)"')
LINE = re.compile(r'<div class="line line-\w+" data-seq="(\d+)"[^>]*>([^<]*)</div>')
FINAL = re.compile(r'id="job-state"[^>]*data-state="(succeeded|failed|cancelled|interrupted)"')


def start_job(session: Session, **form) -> int:
    status, headers, body = session.post("/jobs", form)
    assert status == 302, body[:500]
    return int(headers["Location"].rsplit("/", 1)[1])


class Reader:
    """Assembles what a browser would show: the last snapshot, then appended lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.live_seqs: list[int] = []
        self.snapshots = 0
        self.final = None

    def take(self, message: str) -> None:
        if 'id="log" class="log"' in message:  # a snapshot replaces the whole log
            self.snapshots += 1
            self.lines = [text for _, text in LINE.findall(message)]
            self.snapshot_seq = max(int(s) for s in EVENT.findall(message))
        else:
            for seq in sorted({int(s) for s in EVENT.findall(message)}):
                self.live_seqs.append(seq)
            self.lines += [text for _, text in LINE.findall(message)]
        if match := FINAL.search(message):
            self.final = match.group(1)


def read_until(ws, reader: Reader, *, lines: int | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and reader.final is None:
        if lines is not None and len(reader.lines) >= lines:
            return
        message = ws.recv()
        if not message:
            return
        reader.take(message)


def test_every_line_arrives_once_in_order_across_a_reconnect(live, admin):
    job_id = start_job(admin, runbook="test.count", lines="300", delay="0.01")
    reader = Reader()
    ws = admin.websocket(f"/jobs/{job_id}/ws")
    read_until(ws, reader, lines=80)
    assert reader.snapshots == 1
    first_seqs = list(reader.live_seqs)
    assert first_seqs == sorted(set(first_seqs)), "events arrive in order, each once"
    ws.sock.shutdown(socket.SHUT_RDWR)  # the network drops: no close frame
    ws.sock.close()

    ws = admin.websocket(f"/jobs/{job_id}/ws")
    read_until(ws, reader)
    assert reader.final == "succeeded"
    assert reader.snapshots == 2
    assert reader.lines == [f"line {i}" for i in range(1, 301)]
    after = [s for s in reader.live_seqs if s > reader.snapshot_seq]
    assert after == list(range(reader.snapshot_seq + 1, reader.snapshot_seq + 1 + len(after)))
    assert ws.recv() == "", "the server closes the socket once the job has ended"


def test_finished_job_sends_its_state_and_closes(live, admin):
    job_id = start_job(admin, runbook="test.count", lines="3")
    wait_for(lambda: FINAL.search(admin.get(f"/jobs/{job_id}")[2]))  # the job's state, not its step's
    ws = admin.websocket(f"/jobs/{job_id}/ws")
    reader = Reader()
    reader.take(ws.recv())
    assert reader.final == "succeeded" and reader.lines == ["line 1", "line 2", "line 3"]
    assert ws.recv() == ""


def test_a_browser_that_never_answers_the_close_is_hung_up_on_and_frees_its_threads(live, admin):
    """simple-websocket's reader thread waited for the answer for ever (a sleeping laptop's, say)."""
    job_id = start_job(admin, runbook="test.count", lines="3")
    wait_for(lambda: FINAL.search(admin.get(f"/jobs/{job_id}")[2]))  # the job's state, not its step's
    started = live.threads()
    silent = [admin.websocket(f"/jobs/{job_id}/ws") for _ in range(10)]
    for ws in silent:
        assert 'data-state="succeeded"' in ws.recv()
    for ws in silent:  # the close frame, then nothing until the server ends the connection
        ws.sock.settimeout(10)
        frames = b""
        while chunk := ws.sock.recv(4096):
            frames += chunk
        assert frames[:1] == b"\x88", "a close frame came first"
    levels = wait_for(lambda: (n := live.threads()) <= started + 10 + 2 and n, timeout=10)
    assert levels, "at most one idle pool thread per handler is left, no reader thread"


def test_closing_on_a_browser_that_stopped_reading_never_blocks():
    """The close frame's send used to wait for room that a stopped reader never makes: for ever."""
    from simple_websocket import Server

    from app.jobs.views import _close

    server_end, browser_end = socket.socketpair()
    handshake = {
        "HTTP_HOST": "rewind.test",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": base64.b64encode(os.urandom(16)).decode(),
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    }
    ws = Server({"gunicorn.socket": server_end, **handshake})
    # Filled with per-call non-blocking sends: making the socket itself non-blocking would make the reader
    # thread's first recv fail at once, when it came after, and that thread closes the socket as it ends.
    with contextlib.suppress(BlockingIOError):
        while True:  # everything the browser has not read: no room left
            server_end.send(b"x" * 65536, socket.MSG_DONTWAIT)
    closing = threading.Thread(target=_close, args=(ws,), daemon=True)
    try:
        closing.start()
        closing.join(15)
        assert not closing.is_alive(), "the close waited for a reader that never reads"
        ws.thread.join(15)
        assert not ws.thread.is_alive(), "the reader thread ended with the connection"
    finally:
        browser_end.close()
        server_end.close()


def test_anonymous_and_cross_site_handshakes_are_refused(live, admin):
    job_id = start_job(admin, runbook="test.count", lines="3")
    anonymous = Session(live.url)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        anonymous.websocket(f"/jobs/{job_id}/ws")
    assert refused.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as foreign:
        admin.websocket(f"/jobs/{job_id}/ws", origin="http://evil.example")
    assert foreign.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as missing:
        admin.websocket(f"/jobs/{job_id}/ws", origin="")
    assert missing.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as unknown:
        admin.websocket("/jobs/999/ws")
    assert unknown.value.status_code == 404
    assert "auth.denied" in admin.get("/audit?action=auth.denied")[2]


def closing_of(ws) -> tuple[int, str]:
    """The close frame's code and reason, after whatever the job sent first."""
    ws.settimeout(20)
    opcode, data = ws.recv_data(control_frame=True)
    while opcode != websocket.ABNF.OPCODE_CLOSE:  # the job's own events may come first
        opcode, data = ws.recv_data(control_frame=True)
    return struct.unpack("!H", data[:2])[0], data[2:].decode()


def test_a_watcher_whose_session_ends_is_closed_saying_why_and_an_expiry_is_audited(live, admin):
    """Sign-out ends the session on the server; a job page left open in another tab stopped streaming only when
    the job ended (a long restore: its whole log, to someone signed out, or disabled). Idle expiry and the absolute
    lifetime were checked only on requests: such a page streamed on past them too. Three sign-ins, one ended each
    way: a sign-out, 13 hours without a request, 13 hours since sign-in."""
    job_id = start_job(admin, runbook="test.sleep", target="staging", seconds="120")
    (idle, idle_id), (old, old_id) = signed_in(live), signed_in(live)
    pages = {who: who.websocket(f"/jobs/{job_id}/ws") for who in (admin, idle, old)}
    for ws in pages.values():
        assert 'id="job-state"' in ws.recv()
    assert admin.post("/logout")[0] == 302
    with sqlite3.connect(live.instance_dir / "rewind.db") as conn:
        conn.execute(
            "UPDATE auth_session SET last_seen_at = datetime(last_seen_at, '-13 hours') WHERE id = ?", (idle_id,)
        )
        conn.execute("UPDATE auth_session SET created_at = datetime(created_at, '-13 hours') WHERE id = ?", (old_id,))
    # 1008: the page says why and does not reconnect
    assert closing_of(pages[admin]) == (1008, "you were signed out; reload the page to sign in again")
    assert closing_of(pages[idle]) == (
        1008,
        "you were signed out after 30 minutes without activity; reload the page to sign in again",
    )
    assert closing_of(pages[old]) == (
        1008,
        "you were signed out: a session lasts at most 12 hours; reload the page to sign in again",
    )
    with sqlite3.connect(live.instance_dir / "rewind.db") as conn:
        ended = dict(conn.execute("SELECT id, end_reason FROM auth_session WHERE id IN (?, ?)", (idle_id, old_id)))
        audited = [
            json.loads(d)["reason"]
            for (d,) in conn.execute("SELECT details FROM audit_event WHERE action = 'auth.expired' ORDER BY id")
        ]
    assert ended == {idle_id: "idle", old_id: "lifetime"}
    assert sorted(audited) == ["idle", "lifetime"]  # once each
    cancel_anew(live, job_id)


def signed_in(live) -> tuple[Session, int]:
    """A new sign-in as admin, and the id of its session row (the newest: made by this sign-in)."""
    who = Session(live.url)
    who.login("admin", live.admin_password)
    with sqlite3.connect(live.instance_dir / "rewind.db") as conn:
        return who, conn.execute("SELECT max(id) FROM auth_session").fetchone()[0]


def cancel_anew(live, job_id: int) -> None:
    """Cancel the job from a new sign-in (the test's own session is over): the server then stops at once."""
    other = Session(live.url)
    other.login("admin", live.admin_password)
    assert other.post(f"/jobs/{job_id}/cancel")[0] == 303


def test_watchers_that_leave_free_their_threads(live, admin):
    """Each watcher holds a handler thread and a reader thread; both must end when it leaves.

    gunicorn's gthread pool keeps an idle handler thread for reuse, so the first
    round grows the pool once; every later round must come back to that level.
    """
    job_id = start_job(admin, runbook="test.sleep", target="staging", seconds="120")
    started = live.threads()
    levels = []
    for _ in range(5):
        sockets = []
        for _ in range(200):
            ws = admin.websocket(f"/jobs/{job_id}/ws")
            assert 'id="job-state"' in ws.recv()
            sockets.append(ws)
        peak = live.threads()
        assert peak >= started + 200
        for i, ws in enumerate(sockets):
            if i % 2:
                ws.close()  # a polite goodbye
            else:
                ws.sock.shutdown(socket.SHUT_RDWR)  # a vanished browser
                ws.sock.close()
        levels.append(wait_for(lambda peak=peak: (n := live.threads()) <= peak - 200 and n, timeout=10))
    assert levels[0] <= started + 200 + 5, "one idle pool thread per peak watcher, plus the fan-out thread"
    assert levels == [levels[0]] * 5, f"threads leaked between rounds: {levels}"
    admin.post(f"/jobs/{job_id}/cancel")
