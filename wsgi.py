"""Entry point for gunicorn and the flask CLI (FLASK_APP=wsgi)."""

import sys

from app import create_app
from app.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    print(f"rewind: cannot start: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
