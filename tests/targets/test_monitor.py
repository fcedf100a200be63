"""The health monitor keeps the newest answer: a slow probe begun earlier never replaces a later one's."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.jobs.engine import engine
from app.targets.monitor import HealthMonitor
from tests.support.targets import write_targets_file


class SlowThenBroken(BaseHTTPRequestHandler):
    """The first request is held until released, then answered healthy; every later one is a 500 at once."""

    asked = threading.Event()
    release = threading.Event()
    first = threading.Lock()

    def do_GET(self):
        if SlowThenBroken.first.acquire(blocking=False):
            SlowThenBroken.asked.set()
            SlowThenBroken.release.wait(30)
            status = 200
        else:
            status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_probe_begun_before_a_later_one_does_not_replace_its_answer(app, tmp_path):
    """The background pass's probe was on its way when the app stopped; the pass asked for after it must win."""
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowThenBroken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        write_targets_file(
            app,
            f'[targets.staging.repo]\npath = "{tmp_path / "repo"}"\n\n'
            f'[targets.staging.health]\nurl = "http://127.0.0.1:{server.server_port}/health"\n',
        )
        with app.app_context():
            monitor = HealthMonitor(app, engine(app).targets)  # not started: the two passes are this test's

        def earlier_pass():
            with app.app_context():
                monitor.probe_all()

        earlier = threading.Thread(target=earlier_pass)
        earlier.start()
        assert SlowThenBroken.asked.wait(10), "the first probe never reached the server"
        with app.app_context():
            monitor.probe_all()  # begun later, answered first: 500
        assert monitor.reading("staging").probe.status == 500
        SlowThenBroken.release.set()
        earlier.join(30)
        assert not earlier.is_alive()
        assert monitor.reading("staging").probe.status == 500, "the earlier probe's 200 replaced the newer answer"
    finally:
        SlowThenBroken.release.set()
        server.shutdown()
        server.server_close()
