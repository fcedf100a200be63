"""The health monitor keeps the newest answer, and a pass returns only once a reading as new as its own is kept."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from app.auth.roles import Role
from app.dashboard.monitor import HealthMonitor
from app.jobs.engine import engine
from tests.conftest import wait_for
from tests.support.server import RewindServer
from tests.support.targets import write_targets_file


class FirstThenBroken(BaseHTTPRequestHandler):
    """The first request answers 200 (once `release` is set); every later one is a 500 at once."""

    asked: threading.Event
    release: threading.Event
    first: threading.Lock
    broke: threading.Event  # a 500 has been sent

    def do_GET(self):
        if self.first.acquire(blocking=False):
            self.asked.set()
            self.release.wait(30)
            status = 200
        else:
            status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if status == 500:
            self.broke.set()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def staging_health(app, tmp_path, held: bool) -> Iterator[type[FirstThenBroken]]:
    """The targets file names one target, staging, whose health URL is a FirstThenBroken."""
    handler = type("Handler", (FirstThenBroken,), {})
    handler.asked, handler.release, handler.first = threading.Event(), threading.Event(), threading.Lock()
    handler.broke = threading.Event()
    if not held:
        handler.release.set()
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        write_targets_file(
            app,
            f'[targets.staging.repo]\npath = "{tmp_path / "repo"}"\n\n'
            f'[targets.staging.health]\nurl = "http://127.0.0.1:{server.server_port}/health"\n',
        )
        yield handler
    finally:
        handler.release.set()
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def staging_monitor(app, tmp_path, held: bool) -> Iterator[tuple[HealthMonitor, type[FirstThenBroken]]]:
    """A monitor (not started: the passes are the test's) of staging_health's target."""
    with staging_health(app, tmp_path, held) as handler, app.app_context():
        # a held probe must not time out however slow the machine: the test releases it
        yield HealthMonitor(app, engine(app).targets, request_timeout_s=60), handler


def in_thread(app, monitor: HealthMonitor, read_on_return: list | None = None) -> threading.Thread:
    """One pass in its own thread; `read_on_return` gets the status kept when the pass returned (None: nothing)."""

    def one_pass():
        with app.app_context():
            monitor.probe_all()
        if read_on_return is not None:
            kept = monitor.reading("staging")
            read_on_return.append(kept.probe.status if kept else None)

    thread = threading.Thread(target=one_pass)
    thread.start()
    return thread


def held_listener(monitor: HealthMonitor, status: int) -> tuple[threading.Event, threading.Event]:
    """A listener that, told a reading of `status`, sets the first event and waits for the second."""
    told, release = threading.Event(), threading.Event()

    def listener(target, reading):
        if reading.probe.status == status:
            told.set()
            release.wait(30)

    monitor.listeners.append(listener)
    return told, release


def test_a_probe_begun_before_a_later_one_does_not_replace_its_answer(app, tmp_path):
    """The background pass's probe was on its way when the app stopped; the pass asked for after it must win."""
    with staging_monitor(app, tmp_path, held=True) as (monitor, handler):
        earlier = in_thread(app, monitor)
        assert handler.asked.wait(10), "the first probe never reached the server"
        monitor.probe_all()  # begun later, answered first: 500
        assert monitor.reading("staging").probe.status == 500
        handler.release.set()
        earlier.join(30)
        assert not earlier.is_alive()
        assert monitor.reading("staging").probe.status == 500, "the earlier probe's 200 replaced the newer answer"


def test_a_pass_telling_its_listeners_keeps_its_reading_and_a_later_one_is_told_after_it(app, tmp_path):
    """Seen in the suite: a test's own pass returned while the monitor's later one was mid-way, and read nothing."""
    with staging_monitor(app, tmp_path, held=False) as (monitor, handler):
        first_told, first_release = held_listener(monitor, 200)
        second_told, second_release = held_listener(monitor, 500)
        earlier = in_thread(app, monitor)
        assert first_told.wait(10)
        later = in_thread(app, monitor)  # answers 500 while the earlier one is still telling its listeners
        assert handler.broke.wait(10)
        later.join(1.0)  # long enough for the old code to tell the later answer beside the earlier one
        first_release.set()
        earlier.join(30)
        assert monitor.reading("staging") is not None, "the earlier pass returned and nothing was kept"
        assert monitor.reading("staging").probe.status == 200
        assert second_told.wait(10), "the later answer is told, after the earlier one"
        second_release.set()
        later.join(30)
        assert monitor.reading("staging").probe.status == 500, "the later pass's answer is kept last"


def test_a_pass_whose_answer_came_late_returns_only_once_the_later_one_is_kept(app, tmp_path):
    with staging_monitor(app, tmp_path, held=True) as (monitor, handler):
        later_told, later_release = held_listener(monitor, 500)
        read = []
        earlier = in_thread(app, monitor, read_on_return=read)
        assert handler.asked.wait(10), "the first probe never reached the server"
        later = in_thread(app, monitor)
        assert later_told.wait(10)  # the later pass has answered and is telling its listeners
        handler.release.set()  # the earlier one's answer now comes, older news
        earlier.join(1.0)  # long enough for the old code to return with nothing kept, which read[] records
        later_release.set()
        earlier.join(30)
        later.join(30)
        assert read == [500], "the earlier pass returned before the later one's reading was kept"
        assert monitor.reading("staging").probe.status == 500


def test_stop_ends_the_monitor_thread_and_a_later_use_does_not_start_another(app):
    before = set(threading.enumerate())
    monitor = engine(app).health
    (started,) = [t for t in threading.enumerate() if t.name == "rewind-health" and t not in before]
    assert started.is_alive() and engine(app).started_health is monitor
    monitor.stop(timeout_s=60)  # generous: a pass under way finishes first
    assert not started.is_alive(), "the thread outlived stop()"
    assert engine(app).health is monitor
    assert [t for t in threading.enumerate() if t.name == "rewind-health" and t not in before] == []


def test_a_target_not_checked_yet_is_asked_for_again_sooner(app, users, as_role, tmp_path):
    """While a target's first probe is on its way, its card and its overview ask again every 2 s, not every 10 s:
    a person who opens Rewind mid-incident sees the health within seconds."""
    with staging_health(app, tmp_path, held=True) as handler:
        with app.app_context():
            # The pages' own monitor, made here with a probe that cannot time out on a slow machine: held by the
            # server until released, its target has no reading meanwhile.
            engine(app)._health = HealthMonitor(app, engine(app).targets, request_timeout_s=60)
            monitor = engine(app).health  # started: its first probe is now held by the server
        assert handler.asked.wait(10), "the monitor's first probe never reached the server"
        viewer = as_role(Role.VIEWER)
        cards, overview = viewer.get("/dashboard/cards").get_data(as_text=True), viewer.get("/targets/staging")
        assert monitor.reading("staging") is None, "the probe ended before the pages were read: premise lost"
        state = overview.get_data(as_text=True).split('id="overview-state"', 1)[1].split("</section>", 1)[0]
        for part in (cards, state):
            assert "not checked yet" in part and "every 2s" in part and "every 10s" not in part, part
        handler.release.set()
        wait_for(lambda: monitor.reading("staging") is not None, timeout=30)
        cards = viewer.get("/dashboard/cards").get_data(as_text=True)
        assert 'badge-ok">healthy<' in cards and "every 10s" in cards and "every 2s" not in cards, cards


def test_a_served_rewind_checks_its_targets_before_anyone_opens_a_page(tmp_path):
    """gunicorn's worker starts the monitor as it starts: the dashboard's first look finds the targets checked."""
    asked = threading.Event()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    instance = tmp_path / "instance"
    instance.mkdir()
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    stand_in = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    (instance / "rewind.toml").write_text(
        f'[targets.staging.repo]\npath = "{tmp_path / "repo"}"\n\n'
        f'[targets.staging.health]\nurl = "http://127.0.0.1:{stand_in.server_port}/health"\n'
    )
    server = RewindServer(instance, REWIND_ACCESS_LOG="0")
    try:
        server.start()  # asks /healthz only, which reads no target
        assert asked.wait(20), "no health probe before any page was opened"
    finally:
        server.stop()
        stand_in.shutdown()
        stand_in.server_close()
