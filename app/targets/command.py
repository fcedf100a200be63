"""The one way Rewind runs a program: argv only, its own process group, lines to a sink.

Never a shell: every argument is its own list item, so nothing from a request
can become shell syntax. Each command (or each pipeline, as a whole) gets its
own process group, so a cancel or a timeout stops whatever it started too.

Output goes to a *sink*. Reader threads only call `sink.line()`, which must
merely buffer; the calling thread alone calls `sink.tick()` (where a job
writes its events) and `sink.cancelled()`. That split is what keeps a chatty
command's lines from vanishing when they arrive on a thread that cannot
write to the database.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol, runtime_checkable

from app.targets import procfs

TERMINATE_GRACE_S = 3.0
POLL_S = 0.1
TAIL_LINES = 20


@runtime_checkable
class Sink(Protocol):
    """Where a command's output goes. `line` may be called from any thread; the rest from the caller's."""

    def line(self, stream: str, text: str) -> None: ...

    def tick(self) -> None: ...

    def cancelled(self) -> bool: ...


class NullSink:
    """Discards everything and never cancels: for commands whose output nobody watches."""

    def line(self, stream: str, text: str) -> None:
        pass

    def tick(self) -> None:
        pass

    def cancelled(self) -> bool:
        return False


class Tee:
    """Passes lines on to another sink and keeps the last `keep` of each stream (every line with None)."""

    def __init__(self, sink: Sink | None, keep: int | None = TAIL_LINES) -> None:
        self.sink = NullSink() if sink is None else sink
        self.keep = keep
        self.tails: dict[str, deque[str]] = {}
        self._lock = threading.Lock()

    def line(self, stream: str, text: str) -> None:
        with self._lock:
            self.tails.setdefault(stream, deque(maxlen=self.keep)).append(text)
        self.sink.line(stream, text)

    def tick(self) -> None:
        self.sink.tick()

    def cancelled(self) -> bool:
        return self.sink.cancelled()

    def group_started(self, pgid: int) -> None:
        _started(self.sink, pgid)

    def group_ended(self, pgid: int) -> None:
        _ended(self.sink, pgid)

    def tail(self, *streams: str) -> list[str]:
        with self._lock:
            return [t for s in streams or ("out", "err") for t in self.tails.get(s, ())]

    def last_words(self) -> str:
        """The last line the command printed, stderr's before stdout's; "" when it printed nothing at all."""
        for stream in ("err", "out"):
            said = [line.strip() for line in self.tail(stream) if line.strip()]
            if said:
                return said[-1]
        return ""


class ReadProgress(Tee):
    """Passes lines on, and at most every `every_s` (on the waiting thread's ticks) tells a sink that takes progress
    (a job's) how far a command has read `source`. The child reads through the same open file, so its offset is
    the file's: measured, not guessed, and nothing more is read for it."""

    def __init__(
        self, sink: Sink, source: IO[bytes], size: int, words: Callable[[int, int], str], every_s: float = 1.0
    ) -> None:
        super().__init__(sink, keep=0)
        self.source, self.size, self.words, self.every_s = source, size, words, every_s
        self._said = time.monotonic()
        self._at: int | None = None  # the offset last told: an unmoved one is not told again (each is a job event)

    def tick(self) -> None:
        super().tick()
        if time.monotonic() - self._said >= self.every_s:
            self.report()

    def report(self) -> None:
        """Say how far the reading has got now (also after the command, for where it ended)."""
        hook = getattr(self.sink, "progress", None)
        if hook is None or self.size <= 0:
            return
        try:
            done = os.lseek(self.source.fileno(), 0, os.SEEK_CUR)
        except (OSError, ValueError):  # closed meanwhile: nothing to say
            return
        self._said = time.monotonic()
        if done == self._at:  # e.g. all read while pg_restore builds its indexes, maybe for an hour
            return
        self._at = done
        hook(min(done / self.size, 1.0), self.words(done, self.size))


class Uncancellable(Tee):
    """Passes lines on but never cancels: for a recovery (a branch put back after a failed revert) that a cancel
    must not cut short, since stopping it would leave the half-done change it is there to undo."""

    def __init__(self, sink: Sink | None) -> None:
        super().__init__(sink, keep=0)

    def cancelled(self) -> bool:
        return False


class CommandCancelled(Exception):
    """The sink asked to stop; the command's whole process group was stopped.

    `outcome`: where an adapter that put things back after the stop left them ("The code was not changed …"), for the
    job's result to say."""

    def __init__(self, outcome: str = "") -> None:
        super().__init__(outcome or "cancelled")
        self.outcome = outcome


class CommandTimedOut(Exception):
    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"{argv[0]} did not finish within {timeout:g} s and was stopped")
        self.argv = tuple(argv)
        self.timeout = timeout


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    duration_s: float
    stdout: str = ""  # only with capture=True
    stderr: str = ""
    output: bytes = b""  # stdout as it came, only from the quiet path (capture=True, no sink): blobs, sizes in bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def ended(self) -> str:
        return ended(self.returncode)


def status_words(returncode: int) -> str:
    """An exit status as a person reads it: "exit status 3", or "killed by SIGKILL" (a negative status is a signal)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def ended(returncode: int) -> str:
    """How a command ended, to follow its name: "exited with status 3", or "was killed by SIGKILL"."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    return f"was {status_words(returncode)}"


def said_nothing(argv: Sequence[str], *, where: str = "", hint: str = "", on: str = "") -> str:
    """The words for a command that failed without printing a line: that it was silent, and how to see why.

    A tool that exits 1 with no output (a hook, a wrapper script, logging sent elsewhere) leaves nothing
    to quote; the one useful thing to say is the exact command to run by hand, and where else to look.
    """
    place = f" in {where}" if where else ""
    stream = f" on {on}" if on else ""
    text = (
        f"it printed nothing{stream} — run it by hand{place} as Rewind's user, with the target's environment, "
        f"to see why: `{shown(argv)}`"
    )
    return f"{text}; {hint}" if hint else text


def printed(*texts: str) -> bool:
    """Whether any of a command's outputs holds more than whitespace."""
    return any(text.strip() for text in texts)


def _checked(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str | bytes) or not argv:
        raise TypeError("argv must be a non-empty list of arguments, never a shell string")
    return tuple(str(a) for a in argv)


def shown(argv: Sequence[str]) -> str:
    """How a command line is written in a log: quoted so it could be pasted into a shell."""
    return shlex.join(str(a) for a in argv)


def _pump(stream: IO[bytes], name: str, sink: Sink) -> None:
    with contextlib.suppress(ValueError, OSError):  # closed under us when the command is stopped
        for raw in iter(stream.readline, b""):
            sink.line(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    stream.close()


def stop_group(pgid: int, procs: Sequence[subprocess.Popen] = ()) -> None:
    """SIGTERM to the group, then SIGKILL if anything lingers."""
    for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all(p.poll() is not None for p in procs) and not _group_alive(pgid):
                return
            time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_command(
    argv: Sequence[str],
    sink: Sink | None = None,
    *,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    capture: bool = False,
) -> CommandResult:
    """Run argv to completion, streaming its lines to the sink (or capturing them with capture=True).

    Raises CommandCancelled, CommandTimedOut, or OSError when the program cannot start.
    """
    argv = _checked(argv)
    if capture and sink is None:
        return _run_captured(argv, timeout=timeout, cwd=cwd, env=env, stdin=stdin)
    sink = NullSink() if sink is None else sink
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
    target = Tee(sink, keep=None) if capture else sink
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, "out", target), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "err", target), daemon=True),
    ]
    for reader in readers:
        reader.start()
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    _started(sink, proc.pid)
    try:
        _wait(proc, sink, argv, timeout, started)
    finally:
        if proc.poll() is None:  # an error in a sink must not leave the child running
            stop_group(proc.pid, [proc])
        for reader in readers:
            reader.join(timeout=5)
        sink.tick()
        _ended(sink, proc.pid)
    kept = target.tails if capture else {}
    out, err = ("\n".join(kept.get(stream, ())) for stream in ("out", "err"))
    return CommandResult(argv, proc.returncode, time.monotonic() - started, out, err)


