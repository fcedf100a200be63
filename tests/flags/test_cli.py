"""`flask rewind flags list|set` against a real flags table."""

from __future__ import annotations

import json
import re
import shlex
from datetime import datetime

import pytest

from app.auth.roles import Role
from app.clock import utcnow
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


def test_list_orders_flags_as_the_tab_does_whatever_the_case_or_the_tables_collation(cli, flagdb):
    """The table's own order put Upper_Flag and Zeta before aaa_first (a byte-wise collation); the tab reads
    names as a person does, case folded, and so does the shell."""
    for name in ("Zeta", "Upper_Flag", "aaa_first", "AAA_first"):
        flagdb.add(name, False)
    result = cli("list", "web")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == [
        "AAA_first",
        "aaa_first",
        "checkout_v2",
        "dark_mode",
        "search_beta",
        "Upper_Flag",
        "Zeta",
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
    [(actor, outcome, details)] = audit_rows(app, "flags.toggle")
    assert (actor, outcome) == (Role.VIEWER.label, "denied")
    assert details == {"flag": "dark_mode", "reason": "", "via": "cli", "error": "needs the operator role"}


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


# --- the Flags tab's other buttons: kill switch, restore as of, create, delete, history ---------------------------


def _checkpoint(app, flagdb) -> int:
    """A checkpoint of the flags as they are now (what every job records first), its id."""
    from app.checkpoints import store as checkpoints
    from app.flags.captures import snapshot

    with app.app_context():
        return checkpoints.record("web", None, "before the change", {"flags": snapshot(flagdb.table())}).id


def test_kill_turns_the_named_flags_off_at_once_audited_as_the_tab_does(app, cli, flagdb):
    result = cli("kill", "web", "search_beta", "dark_mode", "checkout_v2", "--as", "operator", "--reason", "fire")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "web: kill switch turned 2 flag(s) off: checkout_v2, search_beta",
        "already off: dark_mode",
    ]
    assert flagdb.states() == {"checkout_v2": False, "dark_mode": False, "search_beta": False}
    [(actor, outcome, details)] = audit_rows(app, "flags.kill")
    assert (actor, outcome, details["via"], details["reason"], details["tag"]) == (
        "operator",
        "ok",
        "cli",
        "fire",
        None,
    )
    assert details["flags"] == ["checkout_v2", "dark_mode", "search_beta"] and details["already_off"] == ["dark_mode"]
    assert details["changes"] == [
        {"flag": "checkout_v2", "old": True, "new": False},
        {"flag": "search_beta", "old": True, "new": False},
    ]


def test_kill_by_tag_or_all(app, flagdb, users, tmp_path):
    write_targets_file(app, targets_toml(flagdb.url, tmp_path, tag="team"))
    run = app.test_cli_runner()
    result = run.invoke(args=["rewind", "flags", "kill", "web", "--tag", "web", "--as", "operator", "--reason", "x"])
    assert result.exit_code == 0 and "turned 1 flag(s) off: search_beta" in result.output, result.output
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": False}
    result = run.invoke(args=["rewind", "flags", "kill", "web", "--all", "--as", "admin", "--reason", "everything"])
    assert result.exit_code == 0 and "turned 1 flag(s) off: checkout_v2" in result.output, result.output
    assert set(flagdb.states().values()) == {False}
    assert [d["tag"] for _, _, d in audit_rows(app, "flags.kill")] == ["web", None]


def test_kill_with_nothing_chosen_says_how_to_choose(app, cli, flagdb):
    """The shell has no boxes to tick: the refusal names the three ways to choose, not only that none was."""
    result = cli("kill", "web", "--as", "operator", "--reason", "fire")
    assert result.exit_code == ExitStatus.REFUSED, result.output
    assert result.stderr.splitlines() == [
        "rewind: no flags chosen: nothing to turn off; name the flags, or give --tag T, or --all"
    ]
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": True}
    [(_, outcome, details)] = audit_rows(app, "flags.kill")
    assert outcome == "denied" and "--tag T, or --all" in details["error"]


