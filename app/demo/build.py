"""Builds the demo sandbox: two real targets, staging and production, to roll back without fear.

Each target is a folder under the demo root (Rewind passes `<instance>/demo`):

    <root>/<name>/app/       git repository of the demo app (branch main, a bad branch for drills), .env
    <root>/<name>/data/      app.db, built by the app's own Alembic migrations, with sample rows
    <root>/<name>/gnupg/     GnuPG home with a key (no passphrase) for the target's backups
    <root>/<name>/backups/   where its encrypted backups go
    <root>/<name>/run/       pid file and log of the app, which runs as a Rewind-managed process

and the targets file declares both. `demo.json` in the root marks a finished
build: while it is there, building again only starts the apps that are not
running. Plain Python, no Flask; every command is an argv list, never a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.demo import appsource, targetsfile
from app.demo.sample import insert_sample_rows
from app.targets.environment import inherited_env
from app.targets.health import HealthCheck, Probe
from app.targets.process import ManagedProcess, ProcessError

TARGET_NAMES = ("staging", "production")
MARKER = "demo.json"
MARKER_FORMAT = 1
AUTHOR_NAME = "Demo Developer"
AUTHOR_EMAIL = "dev@demo.invalid"
HEALTH_WAIT_S = 20.0
COMMAND_TIMEOUT_S = 60.0

OnLine = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo could not be built or started; the message says what to do."""


@dataclass(frozen=True)
class DemoTarget:
    """One demo target's folders, port and interpreter, and the adapters Rewind would make for it."""

    name: str
    dir: Path
    port: int
    python: str = sys.executable

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

    def command(self) -> list[str]:
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

    def process(self) -> ManagedProcess:
        env = inherited_env() | self.process_env()
        return ManagedProcess(self.command(), self.app_dir, self.pid_file, self.log_file, env=env)

    def health(self, timeout_s: float = HEALTH_WAIT_S) -> HealthCheck:
        return HealthCheck(self.health_url, expect_status=200, expect_json={"status": "healthy"}, timeout_s=timeout_s)


# --- entry points ----------------------------------------------------------------------------------


def build_demo(
    root: Path, targets_file: Path, *, reset: bool = False, start: bool = True, on_line: OnLine = print
) -> dict[str, DemoTarget]:
    """Build the demo targets under root and declare them in targets_file; start their apps unless start=False.

    Idempotent: when a finished demo is there and reset is False, nothing is
    rewritten (the targets file only if it went missing) and only the apps that
    are not running are started. reset stops the demo apps and rebuilds from
    scratch, on new ports. Refuses (DemoError) to replace a targets file the
    demo did not write.
    """
    root = Path(root).resolve()
    targets_file = Path(targets_file).absolute()
    say = _serialised(on_line)
    try:
        targetsfile.check_replaceable(targets_file)
    except targetsfile.NotTheDemosFile as exc:
        raise DemoError(str(exc)) from None
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        existing = None if reset else _load(root)
        if existing is not None:
            if not targets_file.exists():
                _write_targets_file(targets_file, existing)
                say(f"wrote {targets_file} (it was missing)")
            if start:
                _start(existing, fresh=False, say=say)
            return existing

        _stop_all(root, say)
        for name in TARGET_NAMES:
            _remove(root / name)
        (root / MARKER).unlink(missing_ok=True)
        demo = _plan(root)
        started_at = datetime.now(UTC)
        with ThreadPoolExecutor(max_workers=len(demo)) as pool:
            for done in [pool.submit(_build_target, t, say) for t in demo.values()]:
                done.result()
        _write_targets_file(targets_file, demo)
        _save(root, demo)
        say(f"built the demo in {(datetime.now(UTC) - started_at).total_seconds():.1f} s; targets in {targets_file}")
        if start:
            _start(demo, fresh=True, say=say)
        return demo


def stop_demo(root: Path, on_line: OnLine | None = None) -> list[str]:
    """Stop the demo apps (and the GnuPG agents of their homes); returns the names of the apps that were running."""
    root = Path(root).resolve()
    say = _serialised(on_line or (lambda text: None))
    if not root.is_dir():
        return []
    with _locked(root):
        return _stop_all(root, say)


def load_demo(root: Path) -> dict[str, DemoTarget] | None:
    """The finished demo under root, or None."""
    return _load(Path(root).resolve())


# --- planning, marker ------------------------------------------------------------------------------


def _free_port(taken: set[int]) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port
    raise DemoError("could not find a free loopback port for the demo apps")


def _plan(root: Path) -> dict[str, DemoTarget]:
    ports: set[int] = set()
    demo = {}
    for name in TARGET_NAMES:
        port = _free_port(ports)
        ports.add(port)
        demo[name] = DemoTarget(name, root / name, port, sys.executable)
    return demo


def _save(root: Path, demo: dict[str, DemoTarget]) -> None:
    data = {
        "format": MARKER_FORMAT,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "targets": {t.name: {"port": t.port, "python": t.python} for t in demo.values()},
    }
    tmp = root / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, root / MARKER)