def _run_captured(argv, *, timeout, cwd, env, stdin) -> CommandResult:
    """The quiet path for short reads (git log, status …): no threads, output kept in memory.

    A timeout stops the command's whole group, as the streaming path does: a hook or helper it started (and
    that may be what hangs) must not outlive it."""
    started = time.monotonic()
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,  # no controlling terminal: nothing can stop and prompt; its own group to stop
    ) as proc:
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, [proc])
            # The pipes close with the group, unless something it started left the group and holds them.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=TERMINATE_GRACE_S)
            raise CommandTimedOut(argv, timeout or 0) from None
    return CommandResult(
        argv,
        proc.returncode,
        time.monotonic() - started,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
        out,
    )


def _wait_any(procs: Sequence[subprocess.Popen], timeout: float) -> None:
    """Until one of the running processes exits, or `timeout` passes.

    A pidfd wakes the moment a process exits. Popen.wait(timeout) polls instead, with sleeps that grow to 50 ms:
    on average 25 ms added to the end of every command, a restore's fill among them."""
    running = [p for p in procs if p.returncode is None]
    fds: list[int] = []
    try:
        ready = select.poll()  # not select(): a busy server's descriptors run past its limit of 1024
        for proc in running:
            fds.append(os.pidfd_open(proc.pid))  # not reaped yet (only this process reaps it): still its pid
            ready.register(fds[-1], select.POLLIN)
        ready.poll(timeout * 1000)
    except (AttributeError, OSError):  # no pidfds here (not Linux 5.3+): the polling wait
        with contextlib.suppress(subprocess.TimeoutExpired, StopIteration):
            next(p for p in running if p.poll() is None).wait(timeout=timeout)
    finally:
        for fd in fds:
            os.close(fd)


