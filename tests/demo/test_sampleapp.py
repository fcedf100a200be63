"""The demo app as real files: its history adds up to sampleapp/, and the app serves its routes on a real database."""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from werkzeug.serving import make_server

from app.demo import history
from app.demo.sample import insert_sample_rows
from app.demo.sampleapp import demoapp


def tracked_files(folder: Path) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_history_adds_up_to_the_sampleapp_folder():
    newest: dict[str, Path] = {}
    for commit in history.HISTORY:
        assert commit.files, commit.subject
        for relative, source in commit.files.items():
            assert source.is_file(), f"{commit.subject}: {source} is missing"
            newest[relative] = source
    # The last version of every file is the one in sampleapp/, and sampleapp/ holds nothing the history leaves out.
    assert newest == {relative: history.SAMPLEAPP / relative for relative in newest}
    assert set(newest) == tracked_files(history.SAMPLEAPP)
    # Every variant is used by some commit; the bad commit only changes files main has.
    used = {source for commit in (*history.HISTORY, history.BAD_COMMIT) for source in commit.files.values()}
    assert {history.VARIANTS / relative for relative in tracked_files(history.VARIANTS)} <= used
    assert set(history.BAD_COMMIT.files) <= set(newest)
    revisions = {path.name.split("_", 1)[0] for path in (history.SAMPLEAPP / "migrations" / "versions").glob("*.py")}
    assert revisions == set(history.REVISIONS)


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "app.db"
    config = Config()
    config.set_main_option("script_location", str(history.SAMPLEAPP / "migrations"))
    config.attributes["database_url"] = f"sqlite:///{path}"
    command.upgrade(config, "head")
    insert_sample_rows(path, seed="test")
    return path


def serve(monkeypatch, database: Path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("APP_ENV", "testing")
    monkeypatch.setenv("FEATURE_X", "on")
    server = make_server("127.0.0.1", 0, demoapp.create_app())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def served(monkeypatch, database):
    server, thread = serve(monkeypatch, database)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_the_app_serves_its_routes(served, database):
    status, body = get(f"{served}/health")
    assert status == 200
    assert json.loads(body) == {"status": "healthy", "version": demoapp.__version__, "users": 12}

    status, body = get(f"{served}/stats")
    assert status == 200
    assert json.loads(body) == {"users": 12, "sessions": 16, "segments": 6, "feature_flags": 5, "flags_enabled": 2}

    status, body = get(f"{served}/api/segments")
    assert status == 200
    assert [s["name"] for s in json.loads(body)["segments"]][:2] == ["beta-testers", "churn-risk"]

    status, page = get(f"{served}/")
    assert status == 200
    assert "Environment: testing" in page and "Feature X is on" in page and "Checkout: new." in page

    # Flags are read per request: flipping one shows on the next page.
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE feature_flags SET enabled = 0 WHERE name = 'new_checkout'")
    conn.close()
    assert "Checkout: classic." in get(f"{served}/")[1]


def test_the_payments_flag_breaks_health_while_on(served, database):
    def flip(on: bool) -> None:
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE feature_flags SET enabled = ? WHERE name = 'payments_v2'", (int(on),))
        conn.close()

    flip(True)
    status, body = get(f"{served}/health")
    assert status == 500 and "payments_v2 is on" in json.loads(body)["error"]
    assert "payments_v2: on" in get(f"{served}/")[1]
    flip(False)
    assert get(f"{served}/health")[0] == 200


def test_health_is_unhealthy_without_its_schema(monkeypatch, tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    server, thread = serve(monkeypatch, empty)
    try:
        status, body = get(f"http://127.0.0.1:{server.server_port}/health")
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert status == 500
    answer = json.loads(body)
    assert answer["status"] == "unhealthy" and "users" in answer["error"]
