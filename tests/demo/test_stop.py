"""`make run` stopped leaves nothing running, and starts again after a stop or after a hard kill of everything.

Served for real, as `make run` serves it (tests/support/server.py): `flask rewind demo`, then gunicorn with
REWIND_DEMO_STOP_ON_EXIT=1, stopped by SIGINT as Ctrl-C stops it. The demo's apps, its PostgreSQL and the
gpg-agents of every GnuPG home Rewind used (each target's, and Rewind's own for env file versions) are real.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.demo import load_demo, postgres, stop_demo
from app.demo.cli import stop_in
from app.envconfig import keys as envconfig_keys
from app.targets import pgcluster
from app.targets.gpg import GpgHome
from tests.conftest import wait_for
from tests.demo.test_build import processes_under
from tests.support.privileges import processes_opaque
from tests.support.server import RewindServer

NAMES = ("staging", "production")


@pytest.fixture
def instance():
    # Short (gpg-agent's sockets live in the homes), and open to the postgres OS user when run as root.
    base = Path(tempfile.mkdtemp(prefix="rw-"))
    base.chmod(0o711)
    yield base / "instance"
    stop_in(base / "instance", on_line=lambda text: None)
    shutil.rmtree(base, ignore_errors=True)


def gpg_homes(instance: Path) -> list[GpgHome]:
    return [GpgHome(instance / "demo" / name / "gnupg") for name in NAMES] + [envconfig_keys.gpg_home(instance)]


def use_every_gpg_home(instance: Path) -> None:
    """What a backup, a restore and an env file version do: each home gets its gpg-agent."""
    for home in gpg_homes(instance)[:2]:
        assert home.keys(secret=True)
    assert envconfig_keys.unseal(instance, envconfig_keys.seal(instance, b"A=1\n")) == b"A=1\n"
    for home in gpg_homes(instance):
        assert (home.socket_dir() / "S.gpg-agent").is_socket()
    assert sum("gpg-agent" in line for line in processes_under(instance)) == 3


def left_behind(instance: Path) -> list[str]:
    """Files that name a process: pid files, PostgreSQL's postmaster.pid, and sockets."""
    found = [str(p) for p in instance.rglob("*") if p.is_socket() or p.name in ("app.pid", "postmaster.pid")]
    for home in gpg_homes(instance):
        if home.socket_dir() != home.home and home.socket_dir().is_dir():  # under /run/user/<uid>
            found += [str(p) for p in home.socket_dir().iterdir() if p.is_socket()]
    return sorted(found)


def interrupt(server: RewindServer) -> str:
    """Ctrl-C: SIGINT to gunicorn, which stops its workers and then the demo; its log."""
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=90) == 0
    return server.log.read_text()


def kill_everything(server: RewindServer, instance: Path) -> None:
    """A hard kill: SIGKILL to Rewind and to every process of the demo, which can clean up nothing."""
    server.kill()
    for line in processes_under(instance):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    wait_for(lambda: processes_under(instance) == [], timeout=30)


def assert_serving(instance: Path) -> None:
    demo = load_demo(instance / "demo")
    assert demo is not None and all(t.pg_port for t in demo.values())
    for t in demo.values():
        assert t.process().status().running
        assert t.health(timeout_s=0).probe().ok  # its /health reads its database


def test_make_run_stopped_leaves_nothing_and_starts_again_after_a_stop_and_after_a_hard_kill(instance):
    server = RewindServer(instance, REWIND_DEMO_STOP_ON_EXIT="1")
    instance.mkdir(parents=True)
    built = server.flask("rewind", "demo", "--skip-if-configured")
    assert "built the demo" in built
    server.start()
    assert_serving(instance)
    use_every_gpg_home(instance)

    log = interrupt(server)
    assert processes_under(instance) == [], log
    assert left_behind(instance) == []
    for name in NAMES:
        assert f"{name}: stopped the demo app" in log
        assert f"{name}: stopped the gpg-agent of {instance / 'demo' / name / 'gnupg'}" in log
    assert f"Rewind: stopped the gpg-agent of {instance / 'gpg'}" in log
    assert "PostgreSQL: stopped the demo cluster" in log

    # Again after a stop: the sandbox is found and started; there was nothing to clean.
    again = server.flask("rewind", "demo", "--skip-if-configured")
    assert "built the demo" not in again and "PostgreSQL: started" in again
    assert "removed" not in again and "killed" not in again, again
    server.start()
    assert_serving(instance)
    use_every_gpg_home(instance)

    kill_everything(server, instance)
    stale = left_behind(instance)
    assert any(p.endswith("postmaster.pid") for p in stale) and sum(p.endswith("app.pid") for p in stale) == 2
    assert sum(Path(p).name == "S.gpg-agent" for p in stale) == 3

    # Again after the hard kill: what the killed processes left is cleared, and said.
    after = server.flask("rewind", "demo", "--skip-if-configured")
    assert "PostgreSQL: started" in after, after
    assert "PostgreSQL: the demo's server was killed" in after or "PostgreSQL: removed the stale" in after
    for name in NAMES:
        assert f"{name}: pid file names pid " in after and "removed the stale pid file" in after
        assert f"{name}: removed the sockets a killed gpg-agent left in " in after
        assert f"{name}: healthy" in after
    assert "Rewind: removed the sockets a killed gpg-agent left in " in after
    server.start()
    assert_serving(instance)

    log = interrupt(server)
    assert processes_under(instance) == [], log
    assert left_behind(instance) == []