def _wait(proc: subprocess.Popen, sink: Sink, argv, timeout: float | None, started: float) -> None:
    while True:
        _wait_any([proc], POLL_S)
        if proc.poll() is not None:
            return
        sink.tick()
        if sink.cancelled():
            stop_group(proc.pid, [proc])
            raise CommandCancelled()
        if timeout is not None and time.monotonic() - started > timeout:
            stop_group(proc.pid, [proc])
            raise CommandTimedOut(argv, timeout)


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, ValueError, OSError):
        pass


def start_ticks(pid: int) -> int | None:
    """When a live process started (clock ticks since boot): with its pid, it names it for good."""
    found = procfs.stat(pid)
    return found.start_ticks if found is not None and not found.gone else None


def stop_orphaned_group(pgid: int, ticks: int | None) -> bool:
    """Stop a command group a dead Rewind process left running; True if it was still there.

    Only the very group that was recorded: its leader's pid must still carry
    the recorded start time, so a reused pid is never signalled.
    """
    if ticks is None or start_ticks(pgid) != ticks:
        return False
    stop_group(pgid)
    return True


def _started(sink: Sink, pgid: int) -> None:
    """Tell a sink that wants it which process group runs now (so a crash can stop it later)."""
    hook = getattr(sink, "group_started", None)
    if hook is not None:
        hook(pgid)


def _ended(sink: Sink, pgid: int) -> None:
    hook = getattr(sink, "group_ended", None)
    if hook is not None:
        hook(pgid)


# --- pipelines ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One program of a pipeline; stderr lines reach the sink as stream `err:<name>`."""

    argv: tuple[str, ...]
    name: str = ""
    env: dict[str, str] | None = None
    cwd: str | None = None
    pass_fds: tuple[int, ...] = ()

    @classmethod
    def of(cls, argv: Sequence[str], name: str = "", **kwargs) -> Stage:
        argv = _checked(argv)
        return cls(argv, name or os.path.basename(argv[0]), **kwargs)


@dataclass(frozen=True)
class StageResult:
    name: str
    argv: tuple[str, ...]
    returncode: int
    stderr_tail: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def ended(self) -> str:
        return ended(self.returncode)

    def failure(self, lines: int = 6, *, lead: str | None = None) -> str:
        """This failed stage in words: its name, how it ended, then its last stderr lines, or that it said
        nothing and the exact command to run by hand. Only stderr is known: a stage's stdout is its data.

        `lead`: a line of its stderr to show first when the tail has scrolled past it (the error itself, where a
        tool ends with the statement that failed)."""
        said = [line for line in self.stderr_tail if line.strip()][-lines:]
        if lead is not None and lead not in said:
            said.insert(0, lead)
        if said:
            return f"{self.name} {self.ended}:\n  " + "\n  ".join(said)
        return f"{self.name} {self.ended} and {said_nothing(self.argv, on='stderr')}"

    @property
    def victim(self) -> bool:
        """Failed only because a neighbour did: stopped by a signal, or its pipe broke under it."""
        if self.returncode in (-signal.SIGPIPE, -signal.SIGTERM, -signal.SIGKILL):
            return True
        return any("broken pipe" in line.lower() for line in self.stderr_tail)


@dataclass(frozen=True)
class PipelineResult:
    stages: tuple[StageResult, ...]
    duration_s: float
    exit_order: tuple[int, ...] = ()  # stage indexes in the order they were seen to exit

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stages)

    @property
    def failed(self) -> StageResult | None:
        """The stage to blame: the first in the pipeline that failed on its own account (not one its neighbour
        took down); when every failure was a neighbour's doing, the first seen to exit.

        Upstream first, not first to exit: bad input fails the stages after it too, and which of two stages that
        both fail ends a moment sooner is a race (a guard refusing a statement, psql failing an earlier one)."""
        own = [s for s in self.stages if not s.ok and not s.victim]
        if own:
            return own[0]
        order = list(self.exit_order) + [i for i in range(len(self.stages)) if i not in self.exit_order]
        return next((self.stages[i] for i in order if not self.stages[i].ok), None)


