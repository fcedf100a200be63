"""A target application controlled through start/stop/status commands, as a service manager would run it.

The commands are a real script (`ctl.py`) that starts the test app detached,
stops it by its pid file and says whether it runs. Its stop can be told to
fail (exit 1, saying nothing) or, once the app is down, to take the name the
swap is about to give the live database: real failures at the restore's
later steps, at the moment they matter, without reaching into Rewind.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from app.jobs.engine import current_targets
from tests.support.targets import write_targets_file

CTL = r"""
import os, signal, subprocess, sys, time
from pathlib import Path

action, state, repo, port = sys.argv[1:5]
clash = sys.argv[5:]
pid_file = Path(state) / "ctl.pid"


def running():
    try:
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/stat") as fh:
            return None if fh.read().rsplit(")", 1)[1].split()[0] == "Z" else pid
    except (OSError, ValueError):
        return None


if action == "status":
    sys.exit(0 if running() else 3)
if action == "start":
    if running():
        sys.exit(0)
    child = subprocess.Popen([sys.executable, "server.py", port], cwd=repo, start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file.write_text(str(child.pid))
    sys.exit(0)
pid = running()
if pid:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    if running():
        sys.exit("the app did not stop")
if clash and clash[0] == "sqlite":  # take the name the swap will keep the live file under
    live = Path(clash[1])
    for scratch in live.parent.glob(live.name + ".restore_*"):
        live.with_name(scratch.name.replace(".restore_", ".pre_restore_")).write_bytes(b"")
elif clash:
    import psycopg
    url, live = clash[1], clash[2]
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (live + "_restore_%",))
        names = [r[0] for r in found]
        for name in names:
            conn.execute('CREATE DATABASE "%s"' % name.replace("_restore_", "_pre_restore_"))
"""


def ctl_argv(target, action: str, *extra: str) -> list[str]:
    state = target.code.repo.parent / "run"
    where = [str(state), str(target.code.repo), str(target.code.port)]
    return [sys.executable, str(state / "ctl.py"), action, *where, *extra]


def use_commands(
    app, target, *, stop: list[str] | None = None, start: list[str] | None = None, status: list[str] | None = None
) -> None:
    """Stop the managed app, then run it through ctl.py's start/stop/status (each replaced when given)."""
    with app.app_context():
        current_targets().open(target.name).process().stop()
    state = target.code.repo.parent / "run"
    state.mkdir(exist_ok=True)
    (state / "ctl.py").write_text(CTL)
    section = (
        f"[targets.{target.name}.process]\n"
        f"start = {_toml(start or ctl_argv(target, 'start'))}\n"
        f"stop = {_toml(stop or ctl_argv(target, 'stop'))}\n"
        f"status = {_toml(status or ctl_argv(target, 'status'))}\n"
        f'cwd = "{target.code.repo}"\n\n'
    )
    text = re.sub(
        rf"\[targets\.{target.name}\.process\]\n.*?(?=\[targets\.{target.name}\.health\])",
        lambda _: section,
        target.toml(),
        flags=re.S,
    )
    write_targets_file(app, text)
    with app.app_context():
        found = current_targets().open(target.name)
        found.process().start()
        assert found.health().wait_healthy().ok, "the app did not come up under its commands"


def stop_clashing(target) -> list[str]:
    """A stop command that, once the app is down, takes the name the swap would keep the live database under."""
    if target.engine == "sqlite":
        return ctl_argv(target, "stop", "sqlite", target.url.removeprefix("sqlite:///"))
    server, live = target.url.rsplit("/", 1)
    return ctl_argv(target, "stop", "postgresql", server + "/postgres", live)


def then_hold(target, argv: list[str], reached: Path) -> list[str]:
    """A command that runs argv, then says so (creates `reached`) and holds on (60 s) until it is cancelled."""
    return [sys.executable, _hold_script(target), "run", str(reached), *argv]


def held_once(target, argv: list[str], armed: Path, reached: Path) -> list[str]:
    """A command that, while `armed` exists, removes it, creates `reached` and holds on (60 s); else runs argv."""
    return [sys.executable, _hold_script(target), str(armed), str(reached), *argv]


def _hold_script(target) -> str:
    state = target.code.repo.parent / "run"
    state.mkdir(exist_ok=True)
    (state / "hold.py").write_text(HOLD)
    return str(state / "hold.py")


HOLD = """
import subprocess, sys, time
from pathlib import Path

armed, reached, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
if armed == "run":
    subprocess.run(argv, check=True)
elif Path(armed).exists():
    Path(armed).unlink()
else:
    sys.exit(subprocess.run(argv).returncode)
reached.touch()
time.sleep(60)
"""


def back_to_managed(app, target) -> None:
    """Stop the command-run app and put the managed process back, for the fixture's teardown."""
    import subprocess

    subprocess.run(ctl_argv(target, "stop"), check=True, timeout=60)
    write_targets_file(app, target.toml())


def _toml(argv: list[str]) -> str:
    return "[" + ", ".join(f'"{a}"' for a in argv) + "]"
