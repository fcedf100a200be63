"""Settings, read once at start-up.

The .env file beside the app holds its configuration: KEY=value lines, # comments,
optional quotes and an optional `export`. A variable set in the environment wins
over the file. A malformed file stops start-up with the line that is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"
KEYS = ("APP_ENV", "DATABASE_URL", "PORT", "SECRET_KEY", "FEATURE_X")
SWITCH = {"on": True, "1": True, "true": True, "yes": True, "off": False, "0": False, "false": False, "no": False}


@dataclass(frozen=True)
class Settings:
    database_url: str
    port: int = 5000
    secret_key: str = "dev"  # noqa: S105 - a development default; .env holds the real one
    app_env: str = "development"
    feature_x: bool = False


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load(env_file: Path = ENV_FILE) -> Settings:
    values = read_env_file(env_file)
    values.update({key: os.environ[key] for key in KEYS if key in os.environ})
    try:
        port = int(values.get("PORT", "5000"))
    except ValueError:
        raise ValueError(f"PORT must be a number, got {values['PORT']!r}") from None
    feature_x = values.get("FEATURE_X", "off").strip().lower()
    if feature_x not in SWITCH:  # a typo here must stop start-up, not quietly turn the feature off
        raise ValueError(f"FEATURE_X must be on or off, got {values['FEATURE_X']!r}")
    return Settings(
        database_url=values.get("DATABASE_URL", "sqlite:///app.db"),
        port=port,
        secret_key=values.get("SECRET_KEY", "dev"),
        app_env=values.get("APP_ENV", "development"),
        feature_x=SWITCH[feature_x],
    )