def _load(root: Path) -> dict[str, DemoTarget] | None:
    """The demo recorded in the marker, if the marker is sound and every target's repository is there."""
    try:
        data = json.loads((root / MARKER).read_text())
        if data.get("format") != MARKER_FORMAT:
            return None
        demo = {}
        for name in TARGET_NAMES:
            entry = data["targets"][name]
            port, python = entry["port"], entry["python"]
            if not (isinstance(port, int) and 0 < port < 65536 and isinstance(python, str) and python):
                return None
            demo[name] = DemoTarget(name, root / name, port, python)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all((t.app_dir / ".git").is_dir() and t.db_path.is_file() for t in demo.values()):
        return None
    return demo


def _on_disk(root: Path, name: str) -> DemoTarget:
    """A target as far as can be told without the marker (a half-built demo): enough to stop its app."""
    recorded = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        recorded = json.loads((root / MARKER).read_text())["targets"][name]
    target = DemoTarget(name, root / name, 0, sys.executable)
    if isinstance(recorded, dict):
        with contextlib.suppress(TypeError, ValueError):
            target = replace(target, port=int(recorded["port"]), python=str(recorded["python"]))
    return target


def _write_targets_file(path: Path, demo: dict[str, DemoTarget]) -> None:
    try:
        targetsfile.write(path, demo.values())
    except targetsfile.NotTheDemosFile as exc:
        raise DemoError(str(exc)) from None


# --- building one target ---------------------------------------------------------------------------


def _build_target(t: DemoTarget, say: OnLine) -> None:
    for folder in (t.app_dir, t.db_path.parent, t.run_dir, t.backups_dir):
        folder.mkdir(parents=True, exist_ok=True)
    t.gpg_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    t.gpg_home.chmod(0o700)
    _build_repo(t, say)
    _write_env_file(t)
    _build_database(t, say)
    _generate_key(t, say)
    say(f"{t.name}: ready in {t.dir} (port {t.port})")


def _git_env(when: datetime | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        LC_ALL="C",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,  # the operator's hooks, signing or templates must not shape the demo
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
    )
    if when is not None:
        stamp = f"@{int(when.timestamp())} +0000"
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return env


def _commit_times(count: int, now: datetime) -> list[datetime]:
    """One commit a working day or so over the last week and a half, the newest a few hours ago."""
    newest = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    hours = ((9, 12), (14, 47), (11, 3), (16, 21), (10, 38), (15, 5), (13, 56))
    times = []
    for i in range(count - 1):
        hour, minute = hours[i % len(hours)]
        times.append((newest - timedelta(days=(count - 1 - i) * 1.5)).replace(hour=hour, minute=minute))
    return sorted([*times, newest])


def _write_files(app_dir: Path, files: dict[str, str], created: datetime) -> None:
    stamp = created.strftime("%Y-%m-%d %H:%M:%S.%f")
    for relative, content in files.items():
        path = app_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content.replace("@CREATED@", stamp))


def _commit(t: DemoTarget, commit: appsource.DemoCommit, when: datetime) -> None:
    _write_files(t.app_dir, commit.files, when - timedelta(minutes=20))
    env = _git_env(when)
    _run(["git", "-C", str(t.app_dir), "add", "--all"], env=env, what=f"{t.name}: git add")
    _run(
        ["git", "-C", str(t.app_dir), "commit", "--quiet", "--no-verify", "-m", commit.message],
        env=env,
        what=f"{t.name}: git commit",
    )


def _build_repo(t: DemoTarget, say: OnLine) -> None:
    git = ["git", "-C", str(t.app_dir)]
    env = _git_env()
    _run([*git, "init", "--quiet", "--initial-branch=main"], env=env, what=f"{t.name}: git init")
    _run([*git, "config", "user.name", AUTHOR_NAME], env=env, what=f"{t.name}: git config")
    _run([*git, "config", "user.email", AUTHOR_EMAIL], env=env, what=f"{t.name}: git config")
    now = datetime.now(UTC)
    history = appsource.HISTORY
    times = _commit_times(len(history), now)
    for commit, when in zip(history, times, strict=True):
        _commit(t, commit, when)
    _run([*git, "checkout", "--quiet", "-b", appsource.BAD_BRANCH], env=env, what=f"{t.name}: git checkout")
    _commit(t, appsource.BAD_COMMIT, now - timedelta(hours=1))
    _run([*git, "checkout", "--quiet", "main"], env=env, what=f"{t.name}: git checkout")
    say(f"{t.name}: git repository with {len(history)} commits on main, and {appsource.BAD_BRANCH}")


