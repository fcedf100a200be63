"""Rewind's settings: environment variables read once, validated early.

A bad value stops start-up with one line that names the setting and says what
is wrong, so an operator fixing a broken deploy at 3 a.m. knows where to look.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """A setting is missing or malformed; carries its name so the message can lead with it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    instance_dir: Path
    database_url: str
    secret_key: str
    audit_key: bytes
    config_path: Path
    secure_cookies: bool = False
    idle_minutes: int = 30
    runbook_modules: tuple[str, ...] = ()
    job_threads: int = 4
    run_jobs_in_web: bool = True
    session_hours: int = 12
    ws_per_session: int = 8
    ws_per_user: int = 32
    threads: int = 1000
    thread_reserve: int = 16
    graceful_timeout_s: int = 20
    scheduler: bool = True  # periodic tasks (due backups) run beside each job runner; off: cron runs `backups due`
    access_log: bool = True  # gunicorn.conf.py reads it itself; checked here so a bad value stops start-up
    request_slots: int = 1  # page requests one worker runs at once (app/requestslots.py); 0: no limit

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def _read_or_create_secret(path: Path, nbytes: int) -> str:
    """Keep a generated secret in a 0600 file so restarts reuse it."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def normalise_database_url(url: str, name: str = "REWIND_DATABASE_URL") -> str:
    """Accept the URL forms people paste and pin PostgreSQL to the psycopg 3 driver."""
    if url.startswith("sqlite:///"):
        return url
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise SettingsError(
        name,
        f"unsupported database URL scheme {scheme!r}; use sqlite:///path/to/file.db "
        "or postgresql://user:password@host:port/dbname",
    )


def _flag(env: dict, name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(name, f"expected 1 or 0, got {raw!r}")


def _whole_number(env: dict, name: str, default: int, least: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"expected a whole number, got {raw!r}") from None
    if value < least:
        raise SettingsError(name, f"must be at least {least}, got {value}")
    return value


def load_settings(env: dict | None = None) -> Settings:
    """Build Settings from environment variables (or a given mapping, for tests)."""
    env = dict(os.environ if env is None else env)
    instance_dir = Path(env.get("REWIND_INSTANCE_DIR") or REPO_ROOT / "instance").resolve()
    try:
        instance_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError("REWIND_INSTANCE_DIR", f"cannot create {instance_dir}: {exc.strerror}") from None

    database_url = normalise_database_url(env.get("REWIND_DATABASE_URL") or f"sqlite:///{instance_dir / 'rewind.db'}")

    secret_key = env.get("REWIND_SECRET_KEY", "").strip()
    if secret_key and len(secret_key) < 16:
        raise SettingsError("REWIND_SECRET_KEY", "too short; use at least 16 random characters")
    if not secret_key:
        secret_key = _read_or_create_secret(instance_dir / "secret-key", 32)

    audit_raw = env.get("REWIND_AUDIT_KEY", "").strip()
    if audit_raw and len(audit_raw) < 32:
        raise SettingsError("REWIND_AUDIT_KEY", "too short; use at least 32 random characters")
    if not audit_raw:
        audit_raw = _read_or_create_secret(instance_dir / "audit-key", 32)

    config_path = Path(env.get("REWIND_CONFIG") or instance_dir / "rewind.toml")
    if config_path.exists() and not config_path.is_file():
        raise SettingsError("REWIND_CONFIG", f"{config_path} is not a file")

    workers = _whole_number(env, "REWIND_WORKERS", 1)
    if workers > 1 and not database_url.startswith("postgresql"):
        raise SettingsError(
            "REWIND_WORKERS", f"{workers} workers need a PostgreSQL ops database; with SQLite run one worker"
        )
    modules = tuple(m.strip() for m in env.get("REWIND_RUNBOOKS", "").split(",") if m.strip())
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise SettingsError("REWIND_RUNBOOKS", f"{module!r} is not a Python module name")

    threads = _whole_number(env, "REWIND_THREADS", 1000)
    reserve = _whole_number(env, "REWIND_THREAD_RESERVE", min(16, max(1, threads // 4)))
    if reserve >= threads:
        raise SettingsError(
            "REWIND_THREAD_RESERVE", f"{reserve} reserved threads leave none of REWIND_THREADS={threads} for websockets"
        )

    return Settings(
        instance_dir=instance_dir,
        database_url=database_url,
        secret_key=secret_key,
        audit_key=audit_raw.encode(),
        config_path=config_path,
        secure_cookies=_flag(env, "REWIND_SECURE_COOKIES"),
        idle_minutes=_whole_number(env, "REWIND_IDLE_MINUTES", 30),
        runbook_modules=modules,
        job_threads=_whole_number(env, "REWIND_JOB_THREADS", 4),
        run_jobs_in_web=not _flag(env, "REWIND_EXTERNAL_WORKERS"),
        session_hours=_whole_number(env, "REWIND_SESSION_HOURS", 12),
        ws_per_session=_whole_number(env, "REWIND_WS_PER_SESSION", 8),
        ws_per_user=_whole_number(env, "REWIND_WS_PER_USER", 32),
        threads=threads,
        thread_reserve=reserve,
        graceful_timeout_s=_whole_number(env, "REWIND_GRACEFUL_TIMEOUT", 20),
        scheduler=_flag(env, "REWIND_SCHEDULER", default=True),
        access_log=_flag(env, "REWIND_ACCESS_LOG", default=True),
        request_slots=_whole_number(env, "REWIND_REQUEST_SLOTS", 1, least=0),
    )
