"""Benchmark the revert RTO: from the click on "Revert" to the target answering healthy again.

    python bench/revert_rto.py [--runs 10] [--budget-s 600]

Everything runs for real in a temporary folder: a Rewind instance (SQLite ops
database) holding a freshly built demo sandbox (`build_demo`: staging and
production, each a small Flask app in a git repository, run as a managed
process), and Rewind itself under gunicorn (`tests.support.server.RewindServer`),
signed in as the first admin. Each run, on target `staging`:

1. deploy `feature/rollback-drill-bad-code` with auto_rollback=off (POST /jobs);
   the job must fail verification, and staging's /health must answer unhealthy;
2. read the bad commit at the head of staging's branch (the deploy fast-forwards);
3. start the timer, POST /jobs runbook=revert commits=<bad sha> (the request the
   Revert button sends), then probe staging's /health directly every 20 ms until
   it answers 200 with {"status": "healthy"}: that is **click_to_healthy**;
4. wait for the revert job to end succeeded; its queue wait, duration and
   per-step timeline are read from the ops database;
5. put staging back with Rewind's own reset runbook (to the main head recorded
   before the first run), so the bad branch fast-forwards again next run.

Targets: the written rollback procedure's target is under 5 minutes; Rewind's
target is under **5 seconds** from click to healthy.

The last line on stdout is the figure line, e.g.
`runs=10 click_to_healthy_p50_s=1.8 click_to_healthy_max_s=2.6`; per-run details
go to stderr. The whole benchmark stops with an error once --budget-s has passed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from app.demo.build import DemoTarget, build_demo, stop_demo  # noqa: E402
from app.demo.history import BAD_BRANCH  # noqa: E402
from tests.support.http import Session  # noqa: E402
from tests.support.server import RewindServer  # noqa: E402

TARGET = "staging"
REWIND_TARGET_S = 5.0
PROCEDURE_TARGET_S = 300.0
HEALTH_POLL_S = 0.02
JOB_POLL_S = 0.25
PROBE_TIMEOUT_S = 1.0
JOB_LIMIT_S = 120.0  # any one job
HEALTHY_LIMIT_S = 60.0  # click to healthy
JOB_STATE = re.compile(r'id="job-state"[^>]*data-state="(\w+)"')
JOB_URL = re.compile(r"/jobs/(\d+)$")
FLASH = re.compile(r'<p class="flash flash-error">(.*?)</p>', re.S)
FINAL_STATES = {"succeeded", "failed", "cancelled", "interrupted"}


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says what was seen."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Deadline:
    """The whole benchmark's time budget; every wait is bounded by it and by its own limit."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.ends = time.monotonic() + budget_s

    def limit(self, what: str, own_limit_s: float) -> float:
        """A monotonic time by which `what` must be done."""
        if time.monotonic() >= self.ends:
            raise BenchError(f"the {self.budget_s:.0f} s budget ran out before {what}")
        return min(self.ends, time.monotonic() + own_limit_s)

    def expired(self, what: str, own_limit_s: float) -> BenchError:
        if time.monotonic() >= self.ends:
            return BenchError(f"the {self.budget_s:.0f} s budget ran out while waiting for {what}")
        return BenchError(f"{what}: not done after {own_limit_s:.0f} s")


# --- the target, seen from outside -------------------------------------------------------------------------------


