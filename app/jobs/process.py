"""Running a command for a job step: argv only, lines streamed, timeout and cancel honoured.

Never a shell: every argument is its own list item, so nothing from a request
can become shell syntax. The child gets its own process group, so stopping it
stops whatever it started too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TERMINATE_GRACE_S = 3.0


class CommandCancelled(Exception):
    pass


class CommandTimedOut(Exception):
    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"{argv[0]} did not finish within {timeout:g} s and was stopped")
        self.timeout = timeout


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _pump(stream, name: str, on_line: Callable[[str, str], None]) -> None:
    for raw in iter(stream.readline, b""):
        on_line(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    stream.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the group, then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(
    argv: Sequence[str],
    *,
    on_line: Callable[[str, str], None],
    should_cancel: Callable[[], bool] = lambda: False,
    on_tick: Callable[[], None] = lambda: None,
    timeout: float | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    poll_s: float = 0.1,
) -> CommandResult:
    """Run argv to completion, calling on_line(stream, text) for each output line."""
    if isinstance(argv, str) or not argv:
        raise TypeError("argv must be a non-empty list of arguments, never a shell string")
    argv = tuple(str(a) for a in argv)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, "out", on_line), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "err", on_line), daemon=True),
    ]
    for reader in readers:
        reader.start()
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc, stdin), daemon=True).start()
    try:
        while True:
            try:
                proc.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            on_tick()
            if should_cancel():
                _stop(proc)
                raise CommandCancelled()
            if timeout is not None and time.monotonic() - started > timeout:
                _stop(proc)
                raise CommandTimedOut(argv, timeout)
    finally:
        if proc.poll() is None:  # an error in a callback must not leave the child running
            _stop(proc)
        for reader in readers:
            reader.join(timeout=5)
        on_tick()
    return CommandResult(argv, proc.returncode, time.monotonic() - started)


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass
