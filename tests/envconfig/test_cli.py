"""`flask rewind config …` refusals: one `rewind:` line naming what was wrong, and the refused status."""

from __future__ import annotations

import pytest

from app.envconfig import store
from app.jobs.engine import current_targets
from app.statuses import ExitStatus
from tests.envconfig.conftest import GOOD
from tests.envconfig.test_views import many_versions, two_versions


def config(app, *args):
    return app.test_cli_runner().invoke(args=["rewind", "config", *args])


def refused(result, *needles: str) -> None:
    assert result.exit_code == ExitStatus.REFUSED, (result.exit_code, result.output)
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: ") and all(needle in line for needle in needles), line
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, needles",
    [
        (["versions", "nowhere"], ["there is no target 'nowhere'", "staging"]),
        (["diff", "nowhere", "1", "now"], ["there is no target 'nowhere'"]),
        (["diff", "staging", "4242", "now"], ["no env file version '4242'", "flask rewind config versions staging"]),
        (["diff", "staging", "now", "first"], ["no env file version 'first'"]),
        (["diff", "staging", str(2**64), "now"], [f"no env file version '{2**64}'"]),  # was an OverflowError
        (["diff", "staging", "now", "0"], ["no env file version '0'"]),
    ],
)
def test_unknown_names_are_refused_in_one_line(app, env_target, args, needles):
    two_versions(app, env_target)
    refused(config(app, *args), *needles)


@pytest.mark.parametrize(
    "args", [["versions", "production"], ["diff", "production", "1", "now"], ["snapshot", "production", "--as", "x"]]
)
def test_a_target_without_an_env_file_says_how_to_add_one(app, args):
    refused(config(app, *args), "production has no env file", "env_file = ", "[targets.production]")


def test_versions_fit_80_columns_with_the_changed_keys_wrapped_under_each(app, env_target):
    first, second = two_versions(app, env_target)
    keys = [f"A_RATHER_LONG_SETTING_NAME_{n}" for n in range(8)]
    env_target.env_path.write_text(GOOD + "".join(f"{key}=1\n" for key in keys))
    with app.app_context():
        third, _ = store.ensure_current(current_targets().open("staging"))
        third = third.id
    result = config(app, "versions", "staging")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert [line.split()[0] for line in lines if line.startswith("#")] == [f"#{third}", f"#{second}", f"#{first}"]
    added = lines[1 : lines.index(next(line for line in lines if line.startswith(f"#{second}")))]
    words = ["added:", *[f"{key}," for key in keys[:-1]], f"{keys[-1]};", "removed:", "ADDED;", "changed:", "API_TOKEN"]
    assert len(added) > 1 and " ".join(added).split() == words


def test_versions_page_with_before_and_limit_and_say_how_to_list_the_older_ones(app, env_target):
    ids = many_versions(app, env_target, 105)
    listed = config(app, "versions", "staging")
    assert listed.exit_code == 0, listed.output
    shown = [int(line.split()[0][1:]) for line in listed.stdout.splitlines() if line.startswith("#")]
    assert shown == ids[:4:-1]
    assert listed.stdout.splitlines()[-1] == f"older versions: flask rewind config versions staging --before {ids[5]}"
    older = config(app, "versions", "staging", "--before", str(ids[5]))
    assert [int(line.split()[0][1:]) for line in older.stdout.splitlines() if line.startswith("#")] == ids[4::-1]
    assert "older versions" not in older.stdout
    few = config(app, "versions", "staging", "--limit", "2", "--before", str(2**70))
    assert few.exit_code == 0, few.output
    assert (
        few.stdout.splitlines()[-1]
        == f"older versions: flask rewind config versions staging --before {ids[-2]} --limit 2"
    )
    none = config(app, "versions", "staging", "--before", str(ids[0]))
    assert none.stdout == f"staging: no env file versions older than #{ids[0]}\n"


def _snapshots(app) -> list[tuple[str, str, dict]]:
    import json

    from sqlalchemy import select

    from app.audit.models import AuditEvent
    from app.extensions import db

    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "envconfig.snapshot"))
        return [(r.actor_name, r.outcome, json.loads(r.details)) for r in rows]


def test_snapshot_keeps_the_file_once_as_the_tab_s_button_does(app, env_target, users):
    from app.statuses import EnvSource

    first = config(app, "snapshot", "staging", "--as", "operator")
    assert first.exit_code == 0, first.output
    with app.app_context():
        [version] = store.versions("staging")
        assert (version.source, version.actor_name) == (EnvSource.SNAPSHOT, "operator")
    assert first.stdout == f"staging: snapshot kept as version #{version.id}\n"
    again = config(app, "snapshot", "staging", "--as", "operator")
    assert again.exit_code == 0, again.output
    assert again.stdout == f"staging: the env file is unchanged since version #{version.id}; nothing new to keep\n"
    assert _snapshots(app) == [
        ("operator", "ok", {"version": version.id, "recorded": True, "via": "cli"}),
        ("operator", "ok", {"version": version.id, "recorded": False, "via": "cli"}),
    ]