def _write_env_file(t: DemoTarget) -> None:
    text = (
        f"# Settings of the demo app ({t.name}), written by `flask rewind demo`. Not in git.\n"
        f"APP_ENV={t.name}\n"
        f"DATABASE_URL={t.database_url}\n"
        f"PORT={t.port}\n"
        "FEATURE_X=on\n"
        f"SECRET_KEY=demo-not-a-secret-{secrets.token_hex(12)}\n"
    )
    fd = os.open(t.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _app_env(t: DemoTarget) -> dict[str, str]:
    env = inherited_env()
    env.setdefault("PATH", os.defpath)
    return env | t.process_env()


def _build_database(t: DemoTarget, say: OnLine) -> None:
    ini = t.migrations_dir / "alembic.ini"
    output = _run(
        [t.python, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        env=_app_env(t),
        cwd=t.app_dir,
        what=f"{t.name}: alembic upgrade head",
    )
    applied = sum("Running upgrade" in line for line in output.splitlines())
    counts = insert_sample_rows(t.db_path, seed=f"{t.name}:{t.port}")
    rows = ", ".join(f"{n} {table}" for table, n in counts.items())
    say(f"{t.name}: database {t.db_path} migrated to head ({applied} revisions) with {rows}")


def _generate_key(t: DemoTarget, say: OnLine) -> None:
    home = str(t.gpg_home)
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    try:
        _run(
            [
                "gpg",
                "--batch",
                "--homedir",
                home,
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "--quick-generate-key",
                f"Rewind demo {t.name} <{t.recipient}>",
                "future-default",  # ed25519 + cv25519: generated in milliseconds, unlike RSA
                "default",
                "never",
            ],
            env=env,
            what=f"{t.name}: gpg --quick-generate-key",
        )
    finally:
        _kill_gpg_agent(t.gpg_home)
    say(f"{t.name}: GnuPG key for {t.recipient} in {t.gpg_home}")


def _kill_gpg_agent(home: Path) -> None:
    if not home.is_dir():
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=15,
            check=False,
        )


# --- starting and stopping -------------------------------------------------------------------------


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(t: DemoTarget, lines: int = 8) -> str:
    try:
        kept = t.log_file.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  ".join(["", *kept]) if kept else ""


def _start(demo: dict[str, DemoTarget], *, fresh: bool, say: OnLine) -> None:
    """Start each app that is not running, then wait for the started ones to answer healthy.

    On a fresh build an app that does not get healthy is an error. When an
    existing demo is started again it is only reported: the repository may hold
    a drill in progress (a merged bad commit) that Rewind is there to roll back.
    """
    waiting = []
    for t in demo.values():
        process = t.process()
        status = process.status()
        if status.running:
            say(f"{t.name}: already running (pid {status.pid}) on {t.base_url}")
            continue
        if _port_busy(t.port):
            message = (
                f"{t.name}: port {t.port} is taken by another program, so the demo app cannot start; "
                "stop that program, or rebuild the demo on new ports with `flask rewind demo --reset`"
            )
            if fresh:
                raise DemoError(message)
            say(message)
            continue
        try:
            process.start()
        except ProcessError as exc:
            raise DemoError(f"{t.name}: the demo app did not start: {exc}") from None
        say(f"{t.name}: started on {t.base_url} (log {t.log_file})")
        waiting.append(t)
    for t in waiting:
        probe: Probe = t.health().wait_healthy()
        if probe.ok:
            say(f"{t.name}: healthy ({probe.reason})")
            continue
        message = f"{t.name}: {t.health_url} is not healthy after {HEALTH_WAIT_S:g} s: {probe.reason}"
        if fresh:
            raise DemoError(f"{message}; the app's log ({t.log_file}) ends with:{_log_tail(t)}")
        say(
            f"{message} — a rollback drill may be under way (roll it back in Rewind), "
            f"see {t.log_file}, or rebuild with `flask rewind demo --reset`"
        )


def _stop_all(root: Path, say: OnLine) -> list[str]:
    stopped = []
    for name in TARGET_NAMES:
        t = _on_disk(root, name)
        if t.pid_file.exists():
            process = t.process()
            was_running = bool(process.status().running)
            try:
                process.stop()
            except ProcessError as exc:
                raise DemoError(f"{name}: could not stop the demo app: {exc}") from None
            if was_running:
                stopped.append(name)
                say(f"{name}: stopped the demo app")
        _kill_gpg_agent(t.gpg_home)
    return stopped


# --- helpers ---------------------------------------------------------------------------------------


def _serialised(on_line: OnLine) -> OnLine:
    """on_line, one call at a time: the two targets are built in parallel."""
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            on_line(text)

    return say


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One build or stop at a time per demo root, across processes."""
    fd = os.open(root / ".demo.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _run(argv: Sequence[str], *, env: dict[str, str], what: str, cwd: Path | None = None) -> str:
    """Run a command to completion; DemoError with its last output lines when it fails. Returns its output."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        package = {"git": "git", "gpg": "gnupg", "gpgconf": "gnupg"}.get(argv[0], argv[0])
        raise DemoError(f"{what}: {argv[0]} is not installed (on Debian: apt-get install {package})") from None
    except subprocess.TimeoutExpired:
        raise DemoError(f"{what}: did not finish within {COMMAND_TIMEOUT_S:g} s") from None
    output = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0:
        tail = "\n  ".join(output.strip().splitlines()[-8:])
        raise DemoError(f"{what} failed (exit {done.returncode}):\n  {tail}")
    return output
