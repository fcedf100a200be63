"""Benchmark the job page's live websocket: one job's events fanned out to many watchers.

    python bench/ws_fanout.py --watchers 500 --events 200

Starts a real Rewind (migrations, first admin, gunicorn with gunicorn.conf.py)
in a temporary instance directory with a SQLite ops database, ONE gthread
worker (REWIND_WORKERS=1, REWIND_THREADS=watchers+100 unless --threads says
otherwise) and one job thread (REWIND_JOB_THREADS=1), then:

1. signs in as the first admin;
2. starts a "blocker" job (test.count, one line, a long delay) that holds the
   only job thread, and queues the measured job behind it: test.count with
   (events - 6) / 2 lines, paced to last --job-seconds (each line is a log
   event and a progress event; the job and its two steps add six more);
3. connects N asyncio websocket clients to /jobs/<id>/ws of the queued job,
   each with the session cookie and an Origin equal to the server's URL, as a
   browser would; every watcher's first message is a snapshot whose
   id="job-state" element carries data-seq="S";
4. once every watcher has its snapshot (or failed), cancels the blocker, so
   the measured job starts with all watchers listening;
5. each watcher reads every later message, takes the (data-seq, data-ts)
   pairs out of it and records latency = arrival wall time - data-ts (the
   event's persisted UTC time; client and server share the machine's clock),
   until it sees the job-state element in a final state or its socket closes.

Every seq from S+1 to the job's final seq must reach every watcher exactly
once: missing ones are counted as lost, repeats (or events at or before S) as
duplicates. A watcher that never got its snapshot lost every event. Latency includes the commit, the
fan-out thread's read and render, the kernel, and this client's own event
loop, which shares the machine's two cores with the server (its CPU use is
printed so a saturated client can be told from a slow server).

By default all handshakes start at once, as when every open job page
reconnects after a restart; --connect-concurrency K keeps at most K in flight
(tabs opened over time). Watchers close as soon as they see the final state;
with --linger they wait for the server to close, as a browser tab does.

Target: 500 watchers on one gunicorn gthread worker, p99 under 250 ms, zero lost.

Everything is bounded by --timeout (180 s by default): when it runs out the
watchers are stopped and whatever arrived is reported. Details go to stdout;
the last stdout line is the figure line, e.g.
`watchers=500 events=200 p50_ms=12.3 p99_ms=80.1 lost=0`; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

from app.statuses import JobState  # noqa: E402
from tests.support.http import Session  # noqa: E402
from tests.support.server import RewindServer  # noqa: E402

T = TypeVar("T")

P99_TARGET_MS = 250.0
FIXED_EVENTS = 6  # job running, count running/succeeded, finish running/succeeded, job succeeded
THREAD_MARGIN = 100
CLOSE_TIMEOUT_S = 2.0
SAMPLE_EVERY_S = 0.5
LAG_PROBE_S = 0.01
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

EVENT_ATTRS = re.compile(r'data-seq="(\d+)" data-ts="([^"]+)"')
JOB_STATE = re.compile(r'<div id="job-state"[^>]*? data-seq="(\d+)"[^>]*? data-state="([a-z]+)"')
JOB_LOCATION = re.compile(r"/jobs/(\d+)$")
LOG_PROBLEM = re.compile(r"^\[[^]]+\] (?:\[\d+\] \[)?(WARNING|ERROR|CRITICAL)\]? (.*)")  # Flask's and gunicorn's
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Exit|Timeout|Closed)\b")
WATCH_ERRORS = (OSError, TimeoutError, WebSocketException)
HTTP_ERRORS = (OSError, RuntimeError)  # urllib's timeouts and refusals; our helpers' unexpected statuses
FINISH_RESERVE_S = 35.0  # of --timeout, kept for reading the final state (SQLAlchemy's pool timeout is 30 s)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- what one watcher saw ---------------------------------------------------------------------


@dataclass
class Watcher:
    index: int
    connect_s: float | None = None
    snapshot_seq: int | None = None
    latency_ms: dict[int, float] = field(default_factory=dict)  # seq -> latency
    arrived: dict[int, float] = field(default_factory=dict)  # seq -> wall time
    duplicates: int = 0
    final_seq: int | None = None
    error: str | None = None


@lru_cache(maxsize=4096)
def epoch(ts: str) -> float:
    """data-ts is naive UTC with a Z suffix; every watcher parses the same few hundred strings."""
    return datetime.fromisoformat(ts).timestamp()


def job_state(html: str) -> tuple[int, JobState] | None:
    match = JOB_STATE.search(html)
    return (int(match[1]), JobState(match[2])) if match else None


def record(watcher: Watcher, message: str, arrived: float) -> None:
    """Note every event in one message; a log event's several lines share one seq."""
    events: dict[int, str] = {}
    for seq, ts in EVENT_ATTRS.findall(message):
        events.setdefault(int(seq), ts)
    for seq, ts in events.items():
        if seq in watcher.latency_ms or seq <= (watcher.snapshot_seq or 0):
            watcher.duplicates += 1
            continue
        watcher.latency_ms[seq] = (arrived - epoch(ts)) * 1000
        watcher.arrived[seq] = arrived
    state = job_state(message)
    if state is not None and state[1].is_final:
        watcher.final_seq = state[0]


