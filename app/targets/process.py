"""Starting, stopping and restarting a target application's process.

Two ways to do it, behind one small protocol so a runbook never cares which:

- CommandControl runs the commands the targets file names (systemctl,
  supervisorctl, docker compose …): the service manager owns the process.
- ManagedProcess is for hosts without one: Rewind starts the application
  itself, detached in its own session, and keeps a pid file so any Rewind
  process (web worker, `flask rewind worker`, a restarted Rewind) can find it.

Plain Python, no Flask. Commands are argv lists, never a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from app.targets import procfs, sockets
from app.targets.ansi import strip_ansi
from app.targets.command import CommandTimedOut, NullSink, Sink, Tee, printed, run_command
from app.targets.errors import TargetError

TAIL_LINES = 20
LOG_TAIL_LINES = 40
KILL_WAIT_S = 5.0
RELOAD_TIMEOUT_S = 60.0  # old workers finishing their requests after a reload signal
POLL_S = 0.05
START_MARK = "Rewind starts:"  # the line Rewind writes to a managed application's log before it starts it
RELOAD_MARK = "Rewind reloads pid"  # … and before it signals it to reload
LOG_SCAN_BYTES = 1 << 20  # how far back from its end the application's log is searched for Rewind's last mark
FIRST_POLL_S = 0.002  # a stopped app usually exits within milliseconds: the downtime should not wait out POLL_S


class ProcessError(TargetError):
    """A start, stop or restart did not happen; carries what ran, what it printed and what to try."""

    def __init__(
        self,
        message: str,
        *,
        action: str,
        argv: Sequence[str] | None = None,
        returncode: int | None = None,
        output_tail: Sequence[str] = (),
        pid: int | None = None,
        fix: str = "",
    ) -> None:
        self.action = action
        self.argv = tuple(argv) if argv is not None else None
        self.returncode = returncode
        self.output_tail = tuple(strip_ansi(line) for line in output_tail)
        self.pid = pid
        self.fix = fix
        super().__init__(message, fix=fix)

    def __str__(self) -> str:
        text = self.message
        if self.output_tail:
            text += "\nlast output:\n  " + "\n  ".join(self.output_tail)
        if self.fix:
            text += f"\nfix: {self.fix}"
        return text


class NotConfigured(ProcessError):
    """The targets file names no command for this action."""


class AlreadyRunning(ProcessError):
    """start() found the application already running; starting a second copy would fight over its port."""


@dataclass(frozen=True)
class ProcessStatus:
    """What is known about the application's process right now.

    running is None when it cannot be known (a command-controlled target
    without a status command): the health check is then the only witness.
    """

    running: bool | None
    pid: int | None = None
    started_at: datetime | None = None
    note: str = ""
    stale_pid_file: bool = False

    def runs(self, target: str) -> str | None:
        """ "staging already runs as pid 4242 since 12:03:07 UTC", or None when it is not known to run: why a Start
        is refused, and why the overview greys its button, in the same words."""
        if not self.running:
            return None
        where = f" as pid {self.pid}" if self.pid else ""
        since = f" since {self.started_at:%H:%M:%S} UTC" if self.started_at else ""
        return f"{target} already runs{where}{since}"


@runtime_checkable
class ProcessControl(Protocol):
    """What runbooks use, whichever way the target's process is controlled."""

    forced: str | None  # after a stop or restart: how the old process had to be killed, when it had to be

    def start(self, sink: Sink | None = None) -> None: ...

    def stop(self, sink: Sink | None = None) -> None: ...

    def restart(self, sink: Sink | None = None) -> None: ...

    def status(self) -> ProcessStatus: ...

    def watch(self) -> ProcessWatch | None: ...

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]: ...

    def log_since_start(self, lines: int = LOG_TAIL_LINES) -> AppLog: ...


