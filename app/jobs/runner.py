"""The runner: claims queued jobs, holds target locks, runs jobs on a thread pool.

One runs inside each web process by default (started by gunicorn's
post_worker_init hook) and in each `flask rewind worker` process. On
PostgreSQL, jobs are claimed with FOR UPDATE SKIP LOCKED, and a running job
holds two session advisory locks on its own connection: one for the job (so
a starting runner can tell a live job from an orphan) and one for its target
(so two processes never change one target at once). On SQLite the same two
locks are flock()ed files under the instance folder. Either kind vanishes
with the process, which is what makes "interrupted" detectable.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import select, text, update

from app.clock import utcnow
from app.extensions import db
from app.jobs.execution import execute, fail_unfinished, mark_interrupted, settle_orphan
from app.jobs.models import Job
from app.statuses import JobState
from app.targets import procfs

log = logging.getLogger(__name__)

JOB_LOCKS = 0x52570001  # advisory lock namespaces ("RW" + 1, 2, 3)
TARGET_LOCKS = 0x52570002
RUNNER_LOCKS = 0x52570003  # every running Runner holds (RUNNER_LOCKS, 0) shared: "someone will run jobs"
CLAIM_BATCH = 20
SWEEP_S = 30.0  # how often a runner looks for running jobs whose process died
CLAIM_SQL = "SELECT id, target, mutates FROM job WHERE state = :queued ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
CLAIM_ONE_SQL = "SELECT id, target, mutates FROM job WHERE state = :queued AND id = :only FOR UPDATE SKIP LOCKED"


def target_key(target: str) -> int:
    return zlib.crc32(target.encode()) - 2**31  # advisory keys are signed 32-bit


class FileLocks:
    """Process-held locks as flock()ed files: released by the kernel when the holder dies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _open(self, name: str) -> int:
        return os.open(self.root / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)

    def try_lock(self, name: str) -> int | None:
        fd = self._open(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def hold_shared(self, name: str) -> int:
        """A lock many may hold at once; waits out a probe's brief exclusive hold."""
        fd = self._open(name)
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd

    @staticmethod
    def release(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def runners_alive(app: Flask) -> bool:
    """Whether any started Runner (web process or `flask rewind worker`) is up to claim queued jobs.

    Each one holds the runners lock shared for its whole life; if it can be
    taken exclusively, nobody holds it. The kernel or the server drops it
    when a process dies, so a crashed runner never counts.
    """
    settings = app.config["REWIND_SETTINGS"]
    with app.app_context():
        if settings.is_postgres:
            with db.engine.connect() as conn:
                free = Runner._try_lock(conn, RUNNER_LOCKS, 0)
                if free:
                    Runner._unlock(conn, RUNNER_LOCKS, 0)
                conn.commit()
            return not free
    fd = FileLocks(settings.instance_dir / "locks").try_lock("runners")
    if fd is None:
        return True
    FileLocks.release(fd)
    return False


def interrupt_if_dead(app: Flask, job: Job) -> bool:
    """Mark a running job interrupted if the process that ran it is gone; True if it was.

    Gone means its job lock can be taken; it is marked while that lock is
    held, so a live job is never touched. Busy checks call it too: a job
    whose process was SIGKILLed must not keep its target refused until some
    runner happens to start.
    """
    held = _lock_job(app, job.id)
    if held is None:
        return False  # its runner is alive
    try:
        # Read again under its lock: looked at earlier (a sweep's list, a busy check), the job may have ended since,
        # or its process begun its next command before dying. settle_orphan stops the group the row names now.
        db.session.refresh(job)
        if job.job_state != JobState.RUNNING:
            return False
        if _claimer_alive_here(job):
            # Its lock went without its process: the server, a proxy or idle_session_timeout closed the PostgreSQL
            # connection holding it (or someone removed the lock files). The job still runs its commands.
            log.warning("job %s lost its job lock, but %s that runs it is alive; not marked", job.id, job.worker)
            return False
        # Its command stopped first, holding only the job's lock: under serialise() every audited write would wait.
        if mark_interrupted(job, orphan=settle_orphan(job), settled=True):
            log.warning("job %s was running when its process stopped; marked interrupted", job.id)
            return True
        return False
    finally:
        _release(held)


CLAIM_CLOCK_SLACK = timedelta(seconds=2)  # boot time has whole seconds; a process started later is another one
_RUNNING_HERE: set[int] = set()  # jobs this process claimed and has not let go of
_RUNNING_HERE_LOCK = threading.Lock()


def _runs_here(job_id: int, running: bool) -> None:
    with _RUNNING_HERE_LOCK:
        (_RUNNING_HERE.add if running else _RUNNING_HERE.discard)(job_id)


def _claimer_alive_here(job: Job) -> bool:
    """Is the process that claimed this job (its `worker`, "host:pid" or "host:pid/cli") alive on this host?

    The same process, not only its pid: a pid reused since (a restarted container keeps its hostname and often its
    pids) started after the job was claimed. Another host's process cannot be seen: there the lock decides alone.
    """
    host, sep, rest = (job.worker or "").rpartition(":")
    pid = rest.split("/", 1)[0]
    if not sep or host != socket.gethostname() or not pid.isdigit() or job.started_at is None:
        return False
    if int(pid) == os.getpid():  # this process: alive is not enough, one of its threads must still run the job
        with _RUNNING_HERE_LOCK:
            return job.id in _RUNNING_HERE
    found = procfs.stat(int(pid))
    if found is None or found.gone:
        return False
    started = procfs.started_at(int(pid))
    return started is not None and started <= job.started_at.replace(tzinfo=UTC) + CLAIM_CLOCK_SLACK


def _lock_job(app: Flask, job_id: int):
    settings = app.config["REWIND_SETTINGS"]
    if settings.is_postgres:
        conn = db.engine.connect()
        if Runner._try_lock(conn, JOB_LOCKS, job_id):
            return ("pg", conn)
        _release(("pg", conn))
        return None
    fd = FileLocks(settings.instance_dir / "locks").try_lock(f"job-{job_id}")
    return None if fd is None else ("files", [fd])


def _release(held) -> None:
    """Give back a job's locks. A pooled connection outlives the job, so its session locks must go."""
    kind, handle = held
    if kind == "files":
        for fd in handle:
            FileLocks.release(fd)
        return
    try:
        handle.rollback()  # an aborted transaction would refuse the unlock
        handle.execute(text("SELECT pg_advisory_unlock_all()"))
        handle.commit()
    except Exception:
        log.exception("could not release advisory locks; discarding the connection")
        handle.invalidate()  # closing the server session drops its locks
    finally:
        handle.close()


class Runner:
    def __init__(
        self,
        app: Flask,
        workers: int = 4,
        poll_s: float = 1.0,
        identity: str | None = None,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self.app = app
        self.workers = workers
        self.poll_s = poll_s
        self.sweep_s = sweep_s
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        settings = app.config["REWIND_SETTINGS"]
        self.postgres = settings.is_postgres
        self.files = None if self.postgres else FileLocks(settings.instance_dir / "locks")
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rewind-job")
        self._busy = 0
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._presence = None

    # --- life cycle ------------------------------------------------------------------

    def start(self) -> Runner:
        with self.app.app_context():
            self.sweep_interrupted()
            self._presence = self._announce()
        self.app.extensions["rewind"].bus.on_queued(self.wake)
        self._thread = threading.Thread(target=self._loop, name="rewind-dispatch", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if self._presence is not None:
            _release(self._presence)
            self._presence = None

    def _announce(self):
        """Hold the runners lock shared, so `runners_alive()` elsewhere knows jobs will be claimed."""
        if self.postgres:
            conn = db.engine.connect()
            conn.execute(text("SELECT pg_advisory_lock_shared(:ns, 0)"), {"ns": RUNNER_LOCKS})
            conn.commit()
            return ("pg", conn)
        return ("files", [self.files.hold_shared("runners")])

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def drain(self, timeout_s: float, settle_s: float = 10.0) -> list[int]:
        """Graceful stop: claim nothing more, let running jobs finish within timeout_s, then interrupt the rest.

        The rest are marked interrupted ("Rewind was stopped") and asked to stop
        their commands, as a cancel would; returns their ids. Waits up to
        settle_s more for their threads to let go.
        """
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._idle:
            self._idle.wait_for(lambda: not self._running, timeout=timeout_s)
            left = sorted(self._running)
        if not left:
            # Nothing to mark: no database either. Ctrl-C drains from a signal handler, which may have landed while
            # the main thread held the connection pool's lock (starting up, say): asking for a connection would wait
            # on that thread for ever.
            return []
        interrupted = []
        with self.app.app_context():
            for job_id in left:
                job = db.session.get(Job, job_id)
                reason = f"its jobs did not finish within the graceful timeout of {timeout_s:g} s"
                if job is not None and mark_interrupted(job, stopped=reason):
                    log.warning("job %s did not finish before Rewind stopped; marked interrupted", job_id)
                    interrupted.append(job_id)
            db.session.commit()
            db.session.remove()
        with self._idle:
            self._idle.wait_for(lambda: not self._running, timeout=settle_s)
        return interrupted

    def wake(self) -> None:
        self._wake.set()

    # --- interrupted jobs --------------------------------------------------------------

    def sweep_interrupted(self) -> int:
        """Mark running jobs whose process is gone as interrupted; returns how many.

        A job is judged gone only if its lock can be taken, and is marked
        while that lock is held, so a live job is never touched.
        """
        running = db.session.scalars(select(Job).where(Job.state == JobState.RUNNING.value)).all()
        swept = sum(interrupt_if_dead(self.app, job) for job in running)
        db.session.remove()
        return swept

    # --- claiming ----------------------------------------------------------------------

    def _loop(self) -> None:
        next_sweep = time.monotonic() + self.sweep_s
        with self.app.app_context():
            while not self._stop.is_set():
                self._wake.wait(self.poll_s)
                self._wake.clear()
                try:
                    if time.monotonic() >= next_sweep:
                        # Another process's job whose process died (a sibling worker killed outright) reads running
                        # on its page for ever unless someone looks: look now and then, not only at start.
                        next_sweep = time.monotonic() + self.sweep_s
                        self.sweep_interrupted()
                    while self._free_slot() and self._claim_and_submit():
                        pass
                except Exception:
                    log.exception("the job dispatcher hit an error; retrying")
                finally:
                    db.session.remove()

    def _free_slot(self) -> bool:
        with self._lock:
            return self._busy < self.workers and not self._stop.is_set()

    def _claim_and_submit(self) -> bool:
        claimed = self._claim_postgres() if self.postgres else self._claim_local()
        if claimed is None:
            return False
        job_id, held = claimed
        _runs_here(job_id, True)
        with self._lock:
            self._busy += 1
            self._running.add(job_id)
        self._pool.submit(self._run, job_id, held)
        return True

    def claim(self, job_id: int):
        """Claim this one queued job with the same locks as any other claim; None if it is not to be had.

        None means another runner holds it (or it is no longer queued), so
        the caller follows the job instead of running it. Pass what this
        returns to run_claimed().
        """
        with self.app.app_context():
            try:
                claimed = self._claim_postgres(only=job_id) if self.postgres else self._claim_local(only=job_id)
            finally:
                db.session.remove()
        if claimed is None:
            return None
        _runs_here(job_id, True)
        with self._lock:
            self._busy += 1
        return claimed[1]

    def run_claimed(self, job_id: int, held) -> None:
        """Run a job claim() returned, in the calling thread, then give back its locks."""
        self._run(job_id, held)

    def _claim_local(self, only: int | None = None):
        stmt = select(Job.id, Job.target, Job.mutates).where(Job.state == JobState.QUEUED.value)
        if only is not None:
            stmt = stmt.where(Job.id == only)
        candidates = db.session.execute(stmt.order_by(Job.id).limit(CLAIM_BATCH)).all()
        db.session.commit()
        for job_id, target, mutates in candidates:
            fds = []
            job_fd = self.files.try_lock(f"job-{job_id}")
            if job_fd is None:
                continue
            fds.append(job_fd)
            if mutates and target:
                target_fd = self.files.try_lock(f"target-{target}")
                if target_fd is None:
                    _release(("files", fds))
                    continue
                fds.append(target_fd)
            if self._mark_running(job_id):
                db.session.commit()
                return job_id, ("files", fds)
            db.session.rollback()
            _release(("files", fds))
        return None

    def _claim_postgres(self, only: int | None = None):
        conn = db.engine.connect()
        try:
            candidates = conn.execute(
                text(CLAIM_ONE_SQL if only is not None else CLAIM_SQL),
                {"queued": JobState.QUEUED.value, "n": CLAIM_BATCH, "only": only},
            ).all()
            for job_id, target, mutates in candidates:
                if not self._try_lock(conn, JOB_LOCKS, job_id):
                    continue
                if mutates and target and not self._try_lock(conn, TARGET_LOCKS, target_key(target)):
                    self._unlock(conn, JOB_LOCKS, job_id)
                    continue
                conn.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(state=JobState.RUNNING.value, worker=self.identity, started_at=utcnow())
                )
                conn.commit()
                return job_id, ("pg", conn)
            conn.commit()
        except Exception:
            _release(("pg", conn))
            raise
        _release(("pg", conn))
        return None

    def _mark_running(self, job_id: int) -> bool:
        result = db.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
            .values(state=JobState.RUNNING.value, worker=self.identity, started_at=utcnow())
        )
        return result.rowcount == 1

    @staticmethod
    def _try_lock(conn, ns: int, key: int) -> bool:
        return bool(conn.execute(text("SELECT pg_try_advisory_lock(:ns, :k)"), {"ns": ns, "k": key}).scalar())

    @staticmethod
    def _unlock(conn, ns: int, key: int) -> None:
        conn.execute(text("SELECT pg_advisory_unlock(:ns, :k)"), {"ns": ns, "k": key})

    # --- running -----------------------------------------------------------------------

    def _run(self, job_id: int, held) -> None:
        with self.app.app_context():
            try:
                try:
                    execute(job_id)
                except Exception as exc:
                    log.exception("job %s could not be finished", job_id)
                    try:
                        fail_unfinished(job_id, f"{type(exc).__name__}: {exc}")
                    except Exception:
                        log.exception("job %s could not be marked failed either", job_id)
            finally:
                try:
                    db.session.remove()
                    _release(held)
                finally:
                    _runs_here(job_id, False)
                    with self._idle:
                        self._busy -= 1
                        self._running.discard(job_id)
                        self._idle.notify_all()
                    self._wake.set()