@dataclass
class Endpoint:
    """Where and how every watcher connects; the gate bounds handshakes in flight."""

    url: str
    origin: str
    cookie: str
    timeout: float
    gate: asyncio.Semaphore
    linger: bool  # after the final state, wait for the server to close (as a browser tab does)


async def open_watch(watcher: Watcher, endpoint: Endpoint) -> ClientConnection:
    """Handshake and snapshot, as a browser opening the job page; closes the socket if either fails."""
    async with endpoint.gate:
        started = time.monotonic()
        ws = await connect(
            endpoint.url,
            origin=endpoint.origin,
            additional_headers={"Cookie": endpoint.cookie},
            compression=None,
            proxy=None,
            open_timeout=endpoint.timeout,
            ping_interval=None,  # browsers do not ping
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=None,
        )
        try:
            snapshot = await asyncio.wait_for(ws.recv(), endpoint.timeout)
        except BaseException:
            await ws.close()
            raise
        watcher.connect_s = time.monotonic() - started
    state = job_state(snapshot)
    watcher.snapshot_seq = state[0] if state else 0
    return ws


async def watch(watcher: Watcher, endpoint: Endpoint, on_snapshot: Callable[[], None]) -> None:
    """Connect, then record events until the job ends or the socket closes."""
    try:
        ws = await open_watch(watcher, endpoint)
    except WATCH_ERRORS as exc:
        watcher.error = type(exc).__name__
        on_snapshot()  # a failed watcher must not hold up the start
        return
    on_snapshot()
    try:
        async with ws:
            async for message in ws:
                record(watcher, message, time.time())
                if watcher.final_seq is not None and not endpoint.linger:
                    return
    except WATCH_ERRORS as exc:
        watcher.error = type(exc).__name__


# --- the server process ---------------------------------------------------------------------


@dataclass
class ProcStats:
    pid: int
    threads: int = 0
    peak_threads: int = 0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    user_s: float = 0.0
    system_s: float = 0.0


def gunicorn_worker(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if not children:
        raise RuntimeError("the gunicorn master has no worker process")
    return int(children[0])


def sample(stats: ProcStats) -> None:
    """Threads, RSS and CPU time of the worker from /proc; leaves the last values if it is gone."""
    with contextlib.suppress(OSError):
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{stats.pid}/status").read_text().splitlines() if ":" in line
        )
        stats.threads = int(status["Threads"])
        stats.rss_mb = int(status["VmRSS"].split()[0]) / 1024
        stats.peak_rss_mb = int(status["VmHWM"].split()[0]) / 1024
        stats.peak_threads = max(stats.peak_threads, stats.threads)
        fields = Path(f"/proc/{stats.pid}/stat").read_text().rsplit(")", 1)[1].split()
        stats.user_s, stats.system_s = int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


async def probe_loop_lag(lags: list[float]) -> None:
    """How late this client's event loop wakes from a short sleep: arrival times are that late too."""
    while True:
        began = time.monotonic()
        await asyncio.sleep(LAG_PROBE_S)
        lags.append((time.monotonic() - began - LAG_PROBE_S) * 1000)


async def keep_sampling(stats: ProcStats) -> None:
    while True:
        sample(stats)
        await asyncio.sleep(SAMPLE_EVERY_S)


# --- talking to Rewind over HTTP --------------------------------------------------------------


def start_count_job(session: Session, lines: int, delay: float) -> int:
    status, head, _ = session.post("/jobs", {"runbook": "test.count", "lines": str(lines), "delay": f"{delay:.4f}"})
    match = JOB_LOCATION.search(head.get("Location", ""))
    if status != 302 or match is None:
        raise RuntimeError(f"starting test.count returned {status} {head.get('Location')!r}")
    return int(match[1])