@dataclass(frozen=True)
class AppLog:
    """What the application wrote to its log since Rewind last started or reloaded it (its last mark there).

    since is None when the log holds no such mark (near its end): lines are then its last ones, whoever
    started it, and may be older than the process that runs now.
    """

    lines: tuple[str, ...] = ()
    since: datetime | None = None
    reloaded: bool = False  # the mark is a reload's, not a start's
    more: int = 0  # lines written since the mark before the ones kept

    def since_words(self) -> str:
        """'since Rewind started it at 10:42:07 UTC' (or reloaded); empty without a mark."""
        if self.since is None:
            return ""
        return f"since Rewind {'reloaded' if self.reloaded else 'started'} it at {self.since:%H:%M:%S} UTC"


def _argv(value: Sequence[str] | None, name: str) -> tuple[str, ...] | None:
    """Validate a configured command: a non-empty list of arguments, never one shell string."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not value or not all(isinstance(a, str | os.PathLike) for a in value):
        raise ValueError(
            f"the {name} command must be a non-empty list of arguments, e.g. ['systemctl', 'restart', 'myapp'],"
            f" not {value!r}"
        )
    return tuple(str(a) for a in value)


# --- commands run by a service manager ------------------------------------------------------------


class CommandControl:
    """Controls the application through configured commands (systemctl, supervisorctl …).

    restart falls back to stop then start when no restart command is given.
    env is the commands' whole environment: the target's (Target.command_env()).
    """

    forced = None  # the service manager stops it; Rewind cannot tell how

    def __init__(
        self,
        start: Sequence[str] | None,
        stop: Sequence[str] | None,
        restart: Sequence[str] | None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        status: Sequence[str] | None = None,
    ) -> None:
        self.start_argv = _argv(start, "start")
        self.stop_argv = _argv(stop, "stop")
        self.restart_argv = _argv(restart, "restart")
        self.status_argv = _argv(status, "status")
        self.cwd = str(cwd) if cwd is not None else None
        self.env = dict(env) if env is not None else None
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.timeout = float(timeout)

    def start(self, sink: Sink | None = None) -> None:
        """Run the start command; ProcessError if it fails."""
        self._run("start", self._need("start", self.start_argv), NullSink() if sink is None else sink)

    def stop(self, sink: Sink | None = None) -> None:
        """Run the stop command; ProcessError if it fails."""
        self._run("stop", self._need("stop", self.stop_argv), NullSink() if sink is None else sink)

    def restart(self, sink: Sink | None = None) -> None:
        """Run the restart command, or stop then start when none is configured."""
        sink = NullSink() if sink is None else sink
        if self.restart_argv is not None:
            self._run("restart", self.restart_argv, sink)
            return
        if self.start_argv is None or self.stop_argv is None:
            raise NotConfigured(
                "cannot restart: no restart command, and no stop and start commands to fall back on",
                action="restart",
                fix="give the target's process a restart command, or both stop and start commands",
            )
        try:
            self._run("stop", self.stop_argv, sink)
        except ProcessError:
            # A crashed application is what a restart is for, and many stop scripts fail when nothing runs (no pid
            # file to read): when the status command says it is not running, there is nothing to stop.
            if self.status().running is not False:
                raise
            sink.line("out", "the stop command failed, but the status command says the application is not running")
        self._run("start", self.start_argv, sink)

    def status(self) -> ProcessStatus:
        """Run the status command (exit 0 means running); unknown when none is configured. Never raises."""
        if self.status_argv is None:
            return ProcessStatus(None, note="no status command is configured; the health check tells whether it serves")
        try:
            result = run_command(self.status_argv, timeout=self.timeout, cwd=self.cwd, env=self.env, capture=True)
        except CommandTimedOut:
            return ProcessStatus(None, note=f"status command did not answer within {self.timeout:g} s")
        except OSError as exc:
            return ProcessStatus(None, note=f"status command could not run: {exc}")
        lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        return ProcessStatus(result.ok, note=last or f"status command {result.ended} and printed nothing")

    def watch(self) -> None:
        """None: the service manager owns the process, so Rewind cannot tell which one it is."""
        return None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """Nothing: the service manager keeps the application's log (journalctl, supervisor's files)."""
        return []

    def log_since_start(self, lines: int = LOG_TAIL_LINES) -> AppLog:
        """Nothing: the service manager keeps the application's log."""
        return AppLog()

    def _need(self, action: str, argv: tuple[str, ...] | None) -> tuple[str, ...]:
        if argv is None:
            raise NotConfigured(
                f"cannot {action}: no {action} command is configured for this target",
                action=action,
                fix=f"add a {action} command (an argv list) to the target's process settings",
            )
        return argv

    def _run(self, action: str, argv: tuple[str, ...], sink: Sink) -> None:
        """Run one configured command, streamed and cancellable through the sink."""
        tee = Tee(sink, keep=TAIL_LINES)
        shown = shlex.join(argv)
        sink.line("cmd", "$ " + shown)
        try:
            result = run_command(argv, tee, timeout=self.timeout, cwd=self.cwd, env=self.env)
        except CommandTimedOut:
            raise ProcessError(
                f"{action}: `{shown}` did not finish within {self.timeout:g} s and was stopped",
                action=action,
                argv=argv,
                output_tail=tee.tail(),
                fix="look at the service manager's own log for why it hangs, or raise the target's process timeout",
            ) from None
        except OSError as exc:
            missing = exc.filename if exc.filename is not None else argv[0]
            # A relative command path is looked up from the folder the commands run in (the checkout, unless
            # process.cwd says otherwise), not from the folder Rewind was started in: say which.
            relative = "/" in str(missing) and not os.path.isabs(str(missing))  # a bare name is looked up in PATH
            where = f" (looked up from {self.cwd})" if self.cwd and relative else ""
            raise ProcessError(
                f"{action}: cannot run `{shown}`: {exc.strerror or exc}: {missing}{where}",
                action=action,
                argv=argv,
                fix="check the command path and working directory in the targets file; both must exist on this host"
                + ("; a relative path is taken from the checkout unless process.cwd is set" if where else ""),
            ) from None
        if not result.ok:
            silent = "" if printed(*tee.tail()) else " and printed nothing"
            raise ProcessError(
                f"{action}: `{shown}` {result.ended}{silent}",
                action=action,
                argv=argv,
                returncode=result.returncode,
                output_tail=tee.tail(),
                fix="run the same command by hand as Rewind's user to see why (systemctl may need polkit or sudo"
                " rules for that user; check the unit or program name)",
            )


