"""The demo app as real files: its history adds up to sampleapp/, and the app serves its routes on a real database."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from werkzeug.serving import make_server

from app.demo import history
from app.demo.sample import ENTERPRISE, SESSIONS_PER_USER, USERS, insert_sample_rows
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
    branches = (history.BAD_COMMIT, history.MIGRATION_COMMIT)
    used = {source for commit in (*history.HISTORY, *branches) for source in commit.files.values()}
    assert {history.VARIANTS / relative for relative in tracked_files(history.VARIANTS)} <= used
    assert set(history.BAD_COMMIT.files) <= set(newest)
    revisions = {path.name.split("_", 1)[0] for path in (history.SAMPLEAPP / "migrations" / "versions").glob("*.py")}
    assert revisions == set(history.REVISIONS)


def test_main_has_five_revisions_in_a_line_and_the_branch_adds_one_on_top(tmp_path):
    """Read as Rewind reads them: from the files, down_revision from the code, never by date."""
    folder = tmp_path / "migrations"
    shutil.copytree(history.SAMPLEAPP / "migrations", folder)
    main = ScriptDirectory(str(folder))
    assert [s.revision for s in main.walk_revisions()][::-1] == list(history.REVISIONS)
    assert main.get_heads() == [history.HEAD_REVISION]
    for relative, source in history.MIGRATION_COMMIT.files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(source.read_text())
    branch = ScriptDirectory(str(folder))
    assert branch.get_heads() == [history.MIGRATION_BRANCH_REVISION]
    assert branch.get_revision(history.MIGRATION_BRANCH_REVISION).down_revision == history.HEAD_REVISION


def write_tree(commits, folder: Path) -> None:
    """The work tree after these commits, as the demo's repository holds it."""
    for commit in commits:
        for relative, source in commit.files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(source.read_text())


def load_app_of(folder: Path, name: str):
    """The demo app of a work tree, imported under its own package name so each commit's code is its own."""
    spec = importlib.util.spec_from_file_location(
        name, folder / "demoapp" / "__init__.py", submodule_search_locations=[str(folder / "demoapp")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.create_app()


TREES = [pytest.param(history.HISTORY[: n + 1], id=f"main-{n + 1}") for n in range(len(history.HISTORY))] + [
    pytest.param((*history.HISTORY, history.MIGRATION_COMMIT), id="migration-branch")
]


@pytest.mark.parametrize("commits", TREES)
def test_the_app_is_healthy_on_its_own_migrations_at_every_commit(commits, tmp_path, monkeypatch):
    """Code and schema move together: each commit's code serves its pages on the schema its own migrations build."""
    folder = tmp_path / "app"
    write_tree(commits, folder)
    database = tmp_path / "app.db"
    sqlite3.connect(database).close()
    if (folder / "migrations").is_dir():
        config = Config()
        config.set_main_option("script_location", str(folder / "migrations"))
        config.attributes["database_url"] = f"sqlite:///{database}"
        command.upgrade(config, "head")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    name = f"demoapp_at_{len(commits)}_{tmp_path.name}".replace("-", "_")
    try:
        app = load_app_of(folder, name)
        routes = {rule.rule for rule in app.url_map.iter_rules()} & {"/health", "/stats", "/api/segments", "/"}
        assert "/health" in routes
        client = app.test_client()
        for path in sorted(routes):  # every page this commit has, on an empty database
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)
    finally:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def test_the_migration_branch_backfills_last_seen_and_counts_it(tmp_path, monkeypatch):
    folder = tmp_path / "app"
    write_tree(history.HISTORY, folder)
    database = tmp_path / "app.db"
    config = Config()
    config.set_main_option("script_location", str(folder / "migrations"))
    config.attributes["database_url"] = f"sqlite:///{database}"
    command.upgrade(config, "head")
    insert_sample_rows(database, seed="test")
    write_tree([history.MIGRATION_COMMIT], folder)
    command.upgrade(config, "head")
    with sqlite3.connect(database) as conn:
        seen = conn.execute("SELECT count(last_seen_at) FROM users").fetchone()[0]
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    conn.close()
    assert version == history.MIGRATION_BRANCH_REVISION
    assert seen == sum(1 for n in SESSIONS_PER_USER if n)  # users with a session; the others stay NULL
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    name = f"demoapp_branch_{tmp_path.name}".replace("-", "_")
    try:
        stats = load_app_of(folder, name).test_client().get("/stats").get_json()
    finally:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]
    assert 0 < stats["seen_last_7_days"] <= seen  # sessions every 3 days back: some users were seen this week
    assert stats["plans"] == {"enterprise": len(ENTERPRISE), "free": len(USERS) - len(ENTERPRISE)}


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
    assert json.loads(body) == {
        "users": 12,
        "sessions": 16,
        "segments": 6,
        "feature_flags": 5,
        "flags_enabled": 2,
        "plans": {"enterprise": 2, "free": 10},
    }

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
