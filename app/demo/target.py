"""One demo target: its folders, port and interpreter, and the adapters Rewind would make for it.

Each target is a folder under the demo root (Rewind passes `<instance>/demo`):

    <root>/<name>/app/       git repository of the demo app (main; a bad-code and a migration branch), .env
    <root>/<name>/data/      app.db, built by the app's own Alembic migrations, with sample rows (SQLite only)
    <root>/postgres/         the demo's PostgreSQL cluster, when the server is installed: database <name>
    <root>/<name>/gnupg/     GnuPG home with a key (no passphrase) for the target's backups
    <root>/<name>/backups/   where its encrypted backups go
    <root>/<name>/run/       pid file and log of the app, which runs as a Rewind-managed process
                             (staging on Flask's development server, production under gunicorn,
                             restarted by a graceful reload)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.targets.environment import inherited_env
from app.targets.gpg import GpgHome
from app.targets.health import HealthCheck
from app.targets.process import ManagedProcess

TARGET_NAMES = ("staging", "production")
HEALTH_WAIT_S = 20.0
PG_USER = "rewind_demo"

OnLine = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo could not be built or started; the message says what to do."""


@dataclass(frozen=True)
class DemoTarget:
    name: str
    dir: Path
    port: int
    python: str = sys.executable
    pg_port: int = 0  # the demo's PostgreSQL cluster (app/demo/postgres.py); 0: a SQLite file

    @property
    def protected(self) -> bool:
        return self.name == "production"

    @property
    def app_dir(self) -> Path:
        return self.dir / "app"

    @property
    def env_file(self) -> Path:
        return self.app_dir / ".env"

    @property
    def migrations_dir(self) -> Path:
        return self.app_dir / "migrations"

    @property
    def db_path(self) -> Path:
        return self.dir / "data" / "app.db"

    @property
    def database_url(self) -> str:
        if self.pg_port:
            return f"postgresql://{PG_USER}@127.0.0.1:{self.pg_port}/{self.name}"
        return f"sqlite:///{self.db_path}"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "app.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "app.log"

    @property
    def backups_dir(self) -> Path:
        return self.dir / "backups"

    @property
    def gpg_home(self) -> Path:
        return self.dir / "gnupg"

    @property
    def recipient(self) -> str:
        return f"rewind-demo-{self.name}@demo.invalid"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.base_url}/health"

    @property
    def reload_signal(self) -> str | None:
        """Production runs as real applications do, under gunicorn, and restarts by a graceful reload."""
        return "SIGHUP" if self.name == "production" else None

    def command(self) -> list[str]:
        if self.name == "production":
            server = ["-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"]
            # No control socket: gunicorn's default one is shared by every gunicorn of the user (Rewind's too).
            return [self.python, *server, "--graceful-timeout", "10", "--no-control-socket", "wsgi:app"]
        return [
            self.python,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-reload",
        ]

    def process_env(self) -> dict[str, str]:
        """What the targets file gives the app on top of PATH, HOME and LANG (the same values as its .env)."""
        # The app reads its .env itself; FLASK_SKIP_DOTENV keeps `flask` from hinting at python-dotenv.
        return {"DATABASE_URL": self.database_url, "PORT": str(self.port), "FLASK_SKIP_DOTENV": "1"}

    def app_env(self) -> dict[str, str]:
        """The whole environment the app's commands run with: the shared allow-list and the app's own values."""
        env = inherited_env()
        env.setdefault("PATH", os.defpath)
        return env | self.process_env()

    def process(self) -> ManagedProcess:
        return ManagedProcess(
            self.command(),
            self.app_dir,
            self.pid_file,
            self.log_file,
            env=self.app_env(),
            reload_signal=self.reload_signal,
        )

    def health(self, timeout_s: float = HEALTH_WAIT_S) -> HealthCheck:
        return HealthCheck(self.health_url, expect_status=200, expect_json={"status": "healthy"}, timeout_s=timeout_s)

    def gpg(self) -> GpgHome:
        return GpgHome(self.gpg_home)