def health_answer(url: str) -> str:
    """'healthy' when the URL answers 200 with {"status": "healthy"}; otherwise what it answered."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        status = None
    if response.status == 200 and status == "healthy":
        return "healthy"
    return f"status {response.status}, {status!r}"


def wait_healthy(url: str, deadline: Deadline) -> float:
    """Probe every HEALTH_POLL_S until healthy; seconds since the call."""
    started = time.perf_counter()
    ends = deadline.limit(f"{url} to answer healthy", HEALTHY_LIMIT_S)
    while time.monotonic() < ends:
        probe_started = time.perf_counter()
        if health_answer(url) == "healthy":
            return time.perf_counter() - started
        time.sleep(max(0.0, HEALTH_POLL_S - (time.perf_counter() - probe_started)))
    raise deadline.expired(f"{url} to answer healthy", HEALTHY_LIMIT_S)


def git_head(repo: Path, ref: str = "HEAD") -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        raise BenchError(f"git rev-parse {ref} in {repo} failed: {done.stderr.strip()}")
    return done.stdout.strip()


# --- Rewind, through its web pages -------------------------------------------------------------------------------


def start_job(session: Session, runbook: str, **params: str) -> int:
    """POST /jobs as the runbook forms do; the new job's id from the redirect."""
    status, headers, body = session.post("/jobs", {"runbook": runbook, "target": TARGET, **params})
    match = JOB_URL.search(urlsplit(headers.get("Location", "")).path)
    if status != 302 or match is None:
        flashes = "; ".join(re.sub(r"<[^>]+>", "", text).strip() for text in FLASH.findall(body))
        raise BenchError(f"POST /jobs runbook={runbook} answered {status}: {flashes or body[:300]}")
    return int(match.group(1))


def wait_job(session: Session, job_id: int, expect: str, deadline: Deadline) -> None:
    """Poll the job page until #job-state shows a final state; BenchError unless it is `expect`."""
    what = f"job #{job_id} to end"
    ends = deadline.limit(what, JOB_LIMIT_S)
    while time.monotonic() < ends:
        status, _, body = session.get(f"/jobs/{job_id}")
        match = JOB_STATE.search(body)
        if status != 200 or match is None:
            raise BenchError(f"GET /jobs/{job_id} answered {status} without a job-state element")
        if match.group(1) in FINAL_STATES:
            if match.group(1) != expect:
                raise BenchError(f"job #{job_id} ended {match.group(1)}, expected {expect}")
            return
        time.sleep(JOB_POLL_S)
    raise deadline.expired(what, JOB_LIMIT_S)


# --- a job's timeline, from the ops database ---------------------------------------------------------------------


@dataclass
class JobRecord:
    """One job as the ops database has it; times are Unix seconds."""

    id: int
    result: str
    created: float
    started: float
    finished: float
    steps: list[tuple[str, float, float]] = field(default_factory=list)  # title, start, end
    lines: list[tuple[float, str]] = field(default_factory=list)  # flush time, log text

    @property
    def duration_s(self) -> float:
        """Queued to finished: what the person who clicked waits for."""
        return self.finished - self.created


