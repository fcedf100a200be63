# ruff: noqa: F811
"""Review: restore-as-of putting back states the table did not have at the moment; _flip on a text column."""

from __future__ import annotations

import json

from app.auth.roles import Role
from app.clock import utcnow
from app.extensions import db
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
