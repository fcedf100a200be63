"""Builds the demo sandbox: two real targets, staging and production, to roll back without fear.

Each target gets a git repository of the demo app (repository.py), a database
built by its migrations (database.py) in the demo's PostgreSQL cluster
(postgres.py; SQLite files without the server), a GnuPG key (keys.py), two
backups (backups.py) and a running app (processes.py); the targets file
declares both (targetsfile.py). `demo.json` in the root marks a finished build (marker.py):
while it is there, building again only starts the apps that are not running.
Plain Python, no Flask.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from app.demo import keys, leftovers, marker, postgres, processes, targetsfile
from app.demo.backups import take_first_backups
from app.demo.database import build_database
from app.demo.keys import generate_key
from app.demo.repository import build_repository, write_env_file
from app.demo.target import TARGET_NAMES, DemoError, DemoTarget, OnLine
from app.targets.gpg import GpgError, GpgHome

__all__ = ["DemoError", "DemoTarget", "build_demo", "load_demo", "stop_demo"]


def build_demo(
    root: Path,
    targets_file: Path,
    *,
    reset: bool = False,
    start: bool = True,
    on_line: OnLine = print,
    use_postgres: bool = True,
    gpg_homes: Sequence[Path] = (),
) -> dict[str, DemoTarget]:
    """Build the demo targets under root and declare them in targets_file; start their apps unless start=False.

    Idempotent: when a finished demo is there and reset is False, nothing is
    rewritten (the targets file only if it went missing) and only the apps that
    are not running are started. reset stops the demo apps and rebuilds from
    scratch, on new ports. The databases live in a PostgreSQL cluster under root
    (SQLite files when use_postgres is False or the server is not installed).
    Refuses (DemoError) to replace a targets file the demo did not write. Starting again clears, and says,
    what a killed demo left: a stale postmaster.pid or pid file, the sockets of killed gpg-agents (of the
    targets' homes and of gpg_homes, the other homes Rewind used).
    """
    root = Path(root).resolve()
    targets_file = Path(targets_file).absolute()
    say = _serialised(on_line)
    try:
        targetsfile.check_replaceable(targets_file)
    except targetsfile.NotTheDemosFile as exc:
        raise DemoError(str(exc)) from None
    _check_gpg_homes(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        existing = None if reset else marker.load(root)
        if existing is not None:
            if not targets_file.exists():
                _write_targets_file(targets_file, existing)
                say(f"wrote {targets_file} (it was missing)")
            for home, who in _gpg_homes(root, gpg_homes):
                keys.clear_stale_sockets(home, who, say)
            if start:
                postgres.start(root, existing, say)
                processes.start(existing, fresh=False, say=say)
            return existing

        processes.stop_all(root, say)
        postgres.stop(root, say)
        for home, who in _gpg_homes(root, ()):
            keys.stop_agent_of(home, who, say)
        for name in (*TARGET_NAMES, postgres.FOLDER):
            _remove(root / name)
        marker.remove(root)
        started_at = datetime.now(UTC)
        demo = _plan(root, postgres.create_cluster(root, say) if use_postgres else 0)
        try:
            postgres.create_databases(root, demo)
            with ThreadPoolExecutor(max_workers=len(demo)) as pool:
                for done in [pool.submit(_build_target, t, say) for t in demo.values()]:
                    done.result()
            _write_targets_file(targets_file, demo)
            take_first_backups(demo, targets_file, say)
        except BaseException:
            postgres.stop(root, say)  # a half-built demo leaves no server behind
            raise
        marker.save(root, demo)
        say(f"built the demo in {(datetime.now(UTC) - started_at).total_seconds():.1f} s; targets in {targets_file}")
        if start:
            processes.start(demo, fresh=True, say=say)
        else:
            postgres.stop(root, say)
        return demo


def stop_demo(root: Path, on_line: OnLine | None = None, *, gpg_homes: Sequence[Path] = ()) -> list[str]:
    """Stop the demo apps, its PostgreSQL cluster and the gpg-agents of the targets' homes and of gpg_homes (the
    other homes Rewind used); the apps that ran. Says what it stopped or cleaned, and any process still running
    under root."""
    root = Path(root).resolve()
    say = _serialised(on_line or (lambda text: None))
    if not root.is_dir():
        for home, who in _gpg_homes(root, gpg_homes):
            keys.stop_agent_of(home, who, say)
        return []
    with _locked(root):
        stopped = processes.stop_all(root, say)
        postgres.stop(root, say)
        for home, who in _gpg_homes(root, gpg_homes):
            keys.stop_agent_of(home, who, say)
        for pid, cmdline in leftovers.processes_under(root):
            say(f"still running under {root}: pid {pid} ({cmdline[:120]}); `kill {pid}` stops it, if it is the demo's")
        return stopped


def load_demo(root: Path) -> dict[str, DemoTarget] | None:
    """The finished demo under root, or None."""
    return marker.load(Path(root).resolve())


def _build_target(t: DemoTarget, say: OnLine) -> None:
    for folder in (t.app_dir, t.db_path.parent, t.run_dir, t.backups_dir):
        folder.mkdir(parents=True, exist_ok=True)
    build_repository(t, say)
    write_env_file(t)
    build_database(t, say)
    generate_key(t, say)
    say(f"{t.name}: ready in {t.dir} (port {t.port})")


def _gpg_homes(root: Path, others: Sequence[Path]) -> list[tuple[Path, str]]:
    """Every GnuPG home whose agent the demo stops: each target's, then the others Rewind used; with who uses it."""
    homes = [(root / name / "gnupg", name) for name in TARGET_NAMES]
    return homes + [(Path(home), "Rewind") for home in others]


def _check_gpg_homes(root: Path) -> None:
    """Refuse a root whose GnuPG homes gpg-agent could not use, before anything is built or removed."""
    for name in TARGET_NAMES:
        try:
            GpgHome(root / name / "gnupg").check_socket_path()
        except GpgError as exc:
            raise DemoError(f"the demo cannot be built in {root}: {exc}") from None


def _free_port(taken: set[int]) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port
    raise DemoError("could not find a free loopback port for the demo apps")


def _plan(root: Path, pg_port: int = 0) -> dict[str, DemoTarget]:
    ports: set[int] = {pg_port}
    demo = {}
    for name in TARGET_NAMES:
        port = _free_port(ports)
        ports.add(port)
        demo[name] = DemoTarget(name, root / name, port, sys.executable, pg_port)
    return demo


def _write_targets_file(path: Path, demo: dict[str, DemoTarget]) -> None:
    try:
        targetsfile.write(path, demo.values())
    except targetsfile.NotTheDemosFile as exc:
        raise DemoError(str(exc)) from None


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
