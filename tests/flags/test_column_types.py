"""An enabled column of an integer type on PostgreSQL (0/1): every write sends what the column takes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from app.auth.roles import Role
from app.clock import utcnow
from tests.flags.conftest import confirm_of, make_flag_db, plan_page, seen_of, targets_toml
from tests.support.apps import post
from tests.support.targets import write_targets_file


def own_table(app, tmp_path, server, columns: str, rows: str, kind: str = "postgresql") -> Callable[[], dict]:
    """A flags table of the application's own making, with its rows, as the target's; returns a reader of states."""
    flagdb = make_flag_db(kind, tmp_path, server, create=False)
    flagdb.execute(f"CREATE TABLE feature_flags ({columns})")
    flagdb.execute(f"INSERT INTO feature_flags {rows}")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    return lambda: dict(flagdb.execute("SELECT name, enabled FROM feature_flags ORDER BY name"))


@pytest.mark.parametrize("column", ["SMALLINT", "INTEGER"])
def test_an_integer_enabled_column_takes_toggle_kill_and_restore_as_0_or_1(app, as_role, pg_server, tmp_path, column):
    stored = own_table(
        app,
        tmp_path,
        pg_server,
        f"name VARCHAR(80) PRIMARY KEY, enabled {column} NOT NULL DEFAULT 0, description TEXT NOT NULL DEFAULT '', "
        "updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, CHECK (enabled IN (0, 1))",
        "(name, enabled, updated_at) VALUES "
        "('checkout_v2', 1, '2026-01-01'), ('dark_mode', 0, '2026-01-01'), ('search_beta', 1, '2026-01-01')",
    )
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert '<span class="badge badge-ok">on</span>' in page
    moment = utcnow().isoformat()
    assert post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}).status_code == 303
    assert stored() == {"checkout_v2": 1, "dark_mode": 1, "search_beta": 1}
    kill = {"flag": ["checkout_v2", "search_beta"], "reason": "errors"}
    assert post(client, "/targets/web/flags/kill", kill).status_code == 303
    assert stored() == {"checkout_v2": 0, "dark_mode": 1, "search_beta": 0}
    assert post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"}).status_code == 303
    assert stored()["fresh"] == 1

    page = plan_page(client, f"as_of={moment}")
    assert json.loads(seen_of(page)) == {"checkout_v2": False, "dark_mode": True, "search_beta": False}
    form = {"as_of": moment, **confirm_of(page), "reason": "back"}
    response = post(client, "/targets/web/flags/restore", form, follow_redirects=True)
    assert "3 change(s) written" in response.get_data(as_text=True)
    assert stored() == {"checkout_v2": 1, "dark_mode": 0, "fresh": 1, "search_beta": 1}
    assert [type(v) for v in stored().values()] == [int] * 4


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_text_enabled_column_is_written_in_the_words_it_already_holds(app, as_role, tmp_path, request, kind):
    """An application comparing with its own spelling ('Y', 'true', '1') must not read Rewind's write as another."""
    server = request.getfixturevalue("pg_server") if kind == "postgresql" else None
    stored = own_table(
        app,
        tmp_path,
        server,
        "name VARCHAR(80) PRIMARY KEY, enabled TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', updated_at TEXT",
        "(name, enabled) VALUES "
        "('checkout_v2', 'true'), ('dark_mode', 'false'), ('legacy', 'N'), ('search_beta', '1'), ('zeta', 'true')",
        kind=kind,
    )
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    assert post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}).status_code == 303
    assert post(client, "/targets/web/flags/legacy/toggle", {"seen": "off"}).status_code == 303
    assert post(client, "/targets/web/flags/kill", {"flag": ["search_beta"], "reason": "errors"}).status_code == 303
    result = app.test_cli_runner().invoke(args=["rewind", "flags", "set", "web", "checkout_v2", "off", "--as", "admin"])
    assert result.exit_code == 0, result.output
    assert post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"}).status_code == 303
    assert stored() == {
        "checkout_v2": "false",
        "dark_mode": "true",
        "fresh": "true",  # a new row: what most rows hold
        "legacy": "Y",
        "search_beta": "0",
        "zeta": "true",
    }
