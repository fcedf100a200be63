"""Entry point for gunicorn and the flask CLI (FLASK_APP=wsgi)."""

import sys

from app import create_app
from app.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    print(f"rewind: cannot start: {exc}", file=sys.stderr)
    # Under gunicorn, status 4 ("app failed to load") makes the master stop instead of respawning this worker forever.
    raise SystemExit(4 if "gunicorn" in sys.modules else 2) from None