def cancel_job(session: Session, job_id: int) -> None:
    status, _, _ = session.post(f"/jobs/{job_id}/cancel")
    if status != 303:
        raise RuntimeError(f"cancelling job {job_id} returned {status}")


def current_state(session: Session, job_id: int) -> tuple[int, JobState]:
    status, _, html = session.get(f"/jobs/{job_id}")
    state = job_state(html)
    if status != 200 or state is None:
        raise RuntimeError(f"job page {job_id} returned {status} without a job-state element")
    return state


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    watchers: list[Watcher]
    connect_wall_s: float = 0.0
    emit_wall_s: float = 0.0
    final_seq: int = 0
    final_state: str = ""
    timed_out: bool = False
    client_cpu_pct: float = 0.0
    server_user_pct: float = 0.0
    server_system_pct: float = 0.0
    loop_lag_ms: list[float] = field(default_factory=list)
    before: ProcStats | None = None
    after: ProcStats | None = None


async def connect_all(watchers: list[Watcher], endpoint: Endpoint) -> list[asyncio.Task]:
    """Start every watcher; return once all have their snapshot or failed, or the timeout passes."""
    remaining = len(watchers)
    all_in = asyncio.Event()

    def on_snapshot() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            all_in.set()

    tasks = [asyncio.create_task(watch(w, endpoint, on_snapshot)) for w in watchers]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), endpoint.timeout)
    return tasks


async def http_until(deadline: float, what: str, call: Callable[[], T]) -> T | None:
    """A blocking HTTP call in a thread, retried while the server is too busy to answer; None if time runs out."""
    while True:
        try:
            return await asyncio.to_thread(call)
        except HTTP_ERRORS as exc:
            if time.monotonic() + 1 >= deadline:
                log(f"gave up {what}: {exc}")
                return None
            log(f"{what} failed ({exc}); retrying")
            await asyncio.sleep(1)


async def connect_phase(
    args: argparse.Namespace, run: Run, server: RewindServer, cookie: str, job_id: int, until: float
) -> list[asyncio.Task]:
    began = time.monotonic()
    endpoint = Endpoint(
        url=server.url.replace("http://", "ws://") + f"/jobs/{job_id}/ws",
        origin=server.url,
        cookie=cookie,
        timeout=max(1.0, min(args.connect_timeout, until - began)),
        gate=asyncio.Semaphore(args.connect_concurrency or args.watchers),
        linger=args.linger,
    )
    tasks = await connect_all(run.watchers, endpoint)
    run.connect_wall_s = time.monotonic() - began
    log(f"{sum(w.connect_s is not None for w in run.watchers)} connected in {run.connect_wall_s:.1f} s")
    return tasks