@pytest.mark.parametrize(
    ("args", "message", "audited"),
    [
        (("web", "dark_mode", "--as", "viewer", "--reason", "r"), "viewer may not use the kill switch: it needs", True),
        (  # all or none; QA: a name never there was "no longer in feature_flags … reload the flags"
            ("web", "checkout_v2", "gone", "--as", "operator", "--reason", "r"),
            "not in feature_flags: gone; nothing was changed; see them with: flask rewind flags list web",
            True,
        ),
        (("web", "checkout_v2", "--as", "operator"), "the kill switch needs a reason", True),
        (("web", "--as", "operator", "--reason", "r"), "no flags chosen: nothing to turn off", True),
        (("web", "checkout_v2", "--all", "--as", "operator", "--reason", "r"), "only one of them", True),
        (("nowhere", "checkout_v2", "--as", "operator", "--reason", "r"), "there is no target 'nowhere'", False),
        (("web", "checkout_v2", "--as", "ghost", "--reason", "r"), "there is no active Rewind user 'ghost'", False),
    ],
)
def test_kill_refusals_change_nothing_and_are_audited(app, cli, flagdb, args, message, audited):
    result = cli("kill", *args)
    assert result.exit_code == ExitStatus.REFUSED, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: ") and message in line, line
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": True}
    rows = audit_rows(app, "flags.kill")
    assert [(o, d["via"]) for _, o, d in rows] == ([("denied", "cli")] if audited else [])


def test_restore_prints_the_plan_then_writes_it_only_when_confirmed(app, cli, flagdb):
    checkpoint = _checkpoint(app, flagdb)
    cli("set", "web", "dark_mode", "on", "--as", "operator")
    cli("set", "web", "search_beta", "off", "--as", "operator")
    plan = cli("restore", "web", "--checkpoint", str(checkpoint), "--as", "operator")
    assert plan.exit_code == 0, plan.output
    lines = plan.output.splitlines()
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"  # the checkpoint's time, said once beside its number
    assert re.fullmatch(rf"web: flags as of checkpoint #{checkpoint} \({when}\), as Rewind's records show", lines[0])
    assert "  change   dark_mode    on -> off" in lines and "  change   search_beta  off -> on" in lines
    assert lines[-1].startswith("nothing written; to write this plan: flask rewind flags restore web --checkpoint ")
    assert " --fingerprint " in lines[-1] and lines[-1].endswith("--yes --as USER")
    assert flagdb.states()["dark_mode"] is True and audit_rows(app, "flags.restore") == []  # only shown

    done = cli("restore", "web", "--checkpoint", str(checkpoint), "--as", "operator", "--reason", "undo", "--yes")
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == f"web: flags restored as of checkpoint #{checkpoint}: 2 change(s) written"
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": True}
    [(actor, outcome, details)] = audit_rows(app, "flags.restore")
    assert (actor, outcome, details["via"], details["reason"]) == ("operator", "ok", "cli", "undo")
    assert details["source"] == f"checkpoint #{checkpoint}" and len(details["changes"]) == 2


def test_restore_on_a_protected_target_prints_a_command_that_asks_for_the_reason(app, cli, flagdb):
    """QA: on a protected target the printed command had no --reason, so running it was refused: "restoring
    prod's flags needs a reason"."""
    from app.checkpoints import store as checkpoints
    from app.flags.captures import snapshot

    with app.app_context():
        checkpoint = checkpoints.record("prod", None, "before the change", {"flags": snapshot(flagdb.table())}).id
    cli("set", "prod", "dark_mode", "on", "--as", "operator", "--reason", "try it")
    plan = cli("restore", "prod", "--checkpoint", str(checkpoint), "--as", "operator")
    assert plan.exit_code == 0, plan.output
    command = plan.output.splitlines()[-1].split("to write this plan: flask rewind ")[1]
    assert command.endswith("--yes --as USER --reason WHY")
    args = shlex.split(command.replace("USER", "operator").replace("WHY", "'back as it was'"))
    done = app.test_cli_runner().invoke(args=["rewind", *args])
    assert done.exit_code == 0, done.output
    assert flagdb.states()["dark_mode"] is False
    [(_, outcome, details)] = audit_rows(app, "flags.restore")
    assert (outcome, details["reason"]) == ("ok", "back as it was")


