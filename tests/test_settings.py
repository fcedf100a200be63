"""Settings: defaults, generated secrets, and one clear line for each bad value."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings


def test_defaults_generate_private_secrets(tmp_path):
    settings = load_settings({"REWIND_INSTANCE_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'rewind.db'}"
    assert settings.config_path == tmp_path / "rewind.toml"
    for name in ("secret-key", "audit-key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    again = load_settings({"REWIND_INSTANCE_DIR": str(tmp_path)})
    assert (again.secret_key, again.audit_key) == (settings.secret_key, settings.audit_key)


def test_security_defaults(tmp_path):
    settings = load_settings({"REWIND_INSTANCE_DIR": str(tmp_path)})
    assert (settings.session_hours, settings.ws_per_session, settings.ws_per_user) == (12, 8, 32)
    assert (settings.threads, settings.thread_reserve, settings.graceful_timeout_s) == (1000, 16, 20)


def test_the_in_process_scheduler_is_on_unless_turned_off(tmp_path):
    assert load_settings({"REWIND_INSTANCE_DIR": str(tmp_path)}).scheduler is True
    assert load_settings({"REWIND_INSTANCE_DIR": str(tmp_path), "REWIND_SCHEDULER": "0"}).scheduler is False


def test_one_request_at_a_time_per_worker_unless_told(tmp_path):
    from app import create_app
    from app.requestslots import RequestSlots

    env = {"REWIND_INSTANCE_DIR": str(tmp_path)}
    assert load_settings(env).request_slots == 1
    assert create_app(load_settings(env)).wsgi_app.slots == 1
    assert create_app(load_settings({**env, "REWIND_REQUEST_SLOTS": "3"})).wsgi_app.slots == 3
    assert not isinstance(create_app(load_settings({**env, "REWIND_REQUEST_SLOTS": "0"})).wsgi_app, RequestSlots)


def test_postgres_urls_use_psycopg3(tmp_path):
    settings = load_settings({"REWIND_INSTANCE_DIR": str(tmp_path), "REWIND_DATABASE_URL": "postgres://u@h/db"})
    assert settings.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("REWIND_DATABASE_URL", "mysql://x/y", "unsupported database URL scheme 'mysql'"),
        ("REWIND_IDLE_MINUTES", "soon", "expected a whole number"),
        ("REWIND_IDLE_MINUTES", "0", "must be at least 1"),
        ("REWIND_SECURE_COOKIES", "maybe", "expected 1 or 0"),
        ("REWIND_SCHEDULER", "cron", "expected 1 or 0"),
        ("REWIND_ACCESS_LOG", "maybe", "expected 1 or 0"),
        ("REWIND_SESSION_HOURS", "half a day", "expected a whole number"),
        ("REWIND_SESSION_HOURS", "0", "must be at least 1"),
        ("REWIND_WS_PER_SESSION", "-1", "must be at least 1"),
        ("REWIND_WS_PER_USER", "many", "expected a whole number"),
        ("REWIND_THREAD_RESERVE", "1000", "leave none of REWIND_THREADS=1000 for websockets"),
        ("REWIND_GRACEFUL_TIMEOUT", "soon", "expected a whole number"),
        ("REWIND_REQUEST_SLOTS", "-1", "must be at least 0"),
        ("REWIND_REQUEST_SLOTS", "one", "expected a whole number"),
        ("REWIND_SECRET_KEY", "short", "too short"),
        ("REWIND_AUDIT_KEY", "short", "too short"),
    ],
)
def test_bad_values_name_the_setting(tmp_path, name, value, problem):
    with pytest.raises(SettingsError) as caught:
        load_settings({"REWIND_INSTANCE_DIR": str(tmp_path), name: value})
    assert str(caught.value).startswith(f"{name}: ") and problem in str(caught.value)


def test_start_up_stops_with_one_line(tmp_path):
    env = {**os.environ, "REWIND_INSTANCE_DIR": str(tmp_path), "REWIND_IDLE_MINUTES": "ten"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rewind: cannot start: REWIND_IDLE_MINUTES: expected a whole number, got 'ten'"
    ]


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("REWIND_WORKERS", "ten", "REWIND_WORKERS: expected a whole number, got 'ten'"),
        ("REWIND_THREADS", "many", "REWIND_THREADS: expected a whole number, got 'many'"),
        ("REWIND_GRACEFUL_TIMEOUT", "soon", "REWIND_GRACEFUL_TIMEOUT: expected a whole number, got 'soon'"),
        ("REWIND_ACCESS_LOG", "maybe", "REWIND_ACCESS_LOG: expected 1 or 0, got 'maybe'"),
    ],
)
def test_a_bad_gunicorn_setting_stops_gunicorn_with_one_line(tmp_path, name, value, problem):
    """gunicorn.conf.py reads these too: a bad one is the settings' one line, never a traceback from that file."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "REWIND_INSTANCE_DIR": str(tmp_path), "REWIND_BIND": "127.0.0.1:0", name: value}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert f"rewind: cannot start: {problem}" in said
    assert "Traceback" not in said


@pytest.mark.parametrize("value, logged", [("", True), ("1", True), ("true", True), ("0", False), ("off", False)])
def test_the_access_log_switch_reads_as_every_other_switch(monkeypatch, value, logged):
    import runpy

    monkeypatch.setenv("REWIND_ACCESS_LOG", value)
    conf = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
    assert (conf["accesslog"] == "-") is logged