@dataclass
class _StageSink:
    sink: Sink
    name: str
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def line(self, stream: str, text: str) -> None:
        self.tail.append(text)
        self.sink.line(f"err:{self.name}", text)

    def tick(self) -> None:  # pragma: no cover - readers never tick
        pass

    def cancelled(self) -> bool:  # pragma: no cover
        return False


def run_pipeline(
    stages: Sequence[Stage],
    sink: Sink | None = None,
    *,
    stdin: IO[bytes] | int | None = None,
    stdout: IO[bytes] | int | None = None,
    timeout: float | None = None,
) -> PipelineResult:
    """Run `A | B | C` through OS pipes, all in one process group.

    stdin feeds the first stage (a file object or descriptor; default nothing);
    the last stage's stdout goes to `stdout` (a file object or descriptor), or
    line by line to the sink as stream "out" when none is given. A stage that
    fails stops the whole group, so a broken `pg_dump | gpg` never leaves one
    half running. Raises CommandCancelled, CommandTimedOut, or OSError.
    """
    if not stages:
        raise ValueError("a pipeline needs at least one stage")
    sink = NullSink() if sink is None else sink
    started = time.monotonic()
    procs: list[subprocess.Popen] = []
    stage_sinks = [_StageSink(sink, s.name) for s in stages]
    readers: list[threading.Thread] = []
    pgid: int | None = None
    prev_out: IO[bytes] | int | None = stdin if stdin is not None else subprocess.DEVNULL
    try:
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            out = (stdout if stdout is not None else subprocess.PIPE) if last else subprocess.PIPE
            proc = subprocess.Popen(
                stage.argv,
                stdin=prev_out,
                stdout=out,
                stderr=subprocess.PIPE,
                cwd=stage.cwd,
                env=stage.env,
                pass_fds=stage.pass_fds,
                process_group=0 if pgid is None else pgid,
            )
            if pgid is None:
                pgid = proc.pid
            if i > 0 and procs[-1].stdout is not None:
                procs[-1].stdout.close()  # only the next stage holds the read end now: SIGPIPE works
            procs.append(proc)
            reader = threading.Thread(target=_pump, args=(proc.stderr, "err", stage_sinks[i]), daemon=True)
            reader.start()
            readers.append(reader)
            prev_out = proc.stdout
        if stdout is None and procs[-1].stdout is not None:
            reader = threading.Thread(target=_pump, args=(procs[-1].stdout, "out", sink), daemon=True)
            reader.start()
            readers.append(reader)
        _started(sink, pgid)
        exit_order = _wait_pipeline(procs, pgid, sink, stages[0].argv, timeout, started)
    except BaseException:
        if pgid is not None:
            stop_group(pgid, procs)
        raise
    finally:
        for reader in readers:
            reader.join(timeout=5)
        sink.tick()
        if pgid is not None:
            _ended(sink, pgid)
    results = tuple(
        StageResult(stage.name, stage.argv, proc.returncode, tuple(stage_sinks[i].tail))
        for i, (stage, proc) in enumerate(zip(stages, procs, strict=True))
    )
    return PipelineResult(results, time.monotonic() - started, tuple(exit_order))


def _wait_pipeline(procs, pgid: int, sink: Sink, argv, timeout: float | None, started: float) -> list[int]:
    order: list[int] = []
    while True:
        codes = [p.poll() for p in procs]
        order += [i for i, c in enumerate(codes) if c is not None and i not in order]
        if all(c is not None for c in codes):
            return order
        if any(c not in (None, 0) for c in codes):
            stop_group(pgid, procs)  # one stage failed: the rest would only wait on a dead pipe
            for p in procs:
                p.wait()
            return order + [i for i in range(len(procs)) if i not in order]
        _wait_any(procs, POLL_S)
        sink.tick()
        if sink.cancelled():
            stop_group(pgid, procs)
            raise CommandCancelled()
        if timeout is not None and time.monotonic() - started > timeout:
            stop_group(pgid, procs)
            raise CommandTimedOut(argv, timeout)


def read_capped(
    argv: Sequence[str],
    limit: int,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> tuple[bytes, bool, int | None, str]:
    """Stdout up to `limit` bytes, stopping the program past that so a huge output costs no memory.

    Returns (data, truncated, returncode or None when stopped, stderr text).
    """
    import tempfile

    argv = _checked(argv)
    with (
        tempfile.TemporaryFile() as err,
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, env=env, start_new_session=True
        ) as proc,
    ):
        data = proc.stdout.read(limit + 1)
        truncated = len(data) > limit
        if truncated:
            stop_group(proc.pid, [proc])
        proc.stdout.close()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, [proc])
            raise CommandTimedOut(argv, timeout or 0) from None
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    return data, truncated, None if truncated else returncode, stderr
