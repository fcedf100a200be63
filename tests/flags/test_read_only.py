"""A flags table the database will not let Rewind write: a view, a role with SELECT only.

The toggle must say the table cannot be written, in the database's own words, and what to do; nothing changes.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import pytest

from app.auth.roles import Role
from app.targets.flags import TableReadOnly
from tests.flags.conftest import HTMX, TABLE, audit_rows, make_flag_db, targets_toml
from tests.support.apps import post
from tests.support.targets import write_targets_file

FIX = "grant it UPDATE"


def _flags_behind_a_view(flagdb, view_sql: str) -> None:
    """The rows live in flags_store; the configured flags table is a view of them."""
    flagdb.execute(TABLE[flagdb.kind].replace("CREATE TABLE feature_flags", "CREATE TABLE flags_store"))
    flagdb.execute(
        "INSERT INTO flags_store (name, enabled, description, updated_at) VALUES (%s, %s, '', %s)",
        ("dark_mode", False, flagdb.stamp(datetime(2026, 1, 1))),
    )
    flagdb.execute(view_sql)


def _select_only_url(flagdb) -> str:
    """The application database reached as a role that may read the flags table and not write it."""
    role, password = f"reader_{secrets.token_hex(4)}", secrets.token_hex(8)
    flagdb.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    flagdb.execute(f"GRANT SELECT ON feature_flags TO {role}")
    parts = urlsplit(flagdb.url)
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))


CASES = {
    "sqlite-view": ("sqlite", "because it is a view"),
    "postgresql-view": ("postgresql", "DISTINCT"),
    "postgresql-select-only": ("postgresql", "permission denied for table feature_flags"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_flags_table_the_database_will_not_let_rewind_write_is_named_and_nothing_changes(
    case, app, users, as_role, tmp_path, request
):
    kind, words = CASES[case]
    server = request.getfixturevalue("pg_server") if kind == "postgresql" else None
    flagdb = make_flag_db(kind, tmp_path, server, create=case == "postgresql-select-only")
    url = flagdb.url
    if case == "postgresql-select-only":
        flagdb.add("dark_mode", False)
        url = _select_only_url(flagdb)
    else:
        # PostgreSQL writes through a plain view of one table itself: one with DISTINCT it cannot.
        view = "SELECT DISTINCT * FROM flags_store" if kind == "postgresql" else "SELECT * FROM flags_store"
        _flags_behind_a_view(flagdb, "CREATE VIEW feature_flags AS " + view)
    write_targets_file(app, targets_toml(url, tmp_path))
    client = as_role(Role.OPERATOR)

    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert "dark_mode" in page  # it reads: only writing is refused

    answer = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    said = answer.get_data(as_text=True)
    assert answer.status_code == 409, said
    assert "the flags table feature_flags cannot be written: the database said" in said, said
    assert words in said and FIX in said and "try again" not in said
    followed = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, follow_redirects=True)
    assert "cannot be written" in followed.get_data(as_text=True)

    cli = app.test_cli_runner().invoke(args=["rewind", "flags", "set", "web", "dark_mode", "on", "--as", "operator"])
    assert cli.exit_code == 1 and "cannot be written" in cli.output and FIX in cli.output, cli.output

    assert flagdb.execute("SELECT name, enabled FROM feature_flags") in ([("dark_mode", 0)], [("dark_mode", False)])
    rows = audit_rows(app, "flags.toggle")
    assert len(rows) == 3 and all(outcome == "failed" for _, outcome, _ in rows)
    assert all("cannot be written" in details["error"] for *_, details in rows)


def test_the_adapter_error_carries_the_table_and_the_database_s_words(tmp_path):
    flagdb = make_flag_db("sqlite", tmp_path, create=False)
    _flags_behind_a_view(flagdb, "CREATE VIEW feature_flags AS SELECT * FROM flags_store")
    with pytest.raises(TableReadOnly) as refused:
        flagdb.table().set("dark_mode", True)
    assert refused.value.table == "feature_flags" and "because it is a view" in refused.value.said
    assert "database.flags_table" in refused.value.fix
    assert flagdb.execute("SELECT enabled FROM flags_store") == [(0,)]