async def emit_phase(
    run: Run, session: Session, blocker: int, tasks: list[asyncio.Task], stats: ProcStats, until: float
) -> None:
    """Free the job thread so the measured job runs; wait for every watcher to see it end."""
    sample(stats)
    user, system, client, began = stats.user_s, stats.system_s, time.process_time(), time.monotonic()
    probe = asyncio.create_task(probe_loop_lag(run.loop_lag_ms))
    if await http_until(until, "cancelling the blocker", lambda: cancel_job(session, blocker)) is not None:
        log("job started")
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, until - time.monotonic()))
    run.timed_out = bool(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    probe.cancel()
    run.emit_wall_s = time.monotonic() - began
    sample(stats)
    run.server_user_pct = 100 * (stats.user_s - user) / run.emit_wall_s
    run.server_system_pct = 100 * (stats.system_s - system) / run.emit_wall_s
    run.client_cpu_pct = 100 * (time.process_time() - client) / run.emit_wall_s
    run.after = stats


async def measure(args: argparse.Namespace, server: RewindServer, session: Session, deadline: float) -> Run:
    lines = max(1, (args.events - FIXED_EVENTS) // 2)
    blocker = start_count_job(session, 1, args.timeout + 60)
    job_id = start_count_job(session, lines, args.job_seconds / lines)
    run = Run([Watcher(i) for i in range(args.watchers)])
    stats = ProcStats(gunicorn_worker(server.process.pid))
    sample(stats)
    run.before = ProcStats(**vars(stats))
    sampler = asyncio.create_task(keep_sampling(stats))

    until = deadline - min(FINISH_RESERVE_S, args.timeout / 4)  # watching stops here
    log(f"connecting {args.watchers} watchers to job {job_id} (queued behind job {blocker})")
    tasks = await connect_phase(args, run, server, session.cookie, job_id, until)
    await emit_phase(run, session, blocker, tasks, stats, until)
    sampler.cancel()

    final = await http_until(deadline, "reading the job's final state", lambda: current_state(session, job_id))
    if final is None:  # fall back on what the watchers saw
        run.final_seq = max((seq for w in run.watchers for seq in w.latency_ms), default=0)
        run.final_state = "unknown"
    else:
        run.final_seq, run.final_state = final[0], final[1].value
    return run


# --- the report -----------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest rank; nan when there is nothing to rank."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def spread(values: Sequence[float]) -> str:
    ordered = sorted(values)
    parts = [f"p{p}={percentile(ordered, p):.1f}" for p in (50, 90, 99)]
    return " ".join(parts) + f" max={ordered[-1] if ordered else math.nan:.1f}"


def baseline(run: Run) -> int:
    """The seq measuring starts after: the earliest snapshot any watcher got (0 for a queued job)."""
    seqs = [w.snapshot_seq for w in run.watchers if w.snapshot_seq is not None]
    return min(seqs) if seqs else 0


def lost_events(watcher: Watcher, final_seq: int, start: int) -> int:
    first = watcher.snapshot_seq if watcher.snapshot_seq is not None else start
    return sum(1 for seq in range(first + 1, final_seq + 1) if seq not in watcher.latency_ms)


def fanout_spread_ms(watchers: list[Watcher]) -> list[float]:
    """Per event: first arrival at any watcher to last arrival at any watcher."""
    times: dict[int, list[float]] = {}
    for watcher in watchers:
        for seq, arrived in watcher.arrived.items():
            times.setdefault(seq, []).append(arrived)
    return [(max(t) - min(t)) * 1000 for t in times.values()]


def by_phase(watchers: list[Watcher], start: int, final_seq: int, phases: int = 5) -> list[str]:
    """Latency per slice of the job's events, to show whether a backlog builds up."""
    width = max(1, math.ceil((final_seq - start) / phases))
    rows = []
    for lo in range(start + 1, final_seq + 1, width):
        hi = min(final_seq, lo + width - 1)
        values = sorted(lat for w in watchers for seq, lat in w.latency_ms.items() if lo <= seq <= hi)
        rows.append(f"  seq {lo:>4}-{hi:<4} n={len(values):<7} {spread(values)}")
    return rows


def report(args: argparse.Namespace, run: Run, threads: int, server_log: Path) -> str:
    start = baseline(run)
    connected = [w for w in run.watchers if w.connect_s is not None]
    latencies = sorted(lat for w in run.watchers for lat in w.latency_ms.values())
    counts = [len(w.latency_ms) for w in connected]
    lost = sum(lost_events(w, run.final_seq, start) for w in run.watchers)
    duplicates = sum(w.duplicates for w in run.watchers)
    errors = Counter(w.error for w in run.watchers if w.error)
    unfinished = sum(1 for w in connected if w.final_seq is None)
    before, after = run.before, run.after
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)

    print(f"== ws fan-out: {args.watchers} watchers, {args.events} events requested, {args.job_seconds:.0f} s job")
    herd = f"{args.connect_concurrency} at a time" if args.connect_concurrency else "all at once"
    print(f"settings: 1 gunicorn gthread worker, REWIND_THREADS={threads}, REWIND_JOB_THREADS=1, SQLite ops db")
    closing = "wait for the server to close" if args.linger else "close at once"
    print(f"handshakes: {herd}; after the final state watchers {closing}")
    print(f"job: final seq {run.final_seq} ({run.final_state}); measured from seq {start}")
    print(
        f"connect: {len(connected)}/{args.watchers} watchers in {run.connect_wall_s:.2f} s wall; "
        f"per watcher (ms) {spread([w.connect_s * 1000 for w in connected])}"
    )
    if errors:
        print(f"watcher errors: {dict(errors)}")
    if counts:
        print(
            f"events per connected watcher: min={min(counts)} median={statistics.median(counts):.0f} "
            f"max={max(counts)} (expected {run.final_seq - start})"
        )
    print(f"watchers that never saw the final state: {unfinished}{' (total timeout hit)' if run.timed_out else ''}")
    print(f"latency (ms) over {len(latencies)} deliveries: {spread(latencies)}")
    print(*by_phase(run.watchers, start, run.final_seq), sep="\n")
    print(f"fan-out spread per event, first to last watcher (ms): {spread(fanout_spread_ms(run.watchers))}")
    print(f"lost={lost} duplicates={duplicates}")
    print(
        f"emit phase: {run.emit_wall_s:.1f} s wall; CPU (100% = one core): server worker "
        f"{run.server_user_pct:.0f}% user + {run.server_system_pct:.0f}% system, this client {run.client_cpu_pct:.0f}%"
    )
    print(f"this client's event-loop lag (ms), a floor under every latency above: {spread(run.loop_lag_ms)}")
    if before and after:
        print(
            f"gunicorn worker pid {after.pid}: threads {before.threads} idle -> {after.peak_threads} peak; "
            f"RSS {before.rss_mb:.0f} MB idle -> {after.peak_rss_mb:.0f} MB peak"
        )
    print_log_warnings(server_log)
    verdict = "PASS" if lost == 0 and p99 < P99_TARGET_MS and not errors else "FAIL"
    if run.final_state not in {s.value for s in JobState if s.is_final}:
        verdict = f"INCOMPLETE (the job was still {run.final_state} when time ran out)"
    print(f"target p99 < {P99_TARGET_MS:.0f} ms and lost=0: {verdict}")
    return f"watchers={args.watchers} events={run.final_seq - start} p50_ms={p50:.1f} p99_ms={p99:.1f} lost={lost}"


def print_log_warnings(server_log: Path) -> None:
    """How many warnings and errors the server logged, and which exceptions ended its tracebacks."""
    with contextlib.suppress(OSError):
        lines = server_log.read_text(errors="replace").splitlines()
        noisy = Counter(f"{m[1]} {m[2]}"[:160] for line in lines if (m := LOG_PROBLEM.match(line)))
        raised = Counter(line[:160] for line in lines if EXCEPTION_LINE.match(line))
        print(f"server log: {len(lines)} lines, {noisy.total()} warnings/errors")
        for line, count in [*noisy.most_common(4), *raised.most_common(4)]:
            print(f"  {count:>6} x {line}")


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--events", type=int, default=200, help="events the measured job emits in total")
    parser.add_argument("--job-seconds", type=float, default=10.0, help="how long the measured job emits for")
    parser.add_argument("--threads", type=int, default=0, help=f"REWIND_THREADS (default watchers+{THREAD_MARGIN})")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="for every watcher's handshake")
    parser.add_argument(
        "--connect-concurrency", type=int, default=0, help="handshakes in flight at once (default: all at once)"
    )
    parser.add_argument(
        "--linger", action="store_true", help="after the final state, keep the socket until the server closes it"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="for the whole run, server start included")
    parser.add_argument("--keep", action="store_true", help="keep the instance directory and server log")
    args = parser.parse_args(argv)
    if args.events < FIXED_EVENTS + 2:
        parser.error(f"--events must be at least {FIXED_EVENTS + 2}")
    return args


