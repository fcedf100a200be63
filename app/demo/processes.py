"""Starting and stopping the demo apps, which run as Rewind-managed processes."""

from __future__ import annotations

import socket
from pathlib import Path

from app.demo import marker
from app.demo.target import TARGET_NAMES, DemoError, DemoTarget, OnLine
from app.targets.health import Verdict
from app.targets.process import ProcessError


def start(demo: dict[str, DemoTarget], *, fresh: bool, say: OnLine) -> None:
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
        if status.stale_pid_file:  # the app was killed, or its machine restarted
            t.pid_file.unlink(missing_ok=True)
            say(f"{t.name}: {status.note}; removed the stale pid file")
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
        waiting.append((t, process.watch()))
    for t, watch in waiting:
        # watched: an app that exits at start is said at once, with its log, not after the whole wait
        verdict: Verdict = t.health().wait_healthy(process=watch)
        if verdict.ok:
            say(f"{t.name}: healthy ({verdict.reason})")
            continue
        message = f"{t.name}: {t.health_url} is not healthy: {verdict.reason}"
        if fresh:
            raise DemoError(f"{message}; the app's log ({t.log_file}) ends with:{_log_tail(t)}")
        say(
            f"{message} — a rollback drill may be under way (roll it back in Rewind), "
            f"see {t.log_file}, or rebuild with `flask rewind demo --reset`"
        )


def stop_all(root: Path, say: OnLine) -> list[str]:
    """Stop every demo app under root; the names of the apps that were running."""
    stopped = []
    for name in TARGET_NAMES:
        t = marker.on_disk(root, name)
        if t.pid_file.exists():
            process = t.process()
            status = process.status()
            was_running = bool(status.running)
            if status.stale_pid_file:
                say(f"{name}: {status.note}; removed the stale pid file")
            try:
                process.stop()
            except ProcessError as exc:
                raise DemoError(f"{name}: could not stop the demo app: {exc}") from None
            if was_running:
                stopped.append(name)
                say(f"{name}: stopped the demo app")
    return stopped


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(t: DemoTarget, lines: int = 8) -> str:
    kept = t.process().log_tail(lines)
    return "\n  ".join(["", *kept]) if kept else ""
