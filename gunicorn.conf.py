"""gunicorn settings for Rewind.

gthread workers: each open websocket (a job page watching progress) holds one
thread for as long as it is open, so threads, not processes, are the unit to
size. eventlet is not used: it is deprecated upstream and gunicorn 26 removed
its eventlet worker.
"""

import os

bind = os.environ.get("REWIND_BIND", "127.0.0.1:5000")
worker_class = "gthread"
workers = int(os.environ.get("REWIND_WORKERS", "1"))
threads = int(os.environ.get("REWIND_THREADS", "64"))
# Websocket handlers run for minutes; the timeout only guards a worker that stopped answering its arbiter.
timeout = 120
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
wsgi_app = "wsgi:app"