def test_restore_refuses_to_recreate_a_flag_not_deleted_before_printing_a_command(app, cli, flagdb):
    """QA: --recreate of a flag that was never deleted was taken into the printed command, which then refused it."""
    checkpoint = _checkpoint(app, flagdb)
    cli("set", "web", "dark_mode", "on", "--as", "operator")
    plan = cli("restore", "web", "--checkpoint", str(checkpoint), "--recreate", "nope", "--as", "operator")
    assert plan.exit_code == ExitStatus.REFUSED, plan.output
    assert plan.stderr == f"rewind: cannot recreate nope: not deleted since checkpoint #{checkpoint}; nothing written\n"
    assert "to write this plan" not in plan.output and flagdb.states()["dark_mode"] is True


def test_restore_as_of_a_time_says_the_time_once(app, cli, flagdb):
    """QA: "staging: flags as of 2026-11-27 16:47:40 UTC (2026-11-27 16:47:40 UTC)"."""
    _checkpoint(app, flagdb)
    moment = utcnow()
    plan = cli("restore", "web", "--as-of", moment.isoformat(), "--as", "operator")
    assert plan.exit_code == 0, plan.output
    assert plan.output.splitlines()[0] == f"web: flags as of {moment:%Y-%m-%d %H:%M:%S} UTC, as Rewind's records show"


def test_restore_with_the_printed_fingerprint_is_refused_once_the_table_moved(app, cli, flagdb):
    checkpoint = _checkpoint(app, flagdb)
    cli("set", "web", "dark_mode", "on", "--as", "operator")
    plan = cli("restore", "web", "--checkpoint", str(checkpoint), "--as", "operator")
    fingerprint = plan.output.split("--fingerprint ")[1].split()[0]
    flagdb.outside_change("checkout_v2", True, datetime(2026, 6, 1))  # same state, a newer stamp: the table moved
    stale = cli(
        "restore", "web", "--checkpoint", str(checkpoint), "--fingerprint", fingerprint, "--yes", "--as", "operator"
    )
    assert stale.exit_code == ExitStatus.REFUSED, stale.output
    (line,) = stale.stderr.splitlines()
    assert line.startswith("rewind: the flags changed since the plan was shown, so nothing was written")
    assert flagdb.states()["dark_mode"] is True
    [(_, outcome, details)] = audit_rows(app, "flags.restore")
    assert (outcome, details["via"]) == ("denied", "cli")
    fresh = stale.output.split("--fingerprint ")[-1].split()[0]  # the plan it is now, printed with the refusal
    again = cli("restore", "web", "--checkpoint", str(checkpoint), "--fingerprint", fresh, "--yes", "--as", "operator")
    assert again.exit_code == 0, again.output
    assert flagdb.states()["dark_mode"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("web", "--checkpoint", "1", "--as", "viewer"), "viewer may not restore flags: it needs the operator role"),
        (("nowhere", "--checkpoint", "1", "--as", "operator"), "there is no target 'nowhere'"),
        (("web", "--checkpoint", "4242", "--as", "operator"), "checkpoint #4242 of web does not exist"),
        (("web", "--checkpoint", "1", "--job", "2", "--as", "operator"), "you gave checkpoint #1 and job #2"),
        (("web", "--as-of", "yesterday-ish", "--as", "operator"), "cannot read 'yesterday-ish' as a time"),
        (("web", "--as", "operator"), "choose a time, a checkpoint or a job"),
    ],
)
def test_restore_refusals_write_nothing(cli, flagdb, args, message):
    result = cli("restore", *args)
    assert result.exit_code == ExitStatus.REFUSED, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: ") and message in line, line
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": True}


def test_create_and_delete_are_admin_only_and_audited_as_the_tab_does(app, cli, flagdb):
    made = cli("create", "web", "new_search", "on", "--description", "The newer search", "--as", "admin")
    assert made.exit_code == 0 and made.output.strip() == "web: flag new_search created (on)", made.output
    assert flagdb.states()["new_search"] is True
    [(actor, outcome, details)] = audit_rows(app, "flags.create")
    assert (actor, outcome, details["via"], details["new"], details["description"]) == (
        "admin",
        "ok",
        "cli",
        True,
        "The newer search",
    )
    gone = cli("delete", "web", "new_search", "--as", "admin", "--reason", "shipped")
    assert gone.exit_code == 0 and "web: flag new_search deleted" in gone.output, gone.output
    assert "new_search" not in flagdb.states()
    [(actor, outcome, details)] = audit_rows(app, "flags.delete")
    assert (actor, outcome, details["via"], details["reason"], details["old"]) == (
        "admin",
        "ok",
        "cli",
        "shipped",
        True,
    )
    assert details["description"] == "The newer search"


