"""Real application processes for supervision tests: a tiny HTTP server, and a start script that execs it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

PY = sys.executable

# server.py PORT [STATUS]: answers every GET with STATUS (200 by default); a failing answer carries a traceback.
SERVER = """
import http.server, sys
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(sys.argv[2]) if len(sys.argv) > 2 else 200
        body = b'{"status": "ok"}' if status == 200 else b"Traceback: ModuleNotFoundError: No module named 'redis'"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Answer)
print("serving on", sys.argv[1], flush=True)
server.serve_forever()
"""


def exec_script(folder: Path, *app_args: str) -> list[str]:
    """A start script as many apps have: some work first, then `exec` the server, which takes over its pid."""
    (folder / "server.py").write_text(SERVER)
    script = folder / "start.sh"
    script.write_text(
        f'#!/bin/sh\necho "migrations applied"\nexec {shlex.quote(PY)} {shlex.quote(str(folder / "server.py"))} "$@"\n'
    )
    script.chmod(0o755)
    return [str(script), *app_args]


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def running(pid: int) -> bool:
    """Alive, not a zombie waiting for whoever adopted it to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
