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

bind = os.environ.get("REWIND_BIND", "127.0.0.1:5000")
worker_class = "gthread"
workers = int(os.environ.get("REWIND_WORKERS", "1"))
threads = int(os.environ.get("REWIND_THREADS", "1000"))
worker_connections = max(2 * threads, 1000)
# Websocket handlers run for as long as a job; the timeout only guards a worker that stopped answering.
timeout = 120
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("REWIND_ACCESS_LOG", "1") == "1" else None
errorlog = "-"
wsgi_app = "wsgi:app"


def on_starting(server):
    """A bad setting or targets file stops gunicorn here, with one line, before it binds or forks a worker."""
    from app import preflight
    from app.settings import SettingsError

    try:
        preflight()
    except SettingsError as exc:
        print(f"rewind: cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def post_worker_init(worker):
    """Each web worker runs jobs itself unless separate `flask rewind worker` processes do."""
    app = worker.wsgi
    if app.config["REWIND_SETTINGS"].run_jobs_in_web:
        from app import start_runner

        start_runner(app)


# Rewind does not use gunicorn's control socket; leaving it on makes two instances on one host collide.
control_socket_disable = True
