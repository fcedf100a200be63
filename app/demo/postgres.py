"""The demo's PostgreSQL cluster: under `<root>/postgres`, loopback only, started and stopped with the demo.

One cluster holds a database per demo target (named after it). Where the
server programs are missing, or the cluster cannot be made, the demo falls
back to SQLite files and says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import psycopg
from psycopg import sql

from app.demo import leftovers
from app.demo.target import PG_USER, DemoError, DemoTarget, OnLine
from app.targets import procfs
from app.targets.pgcluster import Cluster, PostgresUnavailable, free_port

FOLDER = "postgres"


def cluster(root: Path, port: int, bin_dir: Path | None = None) -> Cluster:
    return Cluster(root / FOLDER, port, user=PG_USER, socket_dir=None, bin_dir=bin_dir)


def create_cluster(root: Path, say: OnLine, bin_dir: Path | None = None) -> int:
    """initdb and start a new cluster on a free loopback port; its port, or 0 (SQLite) with a notice."""
    try:
        pg = cluster(root, free_port(), bin_dir)
        pg.init()
        pg.start()
    except PostgresUnavailable as exc:
        with contextlib.suppress(PostgresUnavailable):
            cluster(root, 0, bin_dir).stop("immediate")
        shutil.rmtree(root / FOLDER, ignore_errors=True)
        how = f" ({exc.fix} for PostgreSQL)" if exc.fix else ""
        say(f"note: the demo runs on SQLite files, not PostgreSQL: {exc.message}{how}")
        return 0
    say(f"PostgreSQL {pg.bin.parent.name} cluster in {pg.root}, on 127.0.0.1:{pg.port} (loopback only)")
    return pg.port


def create_databases(root: Path, demo: dict[str, DemoTarget]) -> None:
    ports = {t.pg_port for t in demo.values() if t.pg_port}
    for port in ports:
        with psycopg.connect(cluster(root, port).url(), autocommit=True, connect_timeout=10) as conn:
            for t in demo.values():
                if t.pg_port == port:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(t.name)))


def _port_of(demo: dict[str, DemoTarget]) -> int:
    return next((t.pg_port for t in demo.values() if t.pg_port), 0)


def start(root: Path, demo: dict[str, DemoTarget], say: OnLine) -> None:
    """Start the cluster of an existing demo if it is not running (the apps need it before they start)."""
    port = _port_of(demo)
    if not port:
        return
    pg = cluster(root, port)
    if not pg.initialised():
        raise DemoError(
            f"the demo's PostgreSQL cluster is missing from {pg.data}: rebuild with `flask rewind demo --reset`"
        )
    clear_stale_pid(root, say)
    if pg.running():
        say(f"PostgreSQL: already running on 127.0.0.1:{port}")
        return
    try:
        pg.start()
    except PostgresUnavailable as exc:
        raise DemoError(
            f"the demo's PostgreSQL cluster did not start: {exc}; if port {port} is taken, rebuild on new ports "
            "with `flask rewind demo --reset`"
        ) from None
    say(f"PostgreSQL: started on 127.0.0.1:{port}")


def stop(root: Path, say: OnLine) -> bool:
    """Stop the cluster under root if it runs (pg_ctl needs no port for that); whether it was running."""
    if not (root / FOLDER / "data").is_dir():
        return False
    clear_stale_pid(root, say)
    pg = cluster(root, 0)
    if not pg.running():
        return False
    try:
        pg.stop()
    except PostgresUnavailable as exc:
        raise DemoError(f"could not stop the demo's PostgreSQL cluster: {exc}") from None
    say(f"PostgreSQL: stopped the demo cluster in {pg.root}")
    return True


def clear_stale_pid(root: Path, say: OnLine) -> None:
    """Deal with the postmaster.pid of a server that was killed (SIGKILL, a crash), saying what was found.

    When its pid no longer runs, the file is left for the server's next start, which removes it together with the
    killed server's shared memory. When the pid is a zombie nobody reaped, or now belongs to another process,
    pg_ctl would take it for the server and PostgreSQL would refuse to start: the file is removed, unless processes
    of the killed server still run in its data folder (then it is kept, and they are named).
    """
    data = root / FOLDER / "data"
    pid_file = data / "postmaster.pid"
    try:
        first = pid_file.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return
    pid = int(first) if first.isdigit() else 0
    found = procfs.stat(pid) if pid > 0 else None
    zombie = found is not None and found.state == "Z"
    try:
        if pid > 0 and found is None:
            raise FileNotFoundError(pid)
        server = found is not None and not zombie and Path(procfs.cwd(pid)) == data.resolve()
    except FileNotFoundError:
        say(
            f"PostgreSQL: the demo's server was killed (its postmaster.pid names pid {pid}, which no longer runs); "
            "starting it clears what it left"
        )
        return
    except PermissionError:
        # Another user's process, whose details are hidden (root without CAP_SYS_PTRACE, as in a container):
        # the server runs as its data folder's owner (PostgreSQL insists), so a process of that user may be it.
        server = _owned_like(pid, data)
    except OSError:
        server = False
    if server:
        return
    # The file guards the folder: PostgreSQL will not start beside the backends a killed server left running.
    left = [found for found, _ in leftovers.processes_under(data)]
    if left:
        pids = " ".join(str(found) for found in left)
        say(
            f"PostgreSQL: kept {pid_file}: the killed server's processes still run in {data} "
            f"(pid{'s' if len(left) > 1 else ''} {', '.join(str(found) for found in left)}); stop them (`kill {pids}`) "
            "before the demo's server starts again"
        )
        return
    pid_file.unlink(missing_ok=True)
    if pid <= 0:
        why = f"it held {first[:20]!r}, not a pid"
    elif zombie:
        why = f"the killed server's pid {pid} is a zombie nobody reaped"
    else:
        why = f"the killed server's pid {pid} is now another process"
    say(f"PostgreSQL: removed the stale {pid_file}: {why}")


def _owned_like(pid: int, data: Path) -> bool:
    """Whether the process runs as the owner of the data folder; True when that cannot be told (left alone)."""
    try:
        return os.stat(f"/proc/{pid}").st_uid == data.stat().st_uid
    except OSError:
        return True