# --- a process Rewind starts and supervises itself ------------------------------------------------

# Runs as a throwaway intermediate process: it starts the application in a new session
# and exits at once, so the application is re-parented to init and is never Rewind's
# child (no zombie in Rewind, nothing tied to Rewind's lifetime or process group).
# It reads the child's start time before it exits: until then the child, even one
# that died at once, is its unreaped zombie, so the pid cannot have been reused.
_LAUNCHER = """
import json, os, subprocess, sys
spec = json.load(sys.stdin)
try:
    log = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    child = subprocess.Popen(spec["argv"], cwd=spec["cwd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, close_fds=True)
except OSError as exc:
    sys.stdout.write(json.dumps({"error": exc.strerror or str(exc),
                                 "filename": None if exc.filename is None else str(exc.filename)}) + "\\n")
    sys.stdout.flush()
    os._exit(1)
with open("/proc/%d/stat" % child.pid, "rb") as fh:
    raw = fh.read()
start = int(raw[raw.rfind(b")") + 2:].split()[19])
sys.stdout.write(json.dumps({"pid": child.pid, "start": start}) + "\\n")
sys.stdout.flush()
os._exit(0)
"""


def _workers(count: int, which: str = "old") -> str:
    """'2 old workers were', '1 new worker was' … ."""
    if which == "old":
        return f"{count} old worker{'s were' if count != 1 else ' was'}"
    return f"{count} new worker{'s were' if count != 1 else ' was'}"


def _alive(pid: int) -> bool:
    found = procfs.stat(pid)
    return found is not None and not found.gone


def _start_ticks(pid: int) -> int | None:
    found = procfs.stat(pid)
    return found.start_ticks if found is not None else None


def _group_members(pgid: int) -> list[int]:
    """Live processes of the group: the leader and whatever it started (workers, or what outlived the leader)."""
    return [pid for pid in procfs.pids() if (found := procfs.stat(pid)) and found.pgid == pgid and not found.gone]