@pytest.mark.parametrize(
    ("args", "message", "action"),
    [
        (
            ("create", "web", "x", "--as", "operator"),
            "operator may not create flags: it needs the admin role",
            "create",
        ),
        (
            ("delete", "web", "dark_mode", "--as", "operator"),
            "operator may not delete flags: it needs the admin",
            "delete",
        ),
        (("create", "web", "dark_mode", "--as", "admin"), "dark_mode", "create"),  # exists already
        (("create", "web", "a b", "--as", "admin"), "flag name 'a b': use up to 80 letters", "create"),
        (("create", "web", "x", "sideways", "--as", "admin"), "initial state: expected on or off", "create"),
        (
            ("create", "prod", "x", "--as", "admin"),
            'creating a flag on prod needs a reason: pass --reason "why"',
            "create",
        ),
        (("delete", "web", "nope", "--as", "admin"), "no flag 'nope' in feature_flags; see them with", "delete"),
        (
            ("delete", "prod", "dark_mode", "--as", "admin", "--reason", "r"),
            "prod is protected and there is no",
            "delete",
        ),
        (("create", "nowhere", "x", "--as", "admin"), "there is no target 'nowhere'", None),
        (("delete", "nowhere", "x", "--as", "admin"), "there is no target 'nowhere'", None),
    ],
)
def test_create_and_delete_refusals_change_nothing(app, cli, flagdb, args, message, action):
    result = cli(*args)
    assert result.exit_code == ExitStatus.REFUSED, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: ") and message in line, line
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": True}
    rows = audit_rows(app, f"flags.{action}") if action else []
    assert [(o, d["via"]) for _, o, d in rows] == ([("denied", "cli")] if action else [])


def test_delete_on_a_protected_target_goes_with_yes(app, cli, flagdb):
    result = cli("delete", "prod", "dark_mode", "--as", "admin", "--reason", "gone", "--yes")
    assert result.exit_code == 0, result.output
    assert "dark_mode" not in flagdb.states()


def test_history_pages_newest_first_with_nothing_repeated_or_lost(app, cli, flagdb):
    for n in range(5):
        cli("set", "web", "dark_mode", "on" if n % 2 == 0 else "off", "--as", "operator", "--reason", f"change {n}")
    cli("set", "web", "dark_mode", "on", "--as", "operator", "--reason", "changed nothing")  # already on
    cli("set", "web", "search_beta", "off", "--as", "operator", "--reason", "another flag")
    args, seen, pages = ["history", "web", "dark_mode", "--limit", "2"], [], 0
    while args:
        result = cli(*args)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == "web: dark_mode is on now: Dark colours"
        changes = [line for line in lines if line.startswith("#")]
        assert 0 < len(changes) <= 2
        seen += [line.rsplit("'", 2)[1] for line in changes]
        pages += 1
        more = lines[-1] if lines[-1].startswith("older changes: flask rewind ") else None
        args = more.removeprefix("older changes: flask rewind flags ").split() if more else None
    assert pages == 3 and seen == [f"change {n}" for n in reversed(range(5))]
    newest = cli("history", "web", "dark_mode").output.splitlines()[1]
    assert " operator  toggled  off -> on  'change 4'" in newest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("history", "nowhere", "dark_mode"), "there is no target 'nowhere'"),
        (("history", "web", "never_was"), "there is no flag 'never_was' on web, now or in Rewind's records"),
    ],
)
def test_history_refusals(cli, args, message):
    result = cli(*args)
    assert result.exit_code == ExitStatus.REFUSED, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: ") and message in line, line


def test_the_history_of_a_deleted_flag_is_still_there(app, cli, flagdb):
    cli("delete", "web", "dark_mode", "--as", "admin")
    lines = cli("history", "web", "dark_mode").output.splitlines()
    assert (
        lines[0] == "web: dark_mode is not in the table now (deleted)" and " admin  deleted  off -> absent" in lines[1]
    )
