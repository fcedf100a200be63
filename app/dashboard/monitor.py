"""Background health checks: every target probed every 30 s, the last answer kept for the dashboard."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask

from app.targets.health import Probe
from app.targets.reach import database_reachable
from app.targets.registry import Targets

log = logging.getLogger(__name__)

INTERVAL_S = 30.0
REQUEST_S = 3.0  # for one health URL's answer

# Other checks that keep the monitor's rhythm (e.g. env files changed on disk): called with each target's
# name after its probe, inside the monitor's app context; one failing never stops the pass.
_pass_hooks: list[Callable[[str], None]] = []


def on_each_pass(hook: Callable[[str], None]) -> Callable[[str], None]:
    if hook not in _pass_hooks:
        _pass_hooks.append(hook)
    return hook


@dataclass(frozen=True)
class Reading:
    probe: Probe | None  # None: the target has no health check configured (or the check failed)
    checked_at: float
    database: tuple[bool, str] | None = None  # (reachable, detail); None: no database configured
    failed: str | None = None  # the check itself could not run; the card says why


class HealthMonitor:
    def __init__(
        self, app: Flask, targets: Targets, interval_s: float = INTERVAL_S, request_timeout_s: float = REQUEST_S
    ) -> None:
        self.app = app
        self.targets = targets
        self.interval_s = interval_s
        self.request_timeout_s = request_timeout_s
        self._readings: dict[str, Reading] = {}
        # When the probe of the reading last told to the listeners and kept began, per target. Telling and keeping
        # happen together under the target's own lock, so a slow probe begun earlier never replaces, nor is told
        # after, the answer of one begun later. The monitor's own thread runs one pass at a time; this holds for
        # any other caller of probe_all (a CLI check, a test) that runs beside it.
        self._kept: dict[str, float] = {}
        self._telling: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Told (target, reading) after each probe, in the monitor's thread and app context.
        self.listeners: list[Callable[[object, Reading], None]] = []

    def start(self) -> HealthMonitor:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="rewind-health", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the background thread (its pass finishes first): an app torn down must not keep probing and
        writing through a thread of its own, as a test session's many apps would otherwise do."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def reading(self, target: str) -> Reading | None:
        with self._lock:
            return self._readings.get(target)

    def check_now(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        with self.app.app_context():
            while not self._stop.is_set():
                try:
                    self.probe_all()
                except Exception:
                    log.exception("health monitor pass failed")
                self._wake.wait(self.interval_s)
                self._wake.clear()

    def probe_all(self) -> None:
        """One pass over every target; one target's broken check never stops the others'.

        On return each target's kept reading began no earlier than this pass's probe of it, and its listeners
        have run, so a caller reads what it asked for, or newer.
        """
        for name in self.targets.names():
            begun = time.monotonic()
            try:
                target, reading = self._probe(name)
            except Exception as exc:
                log.exception("health check of %s failed", name)
                target, reading = None, Reading(None, time.time(), failed=f"{type(exc).__name__}: {exc}")
            with self._telling_lock(name):
                if self._kept.get(name, begun) > begun:  # a pass begun after this one has answered: older news
                    continue
                # Listeners first: a page that shows this reading also shows what they recorded from it.
                for listener in self.listeners if target is not None else ():
                    try:
                        listener(target, reading)
                    except Exception:
                        log.exception("health listener failed for %s", name)
                with self._lock:
                    self._kept[name] = begun
                    self._readings[name] = reading
            for hook in _pass_hooks:
                try:
                    hook(name)
                except Exception:
                    log.exception("%s on %s failed", getattr(hook, "__qualname__", "a monitor hook"), name)

    def _telling_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._telling.setdefault(name, threading.Lock())

    def _probe(self, name: str) -> tuple[object, Reading]:
        target = self.targets.open(name)
        check = target.health()
        probe = check.probe(request_timeout_s=self.request_timeout_s) if check else None
        database = target.config.database
        reached = database_reachable(database.url) if database else None
        return target, Reading(probe, time.time(), reached)
