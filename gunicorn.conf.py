"""gunicorn settings for Rewind.

gthread workers: each open websocket (a job page watching progress) holds one
thread while it is open, so threads, not processes, are the unit to size:
REWIND_THREADS should exceed the number of people watching jobs at once plus
a margin for page requests. Sending is done by one fan-out thread per
process, so many threads cost memory, not CPU. eventlet is not used: it is
deprecated upstream and gunicorn 26 removed its eventlet worker.
"""

import os
import sys


def _count(name: str, default: int) -> int:
    """A bad value falls back here and is reported by on_starting in one line, not a traceback from this file."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


bind = os.environ.get("REWIND_BIND", "127.0.0.1:5000")
# gthread, with new connections shared out evenly between the workers (app/serving.py says why).
worker_class = "app.serving.BalancedThreadWorker"
workers = _count("REWIND_WORKERS", 1)
threads = _count("REWIND_THREADS", 1000)
worker_connections = max(2 * threads, 1000)
# Websocket handlers run for as long as a job; the timeout only guards a worker that stopped answering.
timeout = 120


# Running jobs get REWIND_GRACEFUL_TIMEOUT to finish after SIGTERM; gunicorn waits a little longer, so that
# the jobs still running can be marked interrupted before the master kills the worker.
graceful_timeout = _count("REWIND_GRACEFUL_TIMEOUT", 20) + 10
keepalive = 5
# Off only when asked (0, false, no, off), as every other switch; a bad value is reported by on_starting.
accesslog = None if os.environ.get("REWIND_ACCESS_LOG", "").strip().lower() in ("0", "false", "no", "off") else "-"
errorlog = "-"
wsgi_app = "wsgi:app"


def on_starting(server):
    """A bad setting or targets file, or a taken port, stops gunicorn here, with one line, before it binds or
    forks a worker."""
    from app import bindcheck, preflight, serving
    from app.settings import SettingsError

    serving.prepare(server)
    try:
        preflight()
        if not ("GUNICORN_FD" in os.environ or "LISTEN_FDS" in os.environ):  # not handed its sockets already
            for address in server.cfg.bind:
                bindcheck.check(address)
    except SettingsError as exc:
        print(f"rewind: cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def on_exit(server):
    """`make run` sets REWIND_DEMO_STOP_ON_EXIT=1: stopping it (Ctrl-C) stops the demo sandbox it started too,
    its apps, its PostgreSQL and the gpg-agents Rewind used, so nothing is left running."""
    if os.environ.get("REWIND_DEMO_STOP_ON_EXIT") != "1":
        return
    if getattr(server, "reexec_pid", 0) or getattr(server, "master_pid", 0):
        return  # one of two masters during a re-exec (USR2): the other goes on serving the demo
    from app.demo.cli import stop_in
    from app.demo.target import DemoError
    from app.settings import SettingsError, load_settings

    try:
        stop_in(load_settings().instance_dir, on_line=lambda text: print(text, flush=True))
    except (SettingsError, DemoError) as exc:
        print(f"rewind: the demo is not stopped: {exc}; try `flask rewind demo --stop`", file=sys.stderr, flush=True)


def pre_fork(server, worker):
    from app import serving

    serving.assign_slot(server, worker)


def child_exit(server, worker):
    from app import serving

    serving.free_slot(server, worker)


def post_worker_init(worker):
    """Each web worker runs jobs itself unless separate `flask rewind worker` processes do; on SIGTERM it lets
    its jobs end (or marks them interrupted), then closes the live pages still open."""
    import gc

    # What is loaded by now (modules, templates, caches) stays for the worker's life. Frozen, it is never walked
    # by the collector again: a full collection used to walk it all, 40-90 ms with every request of the worker
    # waiting (measured under the toggle bench); after the freeze one takes 1.5-3 ms.
    gc.collect()
    gc.freeze()
    import signal
    import threading

    from app.jobs.engine import engine
    from app.signalrelay import SignalRelay

    app = worker.wsgi
    settings = app.config["REWIND_SETTINGS"]
    # A worker told to stop while it loaded (worker.alive off) claims no job on its way out.
    runner = engine(app).start_runner() if settings.run_jobs_in_web and worker.alive else None
    if worker.alive:
        # The first look at the dashboard finds every target already checked, not "not checked yet" until the
        # monitor's first pass, which would otherwise start with that very request.
        engine(app).health.start()
    term = threading.Event()

    def drain_on_term():
        term.wait()
        if runner is not None:
            runner.drain(settings.graceful_timeout_s)
        # Jobs run here have ended: their pages get the last event and close. Pages still open (jobs queued, or
        # run by other processes) are told to reconnect, rather than holding this worker until graceful_timeout.
        fanout = engine(app).started_fanout
        if fanout is not None:
            fanout.going_away()

    # Started now, waiting: the SIGTERM handler starts no thread (one started from a handler can hang for ever
    # on a lock the main thread held when the signal landed, app/signalrelay.py says which).
    stopping = threading.Thread(target=drain_on_term, name="rewind-drain", daemon=True)
    stopping.start()
    relay = SignalRelay(term, name="rewind-signals")
    worker.rewind_drain, worker.rewind_signals = stopping, relay
    stop_serving = worker.handle_exit

    def on_term(sig, frame):
        """Stop claiming jobs at once (the relay wakes the drain), while gunicorn lets open requests finish."""
        relay.note()
        stop_serving(sig, frame)

    signal.signal(signal.SIGTERM, on_term)


def worker_exit(server, worker):
    """Do not leave before the job runner has finished its graceful stop (jobs done, or marked interrupted).

    After a SIGTERM, that is the woken drain thread, joined. A worker leaving otherwise (max requests, its
    master gone) stops at once, as Ctrl-C does: its running jobs are marked interrupted and their commands
    stopped here, not left "running" with the process gone until another runner's sweep finds them."""
    relay = getattr(worker, "rewind_signals", None)
    if relay is not None and relay.noted:
        worker.rewind_drain.join()
    else:
        worker_int(worker)
    if hasattr(worker, "release_pool"):
        worker.release_pool()


# Rewind does not use gunicorn's control socket; leaving it on makes two instances on one host collide.
control_socket_disable = True


def worker_int(worker):
    """Ctrl-C (SIGINT/SIGQUIT) stops at once: running jobs are marked interrupted rather than left running.

    Once per worker: after a quit signal, gunicorn calls it again as the worker exits (worker_exit)."""
    app = getattr(worker, "wsgi", None)
    if app is None or getattr(worker, "rewind_interrupted", False):
        return
    worker.rewind_interrupted = True
    from app.jobs.engine import engine

    runner = engine(app).runner  # None when separate `flask rewind worker` processes run the jobs
    if runner is not None:
        runner.drain(0, settle_s=2)