def unix(stamp: str) -> float:
    """A naive-UTC timestamp as SQLAlchemy stores it in SQLite."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def read_job(ops_db: Path, job_id: int) -> JobRecord:
    with closing(sqlite3.connect(f"file:{ops_db}?mode=ro", uri=True, timeout=10)) as conn:
        created, started, finished, result = conn.execute(
            "SELECT created_at, started_at, finished_at, result FROM job WHERE id = ?", (job_id,)
        ).fetchone()
        events = conn.execute(
            "SELECT kind, step, payload, ts FROM job_event WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
    record = JobRecord(job_id, result or "", unix(created), unix(started), unix(finished))
    titles: list[str] = []
    step_start: dict[int, float] = {}
    for kind, step, payload, ts in events:
        data, when = json.loads(payload), unix(ts)
        if kind == "job" and "steps" in data:
            titles = data["steps"]
        elif kind == "step" and data.get("state") == "running":
            step_start[step] = when
        elif kind == "step" and step in step_start:
            record.steps.append((titles[step] if step < len(titles) else str(step), step_start.pop(step), when))
        elif kind == "log":
            record.lines += [(when, text) for _stream, text in data["lines"]]
    return record


# --- one run -----------------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    session: Session
    target: DemoTarget
    ops_db: Path
    good_head: str
    deadline: Deadline


@dataclass
class RunResult:
    deploy_s: float
    post_s: float
    click_to_healthy_s: float
    revert: JobRecord
    clicked_at: float  # Unix time just before the POST was sent
    reset_s: float | None = None


def break_staging(box: Sandbox) -> tuple[float, str]:
    """Deploy the bad branch with auto_rollback off; (the deploy job's duration, the bad head)."""
    job_id = start_job(box.session, "deploy", ref=BAD_BRANCH, auto_rollback="off")
    wait_job(box.session, job_id, "failed", box.deadline)
    deploy = read_job(box.ops_db, job_id)
    if "did not become healthy" not in deploy.result:
        raise BenchError(f"the deploy (job #{job_id}) failed for another reason than health: {deploy.result}")
    answer = health_answer(box.target.health_url)
    if answer == "healthy":
        raise BenchError(f"after the bad deploy {box.target.health_url} still answers healthy")
    bad = git_head(box.target.app_dir)
    if bad != git_head(box.target.app_dir, BAD_BRANCH):
        log(f"  note: the deploy made a merge commit {bad[:12]} (no fast-forward); reverting that")
    return deploy.duration_s, bad


def revert_and_time(box: Sandbox, bad: str) -> tuple[float, float, float, int]:
    """Click Revert and wait for healthy: (Unix time of the click, POST round trip, click_to_healthy, job id)."""
    clicked_at = time.time()
    started = time.perf_counter()
    job_id = start_job(box.session, "revert", commits=bad)
    post_s = time.perf_counter() - started
    wait_healthy(box.target.health_url, box.deadline)
    return clicked_at, post_s, time.perf_counter() - started, job_id


def reset_staging(box: Sandbox) -> float:
    """Rewind's reset runbook back to the original main head; its duration. Checks head and health after."""
    job_id = start_job(box.session, "reset", commit=box.good_head)
    wait_job(box.session, job_id, "succeeded", box.deadline)
    head = git_head(box.target.app_dir)
    if head != box.good_head:
        raise BenchError(f"after the reset {TARGET} runs {head[:12]}, expected {box.good_head[:12]}")
    check_ready(box)
    return read_job(box.ops_db, job_id).duration_s


def check_ready(box: Sandbox) -> None:
    answer = health_answer(box.target.health_url)
    if answer != "healthy":
        raise BenchError(f"{TARGET} is not healthy before a run ({box.target.health_url}: {answer})")


def one_run(box: Sandbox, number: int, last: bool) -> RunResult:
    check_ready(box)
    deploy_s, bad = break_staging(box)
    clicked_at, post_s, click_to_healthy, job_id = revert_and_time(box, bad)
    wait_job(box.session, job_id, "succeeded", box.deadline)
    run = RunResult(deploy_s, post_s, click_to_healthy, read_job(box.ops_db, job_id), clicked_at)
    log_run(number, run)
    if not last:
        run.reset_s = reset_staging(box)
        log(f"  reset to {box.good_head[:12]} took {run.reset_s:.1f} s")
    return run


# --- reporting ---------------------------------------------------------------------------------------------------


def log_run(number: int, run: RunResult) -> None:
    job = run.revert
    steps = ", ".join(f"{title.lower()} {end - start:.2f}" for title, start, end in job.steps)
    log(
        f"run {number}: deploy job {run.deploy_s:.1f} s (failed verification, as meant) | "
        f"click_to_healthy {run.click_to_healthy_s:.2f} s | revert job #{job.id} {job.duration_s:.2f} s "
        f"(POST {run.post_s:.2f}, queued {job.started - job.created:.2f}; {steps})"
    )


def log_timeline(run: RunResult) -> None:
    """The revert job's steps and log lines, in seconds after the click (log lines carry their flush time)."""
    job, t0 = run.revert, run.clicked_at
    events = [(job.created, "queued"), (job.started, "started by the runner"), (job.finished, "job finished")]
    events += [(start, f"step {title!r} starts (ends at {end - t0:.2f})") for title, start, end in job.steps]
    events += [(when, f"  | {text[:110]}") for when, text in job.lines]
    events.append((t0 + run.click_to_healthy_s, "/health answers healthy (seen by the 20 ms poll)"))
    log(f"  timeline of job #{job.id}, seconds after the click:")
    for when, text in sorted(events, key=lambda event: event[0]):
        log(f"    {when - t0:6.2f}  {text}")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summarise(runs: list[RunResult]) -> tuple[float, float]:
    values = [r.click_to_healthy_s for r in runs]
    p50, worst = statistics.median(values), max(values)
    jobs = [r.revert.duration_s for r in runs]
    log(
        f"click_to_healthy over {len(runs)} runs: p50 {p50:.2f} s, p90 {percentile(values, 90):.2f} s, "
        f"max {worst:.2f} s, min {min(values):.2f} s (Rewind's target < {REWIND_TARGET_S:.0f} s, "
        f"the written procedure's < {PROCEDURE_TARGET_S / 60:.0f} min)"
    )
    log(f"revert job duration: p50 {statistics.median(jobs):.2f} s, max {max(jobs):.2f} s")
    by_step: dict[str, list[float]] = {}
    for run in runs:
        for title, start, end in run.revert.steps:
            by_step.setdefault(title, []).append(end - start)
    log(
        "revert steps, p50 / max: "
        + ", ".join(f"{t} {statistics.median(v):.2f}/{max(v):.2f}" for t, v in by_step.items())
    )
    if p50 >= REWIND_TARGET_S:
        log(f"warning: p50 misses the {REWIND_TARGET_S:.0f} s target")
    return p50, worst


# --- setting up and tearing down ---------------------------------------------------------------------------------


@contextmanager
def sandbox(budget_s: float) -> Iterator[Sandbox]:
    """A temporary Rewind instance with the demo built and Rewind served; all stopped and removed afterwards."""
    # A short path: gpg-agent's socket lives in the demo's GnuPG homes, and socket paths stop at 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rw-rto-"))
    instance = root / "instance"
    demo_root, targets_file = instance / "demo", instance / "rewind.toml"
    server: RewindServer | None = None
    try:
        deadline = Deadline(budget_s)
        log(f"building the demo in {demo_root}")
        demo = build_demo(demo_root, targets_file, on_line=lambda text: log(f"  {text}"))
        log("starting Rewind")
        server = RewindServer(instance, REWIND_ACCESS_LOG="0", REWIND_CONFIG=str(targets_file)).start()
        log(f"  Rewind on {server.url} (gunicorn pid {server.process.pid})")
        session = Session(server.url)
        session.login("admin", server.admin_password)
        target = demo[TARGET]
        good_head = git_head(target.app_dir)
        log(f"  {TARGET}: {target.health_url}, main at {good_head[:12]}")
        yield Sandbox(session, target, instance / "rewind.db", good_head, deadline)
    finally:
        if server is not None:
            server.stop()
            log("stopped Rewind")
        stopped = stop_demo(demo_root)
        log(f"stopped the demo apps: {', '.join(stopped) or 'none was running'}")
        shutil.rmtree(root, ignore_errors=True)


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so the clean-up in sandbox() runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="deploy-bad / revert cycles (default 10)")
    parser.add_argument("--budget-s", type=float, default=600, help="stop with an error after this long (default 600)")
    parser.add_argument("--timeline", action="store_true", help="print every revert job's log against the click")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    stop_on_sigterm()
    os.environ.pop("REWIND_DATABASE_URL", None)  # the ops database is the temporary instance's SQLite file

    runs: list[RunResult] = []
    try:
        with sandbox(args.budget_s) as box:
            for number in range(1, args.runs + 1):
                runs.append(one_run(box, number, last=number == args.runs))
                if args.timeline or number == 1:
                    log_timeline(runs[-1])
    except BenchError as exc:
        raise SystemExit(f"error after {len(runs)} finished run(s): {exc}") from None
    p50, worst = summarise(runs)
    print(f"runs={len(runs)} click_to_healthy_p50_s={p50:.1f} click_to_healthy_max_s={worst:.1f}", flush=True)


if __name__ == "__main__":
    main()
