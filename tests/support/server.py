"""Rewind served for real: migrations, the initial admin and gunicorn, as `make run` does."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.postgres import free_port

REPO = Path(__file__).resolve().parents[2]
# Each command as `flask` runs it (FlaskGroup, FLASK_APP from the environment), one after the other.
FLASK_STEPS = (
    "from flask.cli import FlaskGroup\nfor args in %r:\n    FlaskGroup().main(list(args), standalone_mode=False)\n"
)


class RewindServer:
    def __init__(self, instance_dir: Path, database_url: str | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.instance_dir = instance_dir
        self.env = {
            **os.environ,
            "FLASK_APP": "wsgi",
            "REWIND_INSTANCE_DIR": str(instance_dir),
            "REWIND_BIND": f"127.0.0.1:{self.port}",
            **env,
        }
        if database_url:
            self.env["REWIND_DATABASE_URL"] = database_url
        self.process: subprocess.Popen | None = None
        self.log = instance_dir / "server.log"

    def flask(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", *args], cwd=REPO, env=self.env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"flask {' '.join(args)} failed: {result.stderr}"
        return result.stdout

    def flask_steps(self, *commands: tuple[str, ...]) -> None:
        """Several `flask` commands, run as the CLI runs them, in one process: each process pays the app's import."""
        result = subprocess.run(
            [sys.executable, "-c", FLASK_STEPS % (commands,)], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"flask {commands} failed: {result.stderr}"

    def start(self) -> RewindServer:
        self.spawn()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Rewind did not start; log:\n{self.log.read_text()}")

    def spawn(self, *, own_session: bool = False) -> subprocess.Popen:
        """Migrate (on SQLite: copy a folder migrated once, see _copy_prepared), then start gunicorn without waiting
        for it to serve; own_session: in a process group of its own, as a terminal runs it, so the group can be
        signalled as Ctrl-C does."""
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        # An ops database on PostgreSQL, or a folder a server ran in before (started again): the steps for real.
        if "REWIND_DATABASE_URL" in self.env or (self.instance_dir / "rewind.db").exists():
            self.flask_steps(("db", "upgrade"), ("rewind", "init-admin"))
        else:
            _copy_prepared(self.instance_dir, self.env)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=own_session,
            )
        return self.process

    def worker_pid(self) -> int:
        """The gunicorn worker (the master's only child)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, f"expected one worker, found {children}"
        return int(children[0])

    def threads(self) -> int:
        status = Path(f"/proc/{self.worker_pid()}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    def kill(self) -> None:
        """SIGKILL the master and its worker, as a crash or an OOM kill would."""
        import signal

        worker = self.worker_pid()
        os.kill(self.process.pid, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        self.process.wait()

    @property
    def admin_password(self) -> str:
        return (self.instance_dir / "initial-admin-password").read_text().strip()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_prepared: Path | None = None


def _copy_prepared(instance: Path, env: dict[str, str]) -> None:
    """What `flask db upgrade` and `flask rewind init-admin` leave in a fresh instance folder (the SQLite ops
    database, the keys, the admin's first password): made for real once per test process, then copied, since the
    two commands cost about 1.6 s of CPU for each of the suite's many servers."""
    global _prepared
    if _prepared is None:
        folder = Path(tempfile.mkdtemp(prefix="rewind-instance-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        made = RewindServer(folder)
        made.env = {**env, "REWIND_INSTANCE_DIR": str(folder)}
        made.flask_steps(("db", "upgrade"), ("rewind", "init-admin"))
        _prepared = folder
    for path in _prepared.iterdir():
        shutil.copy2(path, instance / path.name)
