"""Settings: the environment first, then the .env file beside the app."""

import os
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"
DEFAULTS = {
    "APP_ENV": "development",
    "DATABASE_URL": "sqlite:///app.db",
    "PORT": "5000",
    "SECRET_KEY": "dev",
    "FEATURE_X": "off",
}


def load() -> dict:
    values = dict(DEFAULTS)
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    for key in values:
        if key in os.environ:
            values[key] = os.environ[key]
    return values
