"""Job websockets: origin checks and the caps that keep threads for ordinary requests, on a real server."""

import struct

import pytest
import websocket

from tests.conftest import wait_for
from tests.jobs.conftest import start_server
from tests.support.http import Session

CAPS = {
    "REWIND_WS_PER_SESSION": "2",
    "REWIND_WS_PER_USER": "3",
    "REWIND_THREADS": "10",
    "REWIND_THREAD_RESERVE": "4",  # at most 6 sockets, 4 threads left for pages
}


def start_job(session: Session) -> int:
    status, headers, body = session.post("/jobs", {"runbook": "test.sleep", "target": "staging", "seconds": "120"})
    assert status == 302, body[:300]
    return int(headers["Location"].rsplit("/", 1)[1])


def opened(session: Session, job_id: int) -> websocket.WebSocket:
    ws = session.websocket(f"/jobs/{job_id}/ws")
    assert 'id="job-state"' in ws.recv(), "a watcher gets its snapshot"
    return ws


def refusal(session: Session, job_id: int) -> tuple[int, str]:
    """The handshake succeeds, then the server closes at once with a code and a reason."""
    ws = session.websocket(f"/jobs/{job_id}/ws")
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE, f"expected a close frame, got {data[:200]!r}"
    ws.close()
    return struct.unpack("!H", data[:2])[0], data[2:].decode()


def signed_in(server, name: str, password: str) -> Session:
    session = Session(server.url)
    session.login(name, password)
    return session


def new_user(server, name: str) -> str:
    out = server.flask("rewind", "users", "create", name, "--role", "viewer")
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("password: "))


@pytest.fixture
def capped(tmp_path):
    server = start_server(tmp_path / "instance", **CAPS)
    yield server
    server.stop()


def test_caps_per_session_per_user_and_per_process_keep_pages_answering(capped):
    admin = signed_in(capped, "admin", capped.admin_password)
    job_id = start_job(admin)
    sockets = [opened(admin, job_id), opened(admin, job_id)]
    code, reason = refusal(admin, job_id)
    assert code == 1008 and "this browser session (at most 2)" in reason

    other_tab = signed_in(capped, "admin", capped.admin_password)  # a second sign-in of the same person
    sockets.append(opened(other_tab, job_id))
    code, reason = refusal(other_tab, job_id)
    assert code == 1008 and "for your account (at most 3)" in reason

    for name in ("v1", "v2"):
        viewer = signed_in(capped, name, new_user(capped, name))
        sockets += [opened(viewer, job_id) for _ in range(2 if name == "v1" else 1)]
    assert len(sockets) == 6
    code, reason = refusal(viewer, job_id)
    assert code == 1008 and "as many jobs as it can" in reason

    # six threads are held by watchers; the reserve still answers people and load balancers
    assert Session(capped.url).get("/healthz")[0] == 200
    assert Session(capped.url).get("/login")[0] == 200
    assert admin.get(f"/jobs/{job_id}")[0] == 200

    sockets.pop(0).close()  # a tab closes: its slot comes back
    sockets.append(wait_for(lambda: _try_open(admin, job_id), timeout=10))
    for ws in sockets:
        ws.close()
    admin.post(f"/jobs/{job_id}/cancel")


def _try_open(session: Session, job_id: int):
    ws = session.websocket(f"/jobs/{job_id}/ws")
    opcode, _ = ws.recv_data(control_frame=True)
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        ws.close()
        return None
    return ws


# Origin header as sent -> the handshake's answer (SELF: the server's own URL).
ORIGIN_CASES = [
    ("SELF", 101),
    ("http://evil.example", 403),
    ("", 403),  # no Origin at all: not a browser on this site
    ("null", 403),
    ("SELF.evil.example", 403),
    ("https://127.0.0.1:1", 403),
    ("file://", 403),
]


def test_websocket_origin_matrix(capped):
    admin = signed_in(capped, "admin", capped.admin_password)
    job_id = start_job(admin)
    answers = {}
    for origin, _ in ORIGIN_CASES:
        sent = origin.replace("SELF", capped.url)
        try:
            admin.websocket(f"/jobs/{job_id}/ws", origin=sent).close()
            answers[origin] = 101
        except websocket.WebSocketBadStatusException as refused:
            answers[origin] = refused.status_code
    admin.post(f"/jobs/{job_id}/cancel")
    assert answers == dict(ORIGIN_CASES)