@pytest.mark.parametrize(
    "args, needles, audited",
    [
        (["snapshot", "nowhere", "--as", "operator"], ["there is no target 'nowhere'"], False),
        (["snapshot", "staging", "--as", "ghost"], ["there is no active Rewind user 'ghost'"], False),
        (["snapshot", "staging", "--as", "viewer"], ["viewer may not take snapshots: it needs the operator"], True),
    ],
)
def test_snapshot_refusals_keep_nothing(app, env_target, users, args, needles, audited):
    refused(config(app, *args), *needles)
    with app.app_context():
        assert store.versions("staging") == []
    assert [(actor, outcome, d) for actor, outcome, d in _snapshots(app)] == (
        [("viewer", "denied", {"via": "cli", "reason": "needs the operator role"})] if audited else []
    )


def test_a_snapshot_that_fails_is_rewinds_error_and_audited(app, env_target, users):
    env_target.env_path.unlink()
    env_target.env_path.mkdir()  # a folder where the file should be
    result = config(app, "snapshot", "staging", "--as", "operator")
    assert result.exit_code == ExitStatus.ERROR, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("rewind: no snapshot: the env file ") and "is a folder" in line, line
    [(actor, outcome, details)] = _snapshots(app)
    assert (actor, outcome, details["via"]) == ("operator", "failed", "cli") and "is a folder" in details["reason"]


def test_a_restore_from_the_shell_without_the_digest_says_which_command_gives_it(app, env_target, users):
    """QA: `flask rewind run staging config_restore version=1 --as …` answered "Digest of the env file shown is
    required: expect=…" and no more: nothing said where an on-call engineer gets that digest."""
    first, _ = two_versions(app, env_target)
    run = ["rewind", "run", "staging", "config_restore", f"version={first}", "--as", "operator"]
    refused(
        app.test_cli_runner().invoke(args=run),
        "Digest of the env file shown is required: expect=…",
        f"`flask rewind config diff staging {first} now` shows what the restore changes and ends with the command",
    )
    shown = config(app, "diff", "staging", str(first), "now")
    assert f"flask rewind run staging config_restore version={first} expect=" in shown.output


def test_a_restore_from_the_shell_with_a_stale_digest_says_the_shell_s_way_on(app, env_target, users):
    """QA: a stale expect= from the shell was told "reload the Config tab and review the new diff", the web's fix."""
    first, _ = two_versions(app, env_target)
    shown = config(app, "diff", "staging", str(first), "now").output
    command = shown.split("back: flask ")[1].split(" --as")[0].split()
    env_target.env_path.write_bytes(env_target.env_path.read_bytes() + b"LATE=1\n")
    refused(
        app.test_cli_runner().invoke(args=[*command, "--as", "operator"]),
        "the env file of staging changed on disk after the diff was shown: nothing was changed",
        f"from the shell, `flask rewind config diff staging {first} now` shows the new diff and ends with the "
        "command to run",
    )


@pytest.mark.parametrize("stale", [False, True])
def test_a_restore_from_the_shell_on_a_protected_target_checks_the_digest_before_asking_for_its_name(
    app, env_target, users, stale
):
    """The shell asks for a protected target's name only once the rest is right (jobs/cli.py, check_values): a
    missing or stale expect= was found only after the name, and with no terminal the refusal named the name
    (pass --yes) instead of the digest the restore was missing."""
    from tests.support.targets import write_targets_file

    write_targets_file(app, env_target.toml(protected=True))
    first, _ = two_versions(app, env_target)
    run = ["rewind", "run", "staging", "config_restore", f"version={first}", "--as", "admin"]
    if stale:
        shown = config(app, "diff", "staging", str(first), "now").output
        run = [*shown.split("back: flask ")[1].split(" --as")[0].split(), "--as", "admin"]
        env_target.env_path.write_bytes(env_target.env_path.read_bytes() + b"LATE=1\n")
    said = "changed on disk after the diff was shown" if stale else "Digest of the env file shown is required"
    result = app.test_cli_runner().invoke(args=run)
    refused(result, said, f"`flask rewind config diff staging {first} now`")
    assert "no terminal to ask" not in result.stderr


def test_the_fix_of_a_first_version_that_did_not_parse_says_it_is_compared_with_nothing(app, env_target):
    """The first version Rewind kept did not parse, so the fix after it has nothing to compare its keys with: the
    shell read "added: GREETING, MODE no version before it parses", the words run into the key list."""
    env_target.env_path.write_text("MODE='never closed\n")
    with app.app_context():
        store.ensure_current(current_targets().open("staging"))
    env_target.env_path.write_text(GOOD)
    with app.app_context():
        fixed = store.ensure_current(current_targets().open("staging"))[0]
        assert fixed.compared_since == "against nothing: no version before it parses", fixed.compared_since
        fixed = fixed.id
    listed = config(app, "versions", "staging").output
    entry = " ".join(listed.split(f"#{fixed} ")[1].split("\n#")[0].split())
    assert "MODE against nothing: no version before it parses" in entry, entry
