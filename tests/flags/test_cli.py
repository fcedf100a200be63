"""`flask rewind flags list|set` against a real flags table."""

from __future__ import annotations

import json

import pytest

from app.auth.roles import Role
from app.statuses import ExitStatus
from tests.flags.conftest import audit_rows, targets_toml
from tests.support.targets import write_targets_file


@pytest.fixture
def cli(app, flagdb, users, tmp_path):
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))

    def invoke(*args: str):
        return app.test_cli_runner().invoke(args=["rewind", "flags", *args])

    return invoke


def test_list_shows_every_flag(cli):
    result = cli("list", "web")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "checkout_v2  on   The new checkout",
        "dark_mode    off  Dark colours",
        "search_beta  on   The new search",
    ]


def test_set_is_role_checked_and_audited_with_via_cli(app, cli, flagdb):
    result = cli("set", "web", "dark_mode", "on", "--as", "operator", "--reason", "from the shell")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "web: dark_mode off -> on"
    assert flagdb.states()["dark_mode"] is True
    [(actor, outcome, details)] = audit_rows(app, "flags.toggle")
    assert (actor, outcome, details["via"], details["reason"]) == ("operator", "ok", "cli", "from the shell")
    assert (details["old"], details["new"]) == (False, True)
    again = cli("set", "web", "dark_mode", "on", "--as", "operator")
    assert "was already on; nothing written" in again.output


def test_a_viewer_is_refused_and_the_refusal_audited(app, cli, flagdb):
    result = cli("set", "web", "dark_mode", "on", "--as", "viewer")
    assert result.exit_code == ExitStatus.REFUSED
    assert result.stderr.startswith("rewind: viewer may not change flags: it needs the operator role")
    assert flagdb.states()["dark_mode"] is False
    assert [(a, o) for a, o, _ in audit_rows(app, "flags.toggle")] == [(Role.VIEWER.label, "denied")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "nowhere", "dark_mode", "on", "--as", "operator"), "there is no target 'nowhere'"),
        (("set", "web", "nope", "on", "--as", "operator"), "no flag 'nope' in feature_flags; see them with: flask"),
        (("set", "web", "dark_mode", "sideways", "--as", "operator"), "state: expected on or off, got 'sideways'"),
        (("set", "web", "dark_mode", "on", "--as", "ghost"), "there is no active Rewind user 'ghost'; see them"),
        (("set", "prod", "dark_mode", "on", "--as", "operator"), 'on prod needs a reason: pass --reason "why"'),
        (("list", "nowhere"), "there is no target 'nowhere'"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_changes_nothing(cli, flagdb, args, message):
    result = cli(*args)
    assert result.exit_code == ExitStatus.REFUSED, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: ") and message in line, line
    assert flagdb.states()["dark_mode"] is False


def test_a_table_rewind_cannot_read_is_rewinds_error_not_a_refusal(cli, flagdb):
    flagdb.execute("DROP TABLE feature_flags")
    result = cli("list", "web")
    assert result.exit_code == ExitStatus.ERROR, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: ") and "feature_flags" in line, line


def test_a_state_that_cannot_be_read_is_refused_and_audited(app, cli, flagdb):
    result = cli("set", "web", "dark_mode", "sideways", "--as", "operator", "--reason", "try")
    assert result.exit_code == ExitStatus.REFUSED and "state: expected on or off, got 'sideways'" in result.output
    [(actor, outcome, details)] = audit_rows(app, "flags.toggle")
    assert (actor, outcome, details["via"], details["new"]) == ("operator", "denied", "cli", "sideways")
    assert details["error"] == "state: expected on or off, got 'sideways'" and details["reason"] == "try"
    assert flagdb.states()["dark_mode"] is False


@pytest.mark.parametrize(
    "args",
    [
        ("set", "web", "dark_mode", "on", "--as", "operator", "--reason", "bad \udcff byte"),
        ("set", "web", "dark_mode", "o\udcffn", "--as", "operator"),
        ("set", "web", "dark\udcff", "on", "--as", "operator"),
    ],
)
def test_bytes_that_are_not_text_in_the_shell_are_audited_readably(app, cli, flagdb, args):
    """A shell hands over bytes that are not UTF-8 as lone surrogates: the audit row must still be written."""
    from app.audit import store as audit_store

    result = cli(*args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if "dark\udcff" in args:
        assert result.exit_code == ExitStatus.REFUSED
        assert "the flag name holds bytes that are not UTF-8 text" in result.output
    [(actor, _, details)] = audit_rows(app, "flags.toggle")
    assert actor == "operator" and "\ufffd" in json.dumps(details, ensure_ascii=False)
    with app.app_context():
        assert audit_store.verify().intact


def test_list_names_a_flag_whose_state_is_null_after_the_others_and_fails(cli, flagdb):
    flagdb.execute("DROP TABLE feature_flags")
    flagdb.execute(
        "CREATE TABLE feature_flags (name TEXT PRIMARY KEY, enabled TEXT, description TEXT, updated_at TEXT)"
    )
    flagdb.execute(
        "INSERT INTO feature_flags VALUES ('dark_mode', 'false', 'Dark colours', NULL), ('half', NULL, NULL, NULL)"
    )
    result = cli("list", "web")
    assert result.exit_code == ExitStatus.ERROR  # a script sees something is wrong; the person still sees every flag
    lines = result.stdout.splitlines()
    assert lines[0] == "dark_mode  off  Dark colours"
    assert lines[1].startswith("half       ???  flag 'half' holds NULL in its enabled column")
    assert result.stderr.startswith("rewind: the state of 'half' is neither on nor off")


def test_list_wraps_a_description_under_itself_within_80_columns(cli, flagdb):
    name = "a_flag_with_a_name_long_enough_to_wrap"
    flagdb.add(name, True, "Turns on every part of the new checkout")
    result = cli("list", "web")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    column = len(name) + 2 + 3 + 2
    first = lines[0]
    assert first.startswith(f"{name}  on   Turns on") and lines[1].startswith(" " * column)
    assert " ".join([first[column:], lines[1][column:]]) == "Turns on every part of the new checkout"
    assert lines[2].startswith("checkout_v2") and lines[2].endswith("on   The new checkout")
