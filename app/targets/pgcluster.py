"""A PostgreSQL cluster Rewind runs itself: initdb + pg_ctl in a folder, on a loopback port.

For the demo sandbox (and the test session's throwaway server). Debian keeps
the server programs in /usr/lib/postgresql/<version>/bin, off PATH. PostgreSQL
refuses to run as root, so as root every server program runs as the
`postgres` OS user (through runuser), and the folder is handed to it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from app.targets.command import CommandTimedOut, run_command, said_nothing, status_words
from app.targets.environment import inherited_env
from app.targets.errors import TargetError

SERVER_USER = "postgres"
COMMAND_TIMEOUT_S = 120.0


class PostgresUnavailable(TargetError):
    """The PostgreSQL server programs are missing, or the cluster could not be made or started."""


def find_bin_dir() -> Path:
    """The newest Debian install's bin folder (or initdb's folder on PATH); PostgresUnavailable otherwise."""
    installs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _major_of(p), reverse=True)
    for candidate in installs:
        if os.access(os.path.join(candidate, "initdb"), os.X_OK):
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresUnavailable(
        "no initdb found: the PostgreSQL server is not installed", fix="apt-get install postgresql"
    )


def _major_of(path: str) -> int:
    try:
        return int(path.split("/")[-2])
    except ValueError:
        return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """One cluster: its data under `root/data`, its log `root/log`, listening on 127.0.0.1:port only.

    `socket_dir` None: no Unix socket at all (TCP on loopback only), which also
    spares a long root the 107-byte socket path limit.
    """

    def __init__(
        self,
        root: Path,
        port: int,
        *,
        user: str = "rewind",
        socket_dir: Path | None = None,
        settings: Sequence[str] = (),
        bin_dir: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = port
        self.user = user
        self.socket_dir = socket_dir
        self.settings = tuple(settings)
        self.bin = bin_dir or find_bin_dir()
        self.as_server_user = os.geteuid() == 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def _run(self, *argv: str) -> str:
        if not os.access(argv[0], os.X_OK):  # said before runuser would hide it behind its own error
            raise PostgresUnavailable(
                f"{Path(argv[0]).name} is not installed (no {argv[0]})", fix="apt-get install postgresql"
            )
        cmd = [*argv]
        if self.as_server_user:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        env = inherited_env() | {"LC_ALL": "C"}
        env.setdefault("PATH", os.defpath)
        try:
            result = run_command(cmd, timeout=COMMAND_TIMEOUT_S, env=env, cwd=self.root, capture=True)
        except FileNotFoundError:
            raise PostgresUnavailable(f"{cmd[0]} is not installed", fix="apt-get install util-linux") from None
        except CommandTimedOut:
            raise PostgresUnavailable(f"{Path(argv[0]).name} did not finish in {COMMAND_TIMEOUT_S:g} s") from None
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()
        if not result.ok:
            name = Path(argv[0]).name
            tool = f"{name} {argv[-1]}" if name == "pg_ctl" else name  # pg_ctl's action is its last word
            words = f": {' / '.join(said[-4:])}" if said else f" and {said_nothing(cmd)}"
            raise PostgresUnavailable(
                f"{tool} failed ({status_words(result.returncode)}){words}",
                fix=f"see {self.log}" if self.log.exists() else "",
            )
        return result.stdout

    def prepare(self) -> None:
        """Make the folder, owned by the server user when root; PostgresUnavailable if that user cannot reach it."""
        if self.as_server_user:
            blocked = [p for p in self.root.parents if p.exists() and not _others_may_enter(p)]
            if blocked:
                raise PostgresUnavailable(
                    f"the {SERVER_USER} OS user cannot reach {self.root}: {blocked[0]} is closed to other users",
                    fix=f"chmod o+x {blocked[0]}, or put the instance folder elsewhere",
                )
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o750 if self.as_server_user else 0o700)
        if self.as_server_user:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)

    def init(self) -> None:
        """initdb, the superuser named `user`, trusted on loopback only (no socket unless socket_dir)."""
        self.prepare()
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        hba = self.data / "pg_hba.conf"
        lines = ["host all all 127.0.0.1/32 trust", "host all all ::1/128 trust"]
        if self.socket_dir is not None:
            lines.insert(0, "local all all trust")
        hba.write_text("# written by Rewind: loopback only\n" + "\n".join(lines) + "\n")

    def start(self) -> None:
        sockets = str(self.socket_dir) if self.socket_dir is not None else "''"
        options = " ".join(
            [f"-p {self.port}", f"-c unix_socket_directories={sockets}", "-c listen_addresses=127.0.0.1"]
            + [f"-c {setting}" for setting in self.settings]
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def running(self) -> bool:
        """The server of this data folder runs (pg_ctl status), whoever started it."""
        if not self.initialised():
            return False
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status")
        except PostgresUnavailable:
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


def _others_may_enter(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o001)
    except OSError:
        return False