def serves(pid: int, instance_dir: Path) -> bool:
    """Whether pid is still this run's gunicorn worker (and not a process that reused its number)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"REWIND_INSTANCE_DIR={instance_dir}".encode() in environ


def stop_orphan(pid: int, instance_dir: Path, grace_s: float = 5.0) -> None:
    """RewindServer.stop() kills the master after 10 s, before gunicorn's 20 s graceful timeout,
    which can leave the worker running (it waits for job threads); end it by its own pid."""
    if not serves(pid, instance_dir):
        return
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout
    threads = args.threads or args.watchers + THREAD_MARGIN
    raise_fd_limit(4 * args.watchers + 1024)  # client sockets here; the server inherits the limit
    workdir = Path(tempfile.mkdtemp(prefix="rewind-ws-bench-"))
    server = RewindServer(
        workdir / "instance",
        REWIND_RUNBOOKS="tests.support.runbooks",
        REWIND_ACCESS_LOG="0",
        REWIND_WORKERS="1",
        REWIND_THREADS=str(threads),
        REWIND_JOB_THREADS="1",
        # every watcher is the admin in one session: lift the per-session and per-user caps for the bench
        REWIND_WS_PER_SESSION=str(args.watchers),
        REWIND_WS_PER_USER=str(args.watchers),
        REWIND_THREAD_RESERVE=str(max(1, min(16, threads - args.watchers))),
    )
    worker: int | None = None
    try:
        log(f"starting Rewind on {server.url} with {threads} threads")
        server.start()
        worker = gunicorn_worker(server.process.pid)
        session = Session(server.url)
        session.login("admin", server.admin_password)
        run = asyncio.run(measure(args, server, session, deadline))
        figure = report(args, run, threads, server.log)
    finally:
        server.stop()
        if worker is not None:
            stop_orphan(worker, server.instance_dir)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
