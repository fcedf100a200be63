"""Periodic tasks in Rewind's own process: what must happen every minute without anyone clicking.

Areas register tasks (the backup schedule queues due backups, expired restore
copies are backed up and dropped); the engine
starts one Scheduler beside each job runner, so it runs wherever jobs run
and stops when that runner stops. With several gunicorn workers or `flask
rewind worker` processes every one of them ticks, so a task must decide
under a lock shared by all processes (the backup schedule takes the audit
chain-head lock) rather than assume it is alone. `REWIND_SCHEDULER=0` turns
it off for those who run `flask rewind backups due` from cron instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask

from app.extensions import db

log = logging.getLogger(__name__)

PERIOD_S = 60.0
ALIVE_CHECK_S = 1.0


@dataclass(frozen=True)
class Task:
    """One periodic task: `run()` is called in an app context every period, in every process that runs jobs."""

    name: str
    run: Callable[[], None]


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    _TASKS[task.name] = task
    return task


def tasks() -> list[Task]:
    return list(_TASKS.values())


class Scheduler:
    def __init__(
        self,
        app: Flask,
        *,
        period_s: float = PERIOD_S,
        alive: Callable[[], bool] = lambda: True,
        only: list[Task] | None = None,
    ) -> None:
        self.app = app
        self.period_s = period_s
        self.alive = alive  # the scheduler ends when this turns false (its runner stopped)
        self.only = only
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._loop, name="rewind-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def tick(self) -> None:
        """Run every task once; one failing task is logged and does not keep the others from running."""
        for task in self.only if self.only is not None else tasks():
            with self.app.app_context():
                try:
                    task.run()
                except Exception:
                    log.exception("scheduled task %s failed; it runs again in %.0f s", task.name, self.period_s)
                    db.session.rollback()
                finally:
                    db.session.remove()

    def _loop(self) -> None:
        """Tick at once, then every period; between ticks, look each second whether the runner is still up."""
        due = time.monotonic()
        while not self._stop.is_set() and self.alive():
            if time.monotonic() >= due:
                self.tick()
                due = time.monotonic() + self.period_s
            self._stop.wait(min(ALIVE_CHECK_S, max(0.0, due - time.monotonic())))
