"""Review: restore-as-of putting back states the table did not have at the moment; _flip on a text column."""

from __future__ import annotations

import json

import pytest

from app.auth.roles import Role
from app.clock import utcnow
from app.extensions import db
from tests.flags.conftest import make_flag_db
from tests.flags.test_views import flag_app, plan_page, post, seen_of  # noqa: F401 fixtures


def test_restore_as_of_reverts_an_outside_change_made_before_the_moment(flag_app, flagdb, as_role):
    """dark_mode: Rewind turns it on, then the application turns it off (stamped), then the moment.
    At the moment it was off; nothing changed it since. Restore as of the moment must leave it off."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    flagdb.outside_change("dark_mode", False, utcnow())  # e.g. the app's own circuit breaker
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})  # the change to undo
    page = plan_page(client, f"as_of={moment}")
    plan = json.loads(seen_of(page))
    post(client, "/targets/web/flags/restore", {"as_of": moment, "seen": seen_of(page), "reason": "undo"})
    states = flagdb.states()
    # Expected: {"checkout_v2": True, "dark_mode": False, ...}
    assert "dark_mode" not in plan, f"plan turns dark_mode back on although it was off at the moment: {plan}"
    assert states["dark_mode"] is False


def test_a_toggle_between_the_capture_read_and_the_checkpoint_row_is_lost_to_restore(flag_app, flagdb, as_role):
    """jobs.steps.checkpoint: take_all() reads the flags, then store.record() stamps created_at. A toggle landing in
    between is neither in the capture nor replayed (events after created_at only)."""
    from app.checkpoints import captures
    from app.checkpoints import store as checkpoints
    from app.targets import registry

    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # baseline
    with flag_app.app_context():
        taken = captures.take_all(registry.current().open("web"))  # dark_mode off
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})  # dark_mode on, audited
    with flag_app.app_context():
        checkpoints.record("web", None, "a job's checkpoint", taken)
    moment = utcnow().isoformat()
    page = plan_page(client, f"as_of={moment}")
    # As of now the table is exactly as it is: nothing should change.
    assert "No flag state differs." in page, page[page.index("Restore flags as of") :][:800]


def test_a_web_toggle_on_a_text_enabled_column_on_postgresql(app, as_role, tmp_path, pg_server):
    """_as_bool reads 'true'/'false' text; the old SELECT … FOR UPDATE + UPDATE path wrote a text column
    (boolean -> text is an assignment cast). The new one-statement _flip compares text = boolean."""
    flagdb = make_flag_db("postgresql", tmp_path, pg_server, create=False)
    flagdb.execute(
        "CREATE TABLE feature_flags (name VARCHAR(80) PRIMARY KEY, enabled TEXT NOT NULL, "
        "description TEXT NOT NULL DEFAULT '', updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    flagdb.execute("INSERT INTO feature_flags (name, enabled) VALUES ('dark_mode', 'false')")
    table = flagdb.table()
    assert table.get("dark_mode").enabled is False
    table.set("dark_mode", True)  # the shell's path (no seen): works
    assert table.get("dark_mode").enabled is True
    table.set("dark_mode", False, seen=True)  # the web's path (seen given): _flip
    assert table.get("dark_mode").enabled is False


def test_restore_as_of_ignores_the_old_state_rewind_itself_recorded_after_the_moment(flag_app, flagdb, as_role):
    """Checkpoint (dark_mode off); the application turns it on; the moment; Rewind turns it off, auditing old=on.
    At the moment it was on, and Rewind's own audit row says so; the checkpoint's older 'off' wins instead."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint: dark_mode off
    flagdb.outside_change("dark_mode", True, utcnow())
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on", "reason": "incident"})
    page = plan_page(client, f"as_of={moment}")
    assert json.loads(seen_of(page)) == {"dark_mode": False}, "the plan does not put dark_mode back on"


def test_a_smallint_enabled_column_on_postgresql_cannot_be_written_at_all(app, tmp_path, pg_server):
    """psycopg sends a Python bool as boolean; PostgreSQL has no assignment cast boolean -> smallint/integer."""
    flagdb = make_flag_db("postgresql", tmp_path, pg_server, create=False)
    flagdb.execute(
        "CREATE TABLE feature_flags (name VARCHAR(80) PRIMARY KEY, enabled SMALLINT NOT NULL, "
        "description TEXT NOT NULL DEFAULT '', updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    flagdb.execute("INSERT INTO feature_flags (name, enabled) VALUES ('dark_mode', 0)")
    table = flagdb.table()
    assert table.get("dark_mode").enabled is False  # read fine
    table.set("dark_mode", True)  # shell path
    assert table.get("dark_mode").enabled is True


def test_the_issue_drill_restore_five_minutes_ago_on_a_fresh_record(flag_app, flagdb, as_role):
    """The issue's drill: toggle the breaking flag, restore as of five minutes ago. Rewind's first record is the
    baseline taken when the tab was first opened, so 'five minutes ago' is refused until five minutes have passed,
    although every flag's updated_at (2026-01-01) shows nothing but Rewind's toggle moved since."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # baseline
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    page = plan_page(client, "as_of=5 minutes ago")
    assert "Restore flags as of" in page, "refused: " + (page[page.find("before Rewind") - 120 :][:300])


def test_fifty_older_checkpoints_without_flags_make_every_tab_view_a_new_baseline(flag_app, flagdb, as_role):
    """A target that ran 50 jobs before its flags table was configured: its checkpoints hold no flag states.
    ensure_baseline and _first_record look only at the 50 OLDEST checkpoints."""
    from sqlalchemy import func, select

    from app.checkpoints import store as checkpoints
    from app.checkpoints.models import Checkpoint

    with flag_app.app_context():
        for i in range(50):
            checkpoints.record("web", None, f"old job {i}", {"code": {"commit": "a" * 40, "branch": "main"}})
    client = as_role(Role.VIEWER)
    for _ in range(3):
        client.get("/targets/web/flags")
    with flag_app.app_context():
        baselines = db.session.scalar(
            select(func.count()).select_from(Checkpoint).where(Checkpoint.reason == "flags first seen")
        )
    operator = as_role(Role.OPERATOR)
    moment = utcnow().isoformat()
    post(operator, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    page = plan_page(operator, f"as_of={moment}")
    refused = "Restore flags as of" not in page
    assert (baselines, refused) == (1, False), (baselines, page[page.find("before Rewind") - 60 :][:200])


def test_an_updated_at_trigger_makes_every_rewind_toggle_look_changed_outside(app, as_role, tmp_path, pg_server):
    """Many applications stamp updated_at with a trigger. Rewind's own write is then stamped by the server a few
    ms after the stamp Rewind audits as written_at, and its own toggle reads as 'changed outside Rewind'."""
    from tests.flags.test_views import HTMX, targets_toml
    from tests.support.targets import write_targets_file

    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    flagdb.add("dark_mode", False, "Dark colours")
    flagdb.execute(
        "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.updated_at := clock_timestamp() AT TIME ZONE 'UTC'; RETURN NEW; END $$"
    )
    flagdb.execute("CREATE TRIGGER stamp BEFORE UPDATE ON feature_flags FOR EACH ROW EXECUTE FUNCTION stamp()")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # baseline
    row = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX).get_data(as_text=True)
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert "changed outside Rewind" not in row and "changed outside Rewind" not in page