def test_a_process_still_running_under_the_demo_is_named_after_a_stop(tmp_path):
    """Not the demo's to kill (a shell left in its folder, a tool started by hand): named, with how to stop it."""
    root = tmp_path / "demo"
    (root / "staging" / "app").mkdir(parents=True)
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=root / "staging" / "app")
    try:
        lines: list[str] = []
        assert stop_demo(root, lines.append) == []
        assert lines == [
            f"still running under {root}: pid {stray.pid} ({sys.executable} -c import time; time.sleep(60)); "
            f"`kill {stray.pid}` stops it, if it is the demo's"
        ]
        assert stray.poll() is None, "named, not killed"
    finally:
        stray.kill()
        stray.wait()
    lines.clear()
    assert stop_demo(root, lines.append) == [] and lines == []


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "demo" / "postgres" / "data"
    data.mkdir(parents=True)
    return data


def postmaster_pid(data: Path, pid: int | str) -> Path:
    path = data / "postmaster.pid"
    path.write_text(f"{pid}\n{data}\n1700000000\n5432\n\n127.0.0.1\n")
    return path


def test_a_postmaster_pid_naming_a_gone_process_is_left_for_the_server_to_clear(data_dir):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: the pid names nothing now
    path = postmaster_pid(data_dir, gone.pid)
    lines: list[str] = []
    postgres.clear_stale_pid(data_dir.parent.parent, lines.append)
    assert path.exists(), "PostgreSQL's next start removes it, and the killed server's shared memory with it"
    assert lines == [
        f"PostgreSQL: the demo's server was killed (its postmaster.pid names pid {gone.pid}, which no longer runs); "
        "starting it clears what it left"
    ]


def test_a_postmaster_pid_naming_a_zombie_or_another_process_is_removed(data_dir):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", timeout=10)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # alive, not the server
    try:
        for pid, why in (
            (zombie.pid, f"the killed server's pid {zombie.pid} is a zombie nobody reaped"),
            (other.pid, f"the killed server's pid {other.pid} is now another process"),
            ("garbage", "it held 'garbage', not a pid"),
        ):
            path = postmaster_pid(data_dir, pid)
            lines: list[str] = []
            postgres.clear_stale_pid(data_dir.parent.parent, lines.append)
            assert not path.exists(), why
            assert lines == [f"PostgreSQL: removed the stale {path}: {why}"]
    finally:
        other.kill()
        other.wait()
        zombie.wait()


def test_a_stale_postmaster_pid_is_kept_while_the_killed_servers_processes_still_run_in_its_folder(data_dir):
    """The file guards the data folder: PostgreSQL refuses to start beside backends a killed postmaster left (they
    still hold its shared memory). Removed, a new server would start beside them; kept, and they are named."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", timeout=10)
    backend = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=data_dir)
    try:
        path = postmaster_pid(data_dir, zombie.pid)
        lines: list[str] = []
        postgres.clear_stale_pid(data_dir.parent.parent, lines.append)
        assert path.exists(), lines
        assert lines == [
            f"PostgreSQL: kept {path}: the killed server's processes still run in {data_dir} (pid {backend.pid}); "
            f"stop them (`kill {backend.pid}`) before the demo's server starts again"
        ]
    finally:
        backend.kill()
        backend.wait()
        zombie.wait()


def test_the_postmaster_pid_of_a_running_server_is_left_alone(data_dir):
    # The server's working directory is its data folder: a process started there stands in for it.
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=data_dir)
    try:
        path = postmaster_pid(data_dir, server.pid)
        lines: list[str] = []
        postgres.clear_stale_pid(data_dir.parent.parent, lines.append)
        assert path.exists() and lines == []
    finally:
        server.kill()
        server.wait()


def test_the_postmaster_pid_of_a_running_server_whose_details_are_hidden_is_left_alone():
    """Run as root, the demo's server is the postgres OS user's, and root in a container (no CAP_SYS_PTRACE) may
    not read its working directory: a server Rewind cannot inspect is not taken for a stranger's process."""
    base = Path(tempfile.mkdtemp(prefix="rw-"))
    base.chmod(0o711)  # the server's user reaches its data folder
    data = base / "demo" / "postgres" / "data"
    data.mkdir(parents=True)
    server_argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    if os.geteuid() == 0:  # as the demo runs it: the data folder and the server are the postgres user's
        owner = pwd.getpwnam(pgcluster.SERVER_USER)
        os.chown(data, owner.pw_uid, owner.pw_gid)
        server_argv = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups", *server_argv]
    server = subprocess.Popen(server_argv, cwd=data)
    try:
        # running there as the folder's owner (/proc shows root's while setpriv changes user, until its exec)
        wait_for(lambda: os.stat(f"/proc/{server.pid}").st_uid == data.stat().st_uid, timeout=10)
        assert Path(os.readlink(f"/proc/{server.pid}/cwd")) == data
        path = postmaster_pid(data, server.pid)
        lines: list[str] = []
        with processes_opaque():
            postgres.clear_stale_pid(data.parent.parent, lines.append)
        assert path.exists(), f"the running server's postmaster.pid was removed: {lines}"
        assert lines == []
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(base, ignore_errors=True)