def _session_leader(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


@dataclass(frozen=True)
class Quiet:
    """An application Rewind started that had written nothing to its log yet (its start mark the last line).

    Rewind never learns the exit status of what it started (it is not Rewind's child), so for a start script
    that exits 1 without a word, that silence is the one thing to go on."""

    command: tuple[str, ...]
    cwd: Path
    log_file: Path
    log_size: int  # when the watch began: a log that grew since (the app, or another start) is no silence

    @classmethod
    def of(cls, command: Sequence[str], cwd: Path, log_file: Path) -> Quiet | None:
        last = _last_line(log_file)
        if last is None or not (last.startswith("--- ") and f" {START_MARK} " in last):
            return None
        try:
            size = log_file.stat().st_size
        except OSError:
            return None
        return cls(tuple(command), cwd, log_file, size)

    def silence(self) -> str:
        """That the application exited without writing a line since Rewind started it, and how to see why."""
        try:
            if self.log_file.stat().st_size != self.log_size:
                return ""
        except OSError:
            return ""
        return (
            f", having written nothing to its log {self.log_file} since Rewind started it (run "
            f"`{shlex.join(self.command)}` by hand in {self.cwd} as Rewind's user to see why)"
        )


def _mark_time(line: str) -> datetime | None:
    """When Rewind started or reloaded the application, for one of its marks in the log; None for any other line."""
    parts = line.split(" ", 2)
    if len(parts) < 3 or parts[0] != "---" or not parts[2].startswith((START_MARK, RELOAD_MARK)):
        return None
    try:
        return datetime.strptime(parts[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _last_line(path: Path, chunk: int = 4096) -> str | None:
    """The last non-empty line of a file; None when it cannot be read or holds none."""
    try:
        with path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - chunk))
            data = fh.read()
    except OSError:
        return None
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else None


@dataclass(frozen=True)
class ProcessWatch:
    """One started process, followed while it is verified: has it exited, which ports does it listen on?

    Bound to the pid and start time seen when the watch began, so a restart by
    someone else or a reused pid reads as "exited", never as the same process.
    """

    pid: int | None
    start: int | None = None
    note: str = ""  # why there is no process to watch
    quiet: Quiet | None = None  # it had written nothing since Rewind started it when the watch began

    def exited(self) -> str | None:
        """None while the process runs; otherwise what happened to it, in words."""
        if self.pid is None:
            gone = f"the application is not running: {self.note or 'no pid file'}"
        elif not _alive(self.pid) or _start_ticks(self.pid) != self.start:
            gone = f"the application (pid {self.pid}) exited"
        else:
            return None
        return gone + (self.quiet.silence() if self.quiet is not None else "")

    def listening_ports(self) -> frozenset[int]:
        """TCP ports that any process of its group listens on (a master's workers included)."""
        if self.pid is None:
            return frozenset()
        return sockets.listening_ports(_group_members(self.pid))


@dataclass(frozen=True)
class _Seen:
    """What the pid file and /proc say: the live application, its orphaned group, or why the pid file is stale."""

    pid: int | None = None  # the application, alive
    start: int | None = None
    note: str = ""  # the pid file is stale, and why
    leftovers: tuple[int, ...] = ()  # its leader exited, but these processes of its group still run
    group: int | None = None  # the group of those leftovers


class ManagedProcess:
    """Rewind starts and supervises the application itself, tracked by a pid file.

    The application runs detached in its own session, so it outlives the Rewind
    process that started it, and a stop signals its whole process group (workers
    included). env, when given, is its whole environment (keep Rewind's own
    secrets out of it); None inherits Rewind's.

    The pid file holds the pid on its first line, then `start=TICKS boot=ID`:
    the process's start time (from /proc/PID/stat) and the boot it ran in. The
    application is the process with that pid *and* that start time, whatever
    its command line says by now: a start script that ends in `exec gunicorn …`
    is still the application after the exec, and a pid the kernel gave to a
    later process is not.
    """

    def __init__(
        self,
        command: Sequence[str],
        cwd: Path,
        pid_file: Path,
        log_file: Path,
        env: dict[str, str] | None = None,
        stop_timeout: float = 10,
        reload_signal: str | None = None,
        reload_timeout: float = RELOAD_TIMEOUT_S,
    ) -> None:
        argv = _argv(command, "application")
        if argv is None:
            raise ValueError("the application command must be a list of arguments, e.g. ['gunicorn', 'app:app']")
        self.command = argv
        self.cwd = Path(cwd)
        self.pid_file = Path(pid_file)
        self.log_file = Path(log_file)
        self.env = dict(env) if env is not None else None
        if stop_timeout < 0:
            raise ValueError(f"stop_timeout must be zero or more seconds, not {stop_timeout!r}")
        self.stop_timeout = float(stop_timeout)
        self.forced: str | None = None
        self.reload_signal = signal.Signals[reload_signal] if reload_signal else None
        self.reload_timeout = float(reload_timeout)

    # --- the protocol ---------------------------------------------------------------------------

    def start(self, sink: Sink | None = None) -> None:
        """Start the application unless it (or what is left of it) still runs."""
        with self._locked():
            self._start(NullSink() if sink is None else sink)

    def stop(self, sink: Sink | None = None) -> None:
        """SIGTERM to the process group, SIGKILL after stop_timeout; removes the pid file."""
        with self._locked():
            self._stop(NullSink() if sink is None else sink)

    def restart(self, sink: Sink | None = None) -> None:
        """Stop (if running) then start, holding the lock throughout so no other start slips between.

        With a reload signal, a running application is reloaded in place instead
        (see _reload): its listening socket stays open, so no connection is refused.
        """
        sink = NullSink() if sink is None else sink
        with self._locked():
            if self.reload_signal is not None and self._reload(sink):
                return
            self._stop(sink)
            self._start(sink)

    def status(self) -> ProcessStatus:
        """Read the pid file and /proc; never changes anything."""
        seen = self._inspect()
        if seen.pid is not None:
            started = procfs.started_at(seen.pid) or self._pid_file_mtime()
            return ProcessStatus(True, seen.pid, started)
        if seen.leftovers:
            return ProcessStatus(False, note=seen.note)
        return ProcessStatus(False, note=seen.note or "not running (no pid file)", stale_pid_file=bool(seen.note))

    def watch(self) -> ProcessWatch:
        """A watch on the application as it runs now (or on its absence), for verification."""
        seen = self._inspect()
        quiet = Quiet.of(self.command, self.cwd, self.log_file)
        if seen.pid is None:
            return ProcessWatch(None, note=seen.note or "no pid file", quiet=quiet)
        return ProcessWatch(seen.pid, seen.start, quiet=quiet)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last lines of the application's log as plain text (colour codes removed), unmasked: the caller
        masks secrets before showing them."""
        if lines <= 0:
            return []
        try:
            with self.log_file.open("rb") as fh:
                end = fh.seek(0, os.SEEK_END)
                chunk, data = 8192, b""
                while end > 0 and data.count(b"\n") <= lines:
                    step = min(chunk, end)
                    end -= step
                    fh.seek(end)
                    data = fh.read(step) + data
        except OSError:
            return []
        return [strip_ansi(line) for line in data.decode(errors="replace").splitlines()[-lines:]]

    def log_since_start(self, lines: int = LOG_TAIL_LINES) -> AppLog:
        """The last lines the application wrote since Rewind's last start or reload mark in its log (plain text,
        unmasked), so a failed check never quotes an earlier crash as this start's; without such a mark in the
        last LOG_SCAN_BYTES, its last lines."""
        try:
            with self.log_file.open("rb") as fh:
                end = fh.seek(0, os.SEEK_END)
                start = max(0, end - LOG_SCAN_BYTES)
                fh.seek(start)
                data = fh.read(end - start)
        except OSError:
            return AppLog()
        text = data.decode(errors="replace").splitlines()
        if start > 0 and text:
            text = text[1:]  # cut mid-line
        for n in range(len(text) - 1, -1, -1):
            if (since := _mark_time(text[n])) is not None:
                after = text[n + 1 :]
                kept = after[-lines:] if lines > 0 else []
                reloaded = text[n].split(" ", 2)[2].startswith(RELOAD_MARK)
                shown = tuple(strip_ansi(line) for line in kept)
                return AppLog(shown, since, reloaded, len(after) - len(kept))
        kept = text[-lines:] if lines > 0 else []
        return AppLog(tuple(strip_ansi(line) for line in kept), None, False, len(text) - len(kept))

    # --- steps ----------------------------------------------------------------------------------

    def _start(self, sink: Sink) -> None:
        seen = self._inspect()
        if seen.pid is not None:
            raise AlreadyRunning(
                f"start: the application already runs as pid {seen.pid} (pid file {self.pid_file})",
                action="start",
                argv=self.command,
                pid=seen.pid,
                fix="restart it instead, or stop it first",
            )
        if seen.leftovers:
            raise AlreadyRunning(
                f"start: {seen.note}; a second copy would fight them for the port",
                action="start",
                argv=self.command,
                pid=seen.group,
                fix="restart or stop the target: that stops the whole process group",
            )
        if seen.note:
            self.pid_file.unlink(missing_ok=True)
            sink.line("out", f"{seen.note}; removed the stale pid file")
        if not self.cwd.is_dir():
            raise ProcessError(
                f"start: the working directory {self.cwd} does not exist",
                action="start",
                argv=self.command,
                fix="check the target's directory in the targets file",
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        shown = shlex.join(self.command)
        self._log_mark(f"{START_MARK} {shown}")
        sink.line("cmd", "$ " + shown)
        pid, start = self._launch()
        try:
            self._write_pid_file(pid, start)
        except OSError as exc:
            self._signal(pid, pid, signal.SIGKILL)  # an application nobody can find again must not keep running
            raise ProcessError(
                f"start: could not write the pid file {self.pid_file}: {exc}; stopped pid {pid} again",
                action="start",
                argv=self.command,
                pid=pid,
                fix="make the pid file's directory writable by Rewind's user",
            ) from None
        sink.line("out", f"started pid {pid}; its output goes to {self.log_file}")

    def _stop(self, sink: Sink) -> None:
        self.forced = None
        seen = self._inspect()
        if seen.pid is None and not seen.leftovers:
            if seen.note:
                self.pid_file.unlink(missing_ok=True)
                sink.line("out", f"{seen.note}; removed the stale pid file")
            else:
                sink.line("out", "not running (no pid file)")
            return
        if seen.pid is not None:
            pid = seen.pid
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                pgid = None
            group = pgid if pgid == pid else None  # only a group it leads: never signal someone else's group
        else:
            pid = group = seen.group
            sink.line("out", seen.note)
        started = time.monotonic()
        self._signal(pid, group, signal.SIGTERM)
        sink.line("out", f"sent SIGTERM to {'process group' if group else 'pid'} {pid}")
        how = "SIGTERM"
        if not self._wait_gone(pid, group, self.stop_timeout, sink):
            sink.line("out", f"still running after {self.stop_timeout:g} s; sent SIGKILL")
            self._signal(pid, group, signal.SIGKILL)
            how = "SIGKILL"
            self.forced = (
                f"pid {pid} ignored SIGTERM for {self.stop_timeout:g} s and was killed with SIGKILL, "
                "cutting off what it was doing — if it needs longer to finish, raise process.stop_timeout"
            )
            if not self._wait_gone(pid, group, KILL_WAIT_S, sink):
                raise ProcessError(
                    f"stop: pid {pid} survived SIGKILL for {KILL_WAIT_S:g} s",
                    action="stop",
                    argv=self.command,
                    pid=pid,
                    fix=f"it is likely stuck in the kernel (see `ps -o pid,stat,wchan -p {pid}`); the pid file is kept",
                )
        self.pid_file.unlink(missing_ok=True)
        self._log_mark(f"Rewind stopped pid {pid} ({how})")
        sink.line("out", f"stopped pid {pid} after {time.monotonic() - started:.1f} s ({how})")

    def _reload(self, sink: Sink) -> bool:
        """Signal the application to reload; True once every worker it had before has been retired.

        A master like gunicorn keeps its pid and its listening socket, starts new
        workers on the new code and retires the old ones gracefully: waiting until
        no old one can accept a connection (it has closed its listening socket,
        or exited) means verification only ever reaches new code.
        False (the caller then stops and starts) when nothing runs, when it has
        no workers (nothing would show the reload done), or when it exits on
        the signal instead of reloading.
        """
        seen = self._inspect()
        if seen.pid is None:
            return False
        pid, sig = seen.pid, self.reload_signal
        old_workers = set(_group_members(pid)) - {pid} if _session_leader(pid) else set()
        if not old_workers:
            # Nothing would show when the reload is done, so it could not be verified: restart instead.
            sink.line("out", f"pid {pid} has no worker processes for {sig.name} to replace; stopping and starting it")
            return False
        # A worker that closed its listening socket can take no new connection, even while its
        # interpreter still winds down; one never seen listening (or unreadable) must exit.
        listening = set(sockets.listening_inodes())
        listeners = {w for w in old_workers if sockets.socket_inodes([w]) & listening}
        self._log_mark(f"{RELOAD_MARK} {pid} ({sig.name})")
        self._signal(pid, None, sig)
        sink.line("out", f"sent {sig.name} to pid {pid} to reload it ({len(old_workers)} worker(s) to replace)")
        started = time.monotonic()
        deadline = started + self.reload_timeout
        while True:
            if not _alive(pid) or _start_ticks(pid) != seen.start:
                sink.line("out", f"pid {pid} exited after {sig.name} instead of reloading (see its log); starting")
                return False
            left = old_workers & set(_group_members(pid))
            if left & listeners:
                listening = set(sockets.listening_inodes())
                left = {w for w in left if w not in listeners or sockets.socket_inodes([w]) & listening}
            if not left:
                break
            if time.monotonic() >= deadline:
                shown = ", ".join(str(p) for p in sorted(left))
                raise ProcessError(
                    f"restart: after {sig.name}, the old workers of pid {pid} ({shown}) still run after "
                    f"{self.reload_timeout:g} s, so the new code may not be the one answering",
                    action="restart",
                    argv=self.command,
                    pid=pid,
                    fix="look at the application's log for a request that does not end, or remove "
                    "process.reload to restart by stop and start",
                )
            sink.tick()  # lets a job write out what it has logged while this waits
            time.sleep(POLL_S)
        took = time.monotonic() - started
        # The old workers being gone says nothing of the new ones: they may still be loading the code, or have
        # died loading it (gunicorn then exits). Say what is seen now; only the health check can tell they serve.
        if not _alive(pid) or _start_ticks(pid) != seen.start:
            sink.line(
                "out",
                f"pid {pid} exited after {sig.name} once its old workers were retired (its new workers may have "
                "failed to start: see its log); starting",
            )
            return False
        new_workers = set(_group_members(pid)) - old_workers - {pid}
        retired = f"reloaded pid {pid} in {took:.1f} s: its {_workers(len(old_workers))} retired"
        if not new_workers:
            sink.line(
                "out",
                f"{retired}, but no new worker runs (they may have failed to start: see its log); the health check "
                "tells whether it serves",
            )
        else:
            sink.line(
                "out",
                f"{retired} and {_workers(len(new_workers), 'new')} started; whether they load the code and serve "
                "is for the health check to tell",
            )
        return True

    # --- helpers --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One start/stop at a time across threads and Rewind processes (flock on a file beside the pid file)."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.pid_file.with_name(self.pid_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _inspect(self) -> _Seen:
        """Which process the pid file names: identified by pid and start time, never by its command line."""
        try:
            lines = self.pid_file.read_text().splitlines()
        except FileNotFoundError:
            return _Seen()
        first = lines[0].strip() if lines else ""
        if not first.isdigit() or int(first) <= 0:
            return _Seen(note=f"pid file {self.pid_file} holds {first[:20]!r}, not a pid")
        pid = int(first)
        marks = dict(word.split("=", 1) for word in " ".join(lines[1:2]).split() if "=" in word)
        recorded = int(marks["start"]) if marks.get("start", "").isdigit() else None
        same_boot = marks.get("boot", "") in ("", procfs.boot_id())
        if _alive(pid):
            if recorded is None:
                # Written before start times were recorded: the application leads its own session.
                if _session_leader(pid):
                    return _Seen(pid=pid, start=_start_ticks(pid))
                return _Seen(note=f"pid file names pid {pid}, which is now another process (pid reused)")
            if same_boot and _start_ticks(pid) == recorded:
                return _Seen(pid=pid, start=recorded)
            return _Seen(note=f"pid file names pid {pid}, which is now another process, started later (pid reused)")
        # The kernel never hands out a pid that is still some group's id, so the group is the application's.
        left = tuple(_group_members(pid)) if same_boot else ()
        if left:
            shown = ", ".join(str(p) for p in left[:5]) + (" …" if len(left) > 5 else "")
            return _Seen(
                note=f"the application's pid {pid} exited, but processes it started still run ({shown})",
                leftovers=left,
                group=pid,
            )
        return _Seen(note=f"pid file names pid {pid}, which is no longer running")

    def _launch(self) -> tuple[int, int]:
        spec = json.dumps({"argv": list(self.command), "cwd": str(self.cwd), "log": str(self.log_file)})
        try:
            launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER]
            done = run_command(launcher, stdin=spec.encode(), env=self.env, timeout=30, capture=True)
        except CommandTimedOut:
            raise ProcessError(
                "start: the launcher did not answer within 30 s",
                action="start",
                argv=self.command,
                fix="the host may be out of processes or memory; check `dmesg`",
            ) from None
        try:
            out = done.stdout.splitlines()
            answer = json.loads(out[-1]) if out else {}
        except ValueError:
            answer = {}
        if "pid" not in answer:
            error = answer.get("error") or done.stderr.strip() or f"the launcher {done.ended} and printed nothing"
            where = f": {answer['filename']}" if answer.get("filename") else ""
            raise ProcessError(
                f"start: cannot run `{shlex.join(self.command)}`: {error}{where}",
                action="start",
                argv=self.command,
                fix="check the command (an absolute path, or on the PATH of its environment) and its working directory",
            )
        return int(answer["pid"]), int(answer["start"])

    def _write_pid_file(self, pid: int, start: int) -> None:
        """Write-then-rename, so a reader never sees a half-written pid file."""
        fd, tmp = tempfile.mkstemp(dir=self.pid_file.parent, prefix=f".{self.pid_file.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{pid}\nstart={start} boot={procfs.boot_id()}\n")
                fh.flush()
                os.fchmod(fh.fileno(), 0o644)
                os.fsync(fh.fileno())
            os.replace(tmp, self.pid_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _signal(self, pid: int, group: int | None, sig: signal.Signals) -> None:
        try:
            if group is not None:
                os.killpg(group, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ProcessError(
                f"cannot send {sig.name} to pid {pid}: permission denied",
                action="stop",
                argv=self.command,
                pid=pid,
                fix="Rewind must run as the application's user (or root) to stop it",
            ) from None

    @staticmethod
    def _wait_gone(pid: int, group: int | None, timeout: float, sink: Sink) -> bool:
        deadline = time.monotonic() + timeout
        pause = FIRST_POLL_S
        while True:
            if not _alive(pid) and (group is None or not _group_members(group)):
                return True
            if time.monotonic() >= deadline:
                return False
            sink.tick()  # "sent SIGTERM" reaches the job's page now, not when the app is gone (up to stop_timeout)
            time.sleep(pause)
            pause = min(pause * 2, POLL_S)

    def _pid_file_mtime(self) -> datetime | None:
        try:
            return datetime.fromtimestamp(self.pid_file.stat().st_mtime, UTC)
        except OSError:
            return None

    def _log_mark(self, text: str) -> None:
        """A line in the application's log, so whoever reads it sees where Rewind acted."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with contextlib.suppress(OSError):
            fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, f"--- {stamp} {text}".replace("\n", "\\n").encode() + b"\n")
            finally:
                os.close(fd)
