"""The runner: claims queued jobs, holds target locks, runs jobs on a thread pool.

One runs inside each web process by default (started by gunicorn's
post_worker_init hook) and in each `flask rewind worker` process. On
PostgreSQL, jobs are claimed with FOR UPDATE SKIP LOCKED, and a running job
holds two session advisory locks on its own connection: one for the job (so
a starting runner can tell a live job from an orphan) and one for its target
(so two processes never change one target at once). Both vanish with the
process, which is what makes "interrupted" detectable.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from sqlalchemy import select, text, update

from app.clock import utcnow
from app.extensions import db
from app.jobs.execution import execute, mark_interrupted
from app.jobs.models import Job
from app.statuses import JobState

log = logging.getLogger(__name__)

JOB_LOCKS = 0x52570001  # advisory lock namespaces ("RW" + 1, 2)
TARGET_LOCKS = 0x52570002
CLAIM_BATCH = 20


def target_key(target: str) -> int:
    return zlib.crc32(target.encode()) - 2**31  # advisory keys are signed 32-bit


class Runner:
    def __init__(self, app: Flask, workers: int = 4, poll_s: float = 1.0) -> None:
        self.app = app
        self.workers = workers
        self.poll_s = poll_s
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.postgres = app.config["REWIND_SETTINGS"].is_postgres
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rewind-job")
        self._busy = 0
        self._local_targets: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------

    def start(self) -> Runner:
        with self.app.app_context():
            self.sweep_interrupted()
        self.app.extensions["rewind.runner"] = self
        self._thread = threading.Thread(target=self._loop, name="rewind-dispatch", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    # --- interrupted jobs --------------------------------------------------------------

    def sweep_interrupted(self) -> int:
        """Mark running jobs whose process is gone as interrupted; returns how many."""
        running = db.session.scalars(select(Job).where(Job.state == JobState.RUNNING.value)).all()
        swept = 0
        for job in running:
            if self.postgres and not self._orphaned_on_postgres(job.id):
                continue
            log.warning("job %s was running when its process stopped; marking it interrupted", job.id)
            mark_interrupted(job)
            swept += 1
        db.session.remove()
        return swept

    def _orphaned_on_postgres(self, job_id: int) -> bool:
        with db.engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:ns, :id)"), {"ns": JOB_LOCKS, "id": job_id}).scalar()
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": JOB_LOCKS, "id": job_id})
            conn.commit()
        return bool(got)

    # --- claiming ----------------------------------------------------------------------

    def _loop(self) -> None:
        with self.app.app_context():
            while not self._stop.is_set():
                self._wake.wait(self.poll_s)
                self._wake.clear()
                try:
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
        job_id, target, conn = claimed
        with self._lock:
            self._busy += 1
        self._pool.submit(self._run, job_id, target, conn)
        return True

    def _claim_local(self):
        candidates = db.session.execute(
            select(Job.id, Job.target, Job.mutates)
            .where(Job.state == JobState.QUEUED.value)
            .order_by(Job.id)
            .limit(CLAIM_BATCH)
        ).all()
        for job_id, target, mutates in candidates:
            locks_target = bool(mutates and target)
            with self._lock:
                if locks_target and target in self._local_targets:
                    continue
                if locks_target:
                    self._local_targets.add(target)
            if self._mark_running(job_id):
                db.session.commit()
                return job_id, target if locks_target else None, None
            with self._lock:
                self._local_targets.discard(target)
        db.session.commit()
        return None

    def _claim_postgres(self):
        conn = db.engine.connect()
        try:
            candidates = conn.execute(
                text(
                    "SELECT id, target, mutates FROM job WHERE state = :queued "
                    "ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
                ),
                {"queued": JobState.QUEUED.value, "n": CLAIM_BATCH},
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
                return job_id, None, conn
            conn.commit()
        except Exception:
            self._release(conn)
            raise
        self._release(conn)
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

    @staticmethod
    def _release(conn) -> None:
        """Pooled connections outlive the job: drop its session locks before handing it back."""
        try:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
        finally:
            conn.close()

    # --- running -----------------------------------------------------------------------

    def _run(self, job_id: int, local_target: str | None, conn) -> None:
        with self.app.app_context():
            try:
                execute(job_id)
            except Exception:
                log.exception("job %s could not be finished", job_id)
            finally:
                db.session.remove()
                if conn is not None:
                    self._release(conn)
                with self._lock:
                    self._busy -= 1
                    if local_target:
                        self._local_targets.discard(local_target)
                self._wake.set()
