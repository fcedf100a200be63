# ruff: noqa: F811
"""Review: restore-as-of putting back states the table did not have at the moment; _flip on a text column."""

from __future__ import annotations

import json

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
