"""The services one Rewind process runs, made once at start-up and reached as objects.

The bus carries events and "job queued"/"job finished" notices (through
PostgreSQL LISTEN/NOTIFY when the ops database is PostgreSQL, so a job run
by a `flask rewind worker` process refreshes the dashboard of every web
process); the broadcaster fans job events out to websockets; the runner
claims and runs jobs, and the scheduler beside it runs periodic tasks (due
backups); the health monitor probes targets in the background. The last
three start on first use.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from flask import Flask, current_app

from app.jobs.bus import InProcessBus, PostgresBus
from app.settings import Settings
from app.targets.registry import Targets

if TYPE_CHECKING:
    from app.dashboard.monitor import HealthMonitor
    from app.jobs.fanout import Broadcaster
    from app.jobs.runner import Runner
    from app.jobs.scheduler import Scheduler
    from app.jobs.socketcap import SocketCap


class Engine:
    def __init__(self, app: Flask, settings: Settings, targets: Targets) -> None:
        self.app = app
        self.settings = settings
        self.targets = targets
        self.bus: InProcessBus = PostgresBus(settings.database_url) if settings.is_postgres else InProcessBus()
        self.runner: Runner | None = None
        self.scheduler: Scheduler | None = None
        self._fanout: Broadcaster | None = None
        self._health: HealthMonitor | None = None
        self._socket_cap: SocketCap | None = None
        self._lock = threading.Lock()

    @property
    def fanout(self) -> Broadcaster:
        """The job-event broadcaster of this process (its thread starts with the first watcher)."""
        with self._lock:
            if self._fanout is None:
                from app.jobs.fanout import Broadcaster
                from app.jobs.render import render_event, render_snapshot

                self._fanout = Broadcaster(self.app, render_event, render_snapshot)
                self.bus.subscribe(self._fanout.notify)
            return self._fanout

    @property
    def started_fanout(self) -> Broadcaster | None:
        """The broadcaster if this process has made one: a worker that never streamed a job has none to close."""
        return self._fanout

    @property
    def started_health(self) -> HealthMonitor | None:
        """The health monitor if this process has started one (to stop it), without starting it."""
        return self._health

    @property
    def health(self) -> HealthMonitor:
        """The background health monitor; it re-checks at once whenever any process finishes a job."""
        with self._lock:
            if self._health is None:
                from app.dashboard.monitor import HealthMonitor

                self._health = HealthMonitor(self.app, self.targets)
                from app.checkpoints.firstseen import mark_first_healthy

                self._health.listeners.append(mark_first_healthy)
                self.bus.on_finished(lambda job_id: self._health.check_now())
            return self._health.start()

    @property
    def socket_cap(self) -> SocketCap:
        """How many job websockets may be open, per session, per user and in all (a reserve stays for pages)."""
        with self._lock:
            if self._socket_cap is None:
                from app.jobs.socketcap import SocketCap

                s = self.settings
                self._socket_cap = SocketCap(s.ws_per_session, s.ws_per_user, s.threads - s.thread_reserve)
            return self._socket_cap

    def start_runner(self, workers: int | None = None) -> Runner:
        """Start this process's job runner (gunicorn's post_worker_init and `flask rewind worker` call it).

        The scheduler of periodic tasks (due backups) starts with it, unless REWIND_SCHEDULER=0, and ends
        when this runner stops.
        """
        from app.jobs.runner import Runner

        with self._lock:
            if self.runner is None or not self.runner.running:
                self.runner = Runner(self.app, workers=workers or self.settings.job_threads).start()
            runner = self.runner
            if self.settings.scheduler and (self.scheduler is None or not self.scheduler.running):
                from app.jobs.scheduler import Scheduler

                self.scheduler = Scheduler(self.app, alive=lambda: runner.running).start()
            return runner


def engine(app: Flask | None = None) -> Engine:
    return (app or current_app).extensions["rewind"]


def current_targets() -> Targets:
    """This Rewind process's targets (made once at start-up by create_app), re-read when the file changes."""
    return engine().targets
