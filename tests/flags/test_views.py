"""The Flags tab through the real app: toggles, refusals, kill switch, create/delete, restore as of."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
from sqlalchemy import select

from app.auth.roles import Role
from app.clock import utcnow
from app.domids import dom_id
from app.extensions import db
from app.statuses import ExitStatus
from app.targets import flags as flags_adapter
from tests.conftest import both_databases
from tests.flags.conftest import HTMX, audit_rows, confirm_of, plan_page, refuse_at_commit, seen_of, targets_toml
from tests.support.apps import csrf_token, post
from tests.support.targets import write_targets_file


def test_tab_lists_every_flag_with_state_in_words(flag_app, as_role):
    page = as_role(Role.VIEWER).get("/targets/web/flags").get_data(as_text=True)
    assert 'id="flag-checkout_v2"' in page and 'id="flag-dark_mode"' in page
    assert '<span class="badge badge-ok">on</span>' in page and '<span class="badge badge-neutral">off</span>' in page
    assert "not changed through Rewind" in page
    assert "Turn off" not in page  # a viewer sees no toggle


def test_search_narrows_the_list(flag_app, as_role):
    page = as_role(Role.VIEWER).get("/targets/web/flags?q=colours").get_data(as_text=True)
    assert 'id="flag-dark_mode"' in page and 'id="flag-checkout_v2"' not in page
    assert "1 of 3 flag(s)" in page


@both_databases  # Rewind's own ops database, too
def test_htmx_toggle_swaps_the_row_and_audits_old_new_reason(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off", "reason": "try it"}, headers=HTMX)
    assert response.status_code == 200
    row = response.get_data(as_text=True)
    assert row.startswith('<tr id="flag-dark_mode"') and '<span class="badge badge-ok">on</span>' in row
    assert "dark_mode is now on." in row and "“try it”" in row
    assert flagdb.states()["dark_mode"] is True
    [(actor, outcome, details)] = audit_rows(flag_app, "flags.toggle")
    assert (actor, outcome) == ("operator", "ok")
    assert (details["old"], details["new"], details["reason"], details["via"]) == (False, True, "try it", "web")
    assert details["changes"] == [{"flag": "dark_mode", "old": False, "new": True}]


def test_a_stale_toggle_is_refused_showing_the_current_state(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    flagdb.outside_change("dark_mode", True, datetime(2026, 4, 1))
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 409
    row = response.get_data(as_text=True)
    assert "dark_mode is on now, not off as you saw it" in row
    assert '<span class="badge badge-ok">on</span>' in row and "Turn off" in row
    assert flagdb.states()["dark_mode"] is True
    [(_, outcome, details)] = audit_rows(flag_app, "flags.toggle")
    assert outcome == "denied" and details["current"] is True and "nothing was written" in details["error"]


def test_a_protected_target_asks_for_a_reason(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/prod/flags").get_data(as_text=True)
    assert 'name="reason" required' in page
    response = post(client, "/targets/prod/flags/dark_mode/toggle", {"seen": "off", "reason": " "}, headers=HTMX)
    assert response.status_code == 422 and "needs a reason" in response.get_data(as_text=True)
    assert flagdb.states()["dark_mode"] is False
    response = post(client, "/targets/prod/flags/dark_mode/toggle", {"seen": "off", "reason": "incident 7"})
    assert response.status_code == 303
    assert flagdb.states()["dark_mode"] is True
    assert [d["reason"] for _, o, d in audit_rows(flag_app, "flags.toggle") if o == "ok"] == ["incident 7"]


def test_bad_input_is_a_clear_message(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/nope/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 404 and "There is no flag &#39;nope&#39;" in response.get_data(as_text=True)
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "maybe"}, headers=HTMX)
    assert response.status_code == 422 and "expected on or off" in response.get_data(as_text=True)
    response = post(client, "/targets/nowhere/flags/dark_mode/toggle", {"seen": "off"})
    assert response.status_code == 404 and "there is no target" in response.get_data(as_text=True).lower()
    assert flagdb.states()["dark_mode"] is False


def test_malformed_input_is_refused_audited_and_nothing_written(flag_app, flagdb, as_role):
    """Input the views cannot read is refused like a stale toggle is: a clear message, the refusal in the audit log
    with its reason, and the flags table untouched."""
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    rows = flagdb.execute("SELECT * FROM feature_flags ORDER BY name")
    toggle = "/targets/web/flags/dark_mode/toggle"

    def said(response) -> str:
        return response.get_data(as_text=True)

    response = post(client, toggle, {"seen": "maybe", "reason": "why not"}, headers=HTMX)
    assert response.status_code == 422 and "seen: expected on or off, got &#39;maybe&#39;" in said(response)
    response = post(client, toggle, {"seen": "off", "reason": "x" * 600}, headers=HTMX)
    assert response.status_code == 422 and "the reason is 600 characters" in said(response)
    response = post(admin, "/targets/web/flags/new", {"flag": "bad name!"}, follow_redirects=True)
    assert "use up to 80 letters" in said(response)
    response = post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "perhaps"}, follow_redirects=True)
    assert "initial state: expected on or off, got &#39;perhaps&#39;" in said(response)
    response = post(admin, "/targets/web/flags/dark_mode/delete", {"seen": "maybe"}, follow_redirects=True)
    assert "seen: expected on or off" in said(response)
    form = {"as_of": "yesterday-ish", "seen": "{}", "fingerprint": "0" * 64, "reason": "back"}
    response = post(client, "/targets/web/flags/restore", form, follow_redirects=True)
    assert "cannot read &#39;yesterday-ish&#39; as a time" in said(response)
    form = {"as_of": utcnow().isoformat(), "seen": "not json"}
    response = post(client, "/targets/web/flags/restore", form, follow_redirects=True)
    assert "the confirmed plan is missing from the form" in said(response)

    assert flagdb.execute("SELECT * FROM feature_flags ORDER BY name") == rows
    toggles = audit_rows(flag_app, "flags.toggle")
    assert [(a, o, d["error"]) for a, o, d in toggles] == [
        ("operator", "denied", "seen: expected on or off, got 'maybe'"),
        ("operator", "denied", "the reason is 600 characters; keep it under 500"),
    ]
    assert (toggles[0][2]["seen"], toggles[0][2]["reason"], toggles[0][2]["flag"]) == ("maybe", "why not", "dark_mode")
    creates = audit_rows(flag_app, "flags.create")
    assert [(a, o) for a, o, _ in creates] == [("admin", "denied")] * 2
    assert "use up to 80 letters" in creates[0][2]["error"] and creates[0][2]["flag"] == "bad name!"
    assert creates[1][2]["error"] == "initial state: expected on or off, got 'perhaps'"
    [(_, outcome, deleted)] = audit_rows(flag_app, "flags.delete")
    assert outcome == "denied" and deleted["error"] == "seen: expected on or off, got 'maybe'"
    restores = audit_rows(flag_app, "flags.restore")
    assert [o for _, o, _ in restores] == ["denied", "denied"]
    assert "cannot read 'yesterday-ish'" in restores[0][2]["error"] and restores[0][2]["as_of"] == "yesterday-ish"
    assert restores[1][2]["error"].startswith("the confirmed plan is missing")


def test_a_viewer_cannot_toggle(flag_app, flagdb, as_role):
    response = post(as_role(Role.VIEWER), "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 403
    assert flagdb.states()["dark_mode"] is False
    assert [o for _, o, _ in audit_rows(flag_app, "auth.denied")] == ["denied"]


def test_a_viewer_is_told_the_tab_reads_only_for_their_role(flag_app, as_role):
    """QA: a viewer saw an empty Actions column and nothing saying why (the Config, Migrations and Traffic parts
    say which role may act): in an incident that reads as "flags cannot be changed here"."""
    page = as_role(Role.VIEWER).get("/targets/web/flags").get_data(as_text=True)
    assert "Your role reads only: turning, creating, deleting and restoring flags is for operators." in page
    assert "Turn off<" not in page
    assert 'id="flags-read-only"' not in as_role(Role.OPERATOR).get("/targets/web/flags").get_data(as_text=True)


def test_missing_csrf_is_refused(flag_app, flagdb, as_role):
    response = as_role(Role.OPERATOR).post("/targets/web/flags/dark_mode/toggle", data={"seen": "off"})
    assert response.status_code == 400 and "Security token" in response.get_data(as_text=True)
    assert flagdb.states()["dark_mode"] is False
    assert audit_rows(flag_app, "flags.toggle") == []


def test_missing_table_or_column_shows_on_the_page_not_a_500(app, flagdb, as_role, tmp_path):
    write_targets_file(app, targets_toml(flagdb.url, tmp_path, enabled="is_on"))
    response = as_role(Role.VIEWER).get("/targets/web/flags")
    assert response.status_code == 200
    assert "has no column &#39;is_on&#39; (its enabled column)" in response.get_data(as_text=True)
    response = post(as_role(Role.OPERATOR), "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 503 and "is_on" in response.get_data(as_text=True)


def test_kill_switch_by_choice_and_by_tag(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/kill", {"flag": ["checkout_v2"], "reason": "errors spiking"})
    assert response.status_code == 303
    assert flagdb.states() == {"checkout_v2": False, "dark_mode": False, "search_beta": True}
    post(client, "/targets/web/flags/kill", {"tag": "web", "reason": "web is broken"})
    assert set(flagdb.states().values()) == {False}
    kills = audit_rows(flag_app, "flags.kill")
    assert [d["changes"] for _, _, d in kills] == [
        [{"flag": "checkout_v2", "old": True, "new": False}],
        [{"flag": "search_beta", "old": True, "new": False}],
    ]
    assert kills[1][2]["already_off"] == ["dark_mode"] and kills[1][2]["reason"] == "web is broken"


def test_kill_switch_with_a_vanished_flag_changes_nothing_and_names_it(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    flagdb.execute("DELETE FROM feature_flags WHERE name = 'search_beta'")
    chosen = {"flag": ["checkout_v2", "search_beta"], "reason": "x"}
    response = post(client, "/targets/web/flags/kill", chosen, follow_redirects=True)
    assert "no longer in feature_flags: search_beta; nothing was changed" in response.get_data(as_text=True)
    assert flagdb.states()["checkout_v2"] is True
    [(_, outcome, details)] = audit_rows(flag_app, "flags.kill")
    assert outcome == "denied" and details["vanished"] == ["search_beta"]


def test_kill_switch_needs_a_reason(flag_app, flagdb, as_role):
    response = post(as_role(Role.OPERATOR), "/targets/web/flags/kill", {"flag": ["checkout_v2"]}, follow_redirects=True)
    assert "the kill switch needs a reason" in response.get_data(as_text=True)
    assert flagdb.states()["checkout_v2"] is True


def test_admins_create_and_delete_operators_do_not(flag_app, flagdb, as_role):
    response = post(as_role(Role.OPERATOR), "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"})
    assert response.status_code == 403
    admin = as_role(Role.ADMIN)
    response = post(admin, "/targets/web/flags/new", {"flag": "bad name!", "description": ""}, follow_redirects=True)
    assert "use up to 80 letters" in response.get_data(as_text=True)
    for dots in (".", ".."):  # a browser drops these from the toggle and delete addresses
        response = post(admin, "/targets/web/flags/new", {"flag": dots}, follow_redirects=True)
        assert "cannot be only dots" in response.get_data(as_text=True) and dots not in flagdb.states()
    post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on", "description": "New one"})
    assert flagdb.states()["fresh"] is True
    post(admin, "/targets/web/flags/fresh/delete", {"seen": "on"})
    assert "fresh" not in flagdb.states()
    refused, *_dots, (_, _, created) = audit_rows(flag_app, "flags.create")
    [(_, _, deleted)] = audit_rows(flag_app, "flags.delete")
    assert refused[1] == "denied" and refused[2]["flag"] == "bad name!"  # the bad name, refused and audited
    assert (created["old"], created["new"], created["description"]) == (None, True, "New one")
    assert (deleted["old"], deleted["new"], deleted["description"]) == (True, None, "New one")


def test_changed_outside_rewind_is_shown(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert "changed outside Rewind" not in page
    flagdb.outside_change("dark_mode", True, utcnow() + timedelta(seconds=5))  # same state, newer stamp
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert page.count("changed outside Rewind") == 1
    assert "toggled by operator" in page


def test_flag_history_page(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off", "reason": "first"})
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on", "reason": "second"})
    page = client.get("/targets/web/flags/history?flag=dark_mode").get_data(as_text=True)
    assert page.index("<td>second</td>") < page.index("<td>first</td>")
    assert "on → off" in page and "off → on" in page
    assert client.get("/targets/web/flags/history?flag=never_was").status_code == 404
    assert "add ?flag=NAME" in client.get("/targets/web/flags/history").get_data(as_text=True)


# Names that were the tab's own addresses, or that a browser rewrites or cuts short in a path.
ODD_NAMES = ["restore", "kill", "new", "history", "x/toggle", "a/delete", "..", ".", "a/../b", "a//b", "a/"]
ODD_NAMES += ["a?b=c", "a#b", "100%", "sp ace", "a&flag=b", "+plus"]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_every_flag_name_reaches_its_own_history_page(flag_app, flagdb, as_role, role):
    for name in ODD_NAMES:
        flagdb.add(name, False, "odd name")
    client = as_role(role)
    tab = "http://localhost/targets/web/flags"
    page = client.get(tab).get_data(as_text=True)
    for name in ODD_NAMES:
        row = page[page.index(f'id="flag-{dom_id(name)}"') :].split("</tr>", 1)[0]
        href = html.unescape(re.search(r'<a href="([^"]+)"', row).group(1))
        answer = client.get(urljoin(tab, href))  # as a browser follows it: dot segments resolved
        assert answer.status_code == 200, (name, href, answer.status_code)  # restore was a 403 or a plan refusal
        assert f"<h2>Flag <code>{html.escape(name)}</code></h2>" in answer.get_data(as_text=True), (name, href)


def test_an_old_bookmark_of_a_flag_page_moves_to_its_new_address(flag_app, flagdb, as_role):
    flagdb.add("checkout/eu", False)
    client = as_role(Role.VIEWER)
    for old, name in (("dark_mode", "dark_mode"), ("kill", "kill"), ("checkout/eu", "checkout/eu")):
        answer = client.get(f"/targets/web/flags/{old}")
        assert answer.status_code == 301
        assert parse_qs(urlsplit(answer.headers["Location"]).query) == {"flag": [name]}
    assert "Flag <code>checkout/eu</code>" in client.get(
        "/targets/web/flags/checkout/eu", follow_redirects=True
    ).get_data(as_text=True)
    assert client.get("/targets/nowhere/flags/dark_mode").status_code == 404


def test_restore_as_of_across_creations_and_deletions(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    admin = as_role(Role.ADMIN)
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    moment = utcnow()
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})
    post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"})
    post(admin, "/targets/web/flags/search_beta/delete", {"seen": "on"})
    as_of = moment.isoformat()

    page = plan_page(client, f"as_of={as_of}")
    assert "1 flag(s) change" in page and "<code>checkout_v2</code>" in page
    assert "Created since — left alone" in page and "<code>fresh</code>" in page
    assert 'name="recreate" value="search_beta"' in page and "The new search" in page
    assert json.loads(seen_of(page)) == {"checkout_v2": False}

    response = post(client, "/targets/web/flags/restore", {"as_of": as_of, **confirm_of(page), "reason": "back"})
    assert response.status_code == 303
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": True, "fresh": True}  # search_beta not recreated
    [(_, outcome, details)] = audit_rows(flag_app, "flags.restore")
    assert outcome == "ok" and details["changes"] == [{"flag": "checkout_v2", "old": False, "new": True}]
    assert details["created_since"] == ["fresh"] and details["deleted_since"] == ["search_beta"]
    assert details["via"] == "web"  # as every other flags.* row says where it came from (the CLI's say "cli")

    page = plan_page(client, f"as_of={as_of}")
    post(client, "/targets/web/flags/restore", {"as_of": as_of, **confirm_of(page), "recreate": "search_beta"})
    assert flagdb.states()["search_beta"] is True
    assert flagdb.table().get("search_beta").description == "The new search"


def test_restore_refuses_when_the_table_moved_after_the_plan(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/search_beta/toggle", {"seen": "on"})
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})
    page = plan_page(client, f"as_of={moment}")
    flagdb.outside_change("checkout_v2", True, utcnow())
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})  # moves the plan, too
    form = {"as_of": moment, **confirm_of(page)}
    response = post(client, "/targets/web/flags/restore", form, follow_redirects=True)
    assert "changed since the plan was shown" in response.get_data(as_text=True)
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": True, "search_beta": False}
    assert audit_rows(flag_app, "flags.restore")[0][1] == "denied"


def test_restore_before_any_record_is_a_clear_error(flag_app, as_role):
    client = as_role(Role.OPERATOR)
    page = plan_page(client, "as_of=2001-01-01 10:00")
    assert "Rewind has no record of web" in page
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    page = plan_page(client, "as_of=2001-01-01 10:00")
    assert "2001-01-01 10:00:00 UTC is before Rewind" in page
    assert "cannot read &#39;yesterday-ish&#39; as a time" in plan_page(client, "as_of=yesterday-ish")


def test_restore_to_a_checkpoint_and_before_a_job(flag_app, flagdb, as_role):
    from app.checkpoints import captures
    from app.checkpoints import store as checkpoints
    from app.jobs.engine import current_targets
    from app.jobs.models import Job

    client = as_role(Role.OPERATOR)
    with flag_app.app_context():
        taken = captures.take_all(current_targets().open("web"))
        assert taken["flags"]["states"] == {"checkout_v2": True, "dark_mode": False, "search_beta": True}
        assert captures.describe("flags", taken["flags"]) == "3 flags, 2 on"
        checkpoint = checkpoints.record("web", None, "before a drill", taken).id
    flagdb.outside_change("dark_mode", True, utcnow())
    flagdb.add("outsider", True)
    page = plan_page(client, f"checkpoint={checkpoint}")
    assert f"as of checkpoint #{checkpoint}" in page and "<code>outsider</code>" in page
    post(client, "/targets/web/flags/restore", {"checkpoint": str(checkpoint), **confirm_of(page)})
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "outsider": True, "search_beta": True}
    # QA: a job that never existed was said to have "not run on web"
    assert "there is no job #999" in plan_page(client, "job=999")
    with flag_app.app_context():
        elsewhere = Job(runbook="verify", target="prod", mutates=False, actor_name="operator", state="succeeded")
        db.session.add(elsewhere)
        db.session.commit()
        elsewhere = elsewhere.id
    assert f"job #{elsewhere} ran on prod, not on web" in plan_page(client, f"job={elsewhere}")
    huge = 2**70  # past what the ops database holds: no such row, not an OverflowError (a 500)
    assert f"there is no job #{huge}" in plan_page(client, f"job={huge}")
    assert f"there is no checkpoint #{huge}" in plan_page(client, f"checkpoint={huge}")


def test_the_plan_s_heading_shows_a_time_as_every_time_is_shown_and_a_checkpoint_by_its_number(flag_app, as_role):
    from app.checkpoints import captures
    from app.checkpoints import store as checkpoints
    from app.jobs.engine import current_targets

    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    moment = utcnow().replace(microsecond=0)
    heading = re.search(r"<h2>Restore flags as of (.*?)</h2>", plan_page(client, f"as_of={moment.isoformat()}"))
    stamp = f"{moment:%Y-%m-%d %H:%M:%S} UTC"  # a <time> the browser shows in its own zone, as beside it
    assert heading[1] == f'<time datetime="{moment:%Y-%m-%dT%H:%M:%S}Z" title="{stamp}">{stamp}</time>'
    with flag_app.app_context():
        checkpoint = checkpoints.record("web", None, "drill", captures.take_all(current_targets().open("web"))).id
    assert f"<h2>Restore flags as of checkpoint #{checkpoint}</h2>" in plan_page(client, f"checkpoint={checkpoint}")


def test_restore_as_of_with_more_than_one_moment_is_refused_naming_them_and_keeps_the_form(flag_app, flagdb, as_role):
    from app.checkpoints import captures
    from app.checkpoints import store as checkpoints
    from app.jobs.engine import current_targets

    client = as_role(Role.OPERATOR)
    with flag_app.app_context():
        taken = captures.take_all(current_targets().open("web"))
        checkpoint = checkpoints.record("web", None, "before a drill", taken).id
    flagdb.outside_change("dark_mode", True, utcnow())
    # a checkpoint still selected (the browser's back button), then a time typed: the checkpoint's plan was shown
    answer = client.get(f"/targets/web/flags/restore?as_of=15+minutes+ago&checkpoint={checkpoint}&job=")
    assert answer.status_code == 303 and answer.headers["Location"] == "/targets/web/flags"
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    said = f"you gave a time (&#39;15 minutes ago&#39;) and checkpoint #{checkpoint}; choose one of them and clear"
    assert f'<span class="field-error" id="restore-error">restore as of: {said}' in page
    assert (
        'name="as_of" data-utc data-offset size="32" placeholder="15 minutes ago, or 2026-05-01 10:00"'
        ' value="15 minutes ago"' in page
    )
    assert re.search(rf'<option value="{checkpoint}" data-utc-time="[^"]+Z" selected>', page)
    assert "Restore flags as of" not in page
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert "restore-error" not in page and 'value="15 minutes ago"' not in page  # shown once, not on every visit
    page = plan_page(client, f"as_of=2026-01-01&checkpoint={checkpoint}&job=7")
    assert f"a time (&#39;2026-01-01&#39;), checkpoint #{checkpoint} and job #7; choose one" in page
    form = {"as_of": "15 minutes ago", "checkpoint": str(checkpoint), "seen": "{}", "fingerprint": "0" * 64}
    response = post(client, "/targets/web/flags/restore", form, follow_redirects=True)  # a confirm carries one
    assert "choose one of them and clear the others" in response.get_data(as_text=True)
    assert flagdb.states()["dark_mode"] is True, "nothing written"
    [(actor, outcome, details)] = audit_rows(flag_app, "flags.restore")
    assert (actor, outcome) == ("operator", "denied") and "choose one" in details["error"]


def test_restore_as_of_with_none_of_the_moments_asks_for_one(flag_app, as_role):
    """It said "cannot read '' as a time", as if a time had been typed wrong."""
    page = plan_page(as_role(Role.OPERATOR), "as_of=&checkpoint=&job=")
    assert "as of: choose a time, a checkpoint or a job" in page and "cannot read" not in page


def test_the_first_look_at_the_flags_is_a_record_to_restore_to(flag_app, flagdb, as_role):
    from app.checkpoints.models import Checkpoint

    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")
    client.get("/targets/web/flags")
    with flag_app.app_context():
        [baseline] = db.session.scalars(select(Checkpoint).filter_by(target="web")).all()
        assert baseline.reason == "flags first seen"
        assert baseline.captures["flags"]["states"] == {"checkout_v2": True, "dark_mode": False, "search_beta": True}
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off", "reason": "drill"})
    page = plan_page(client, f"as_of={moment}")
    post(client, "/targets/web/flags/restore", {"as_of": moment, **confirm_of(page), "reason": "drill over"})
    assert flagdb.states()["dark_mode"] is False


def test_a_flag_rewind_never_changed_shows_changed_outside_after_the_baseline(flag_app, flagdb, as_role):
    client = as_role(Role.VIEWER)
    assert "changed outside Rewind" not in client.get("/targets/web/flags").get_data(as_text=True)  # the baseline
    flagdb.outside_change("search_beta", True, utcnow() + timedelta(seconds=5))  # a newer stamp
    flagdb.execute("UPDATE feature_flags SET enabled = %s WHERE name = 'dark_mode'", (True,))  # no stamp at all
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert page.count("changed outside Rewind") == 2
    row = page[page.index('id="flag-checkout_v2"') :]
    assert "changed outside Rewind" not in row[: row.index("</tr>")]


def test_restore_before_a_job(flag_app, flagdb, as_role):
    from app.jobs.models import Job

    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})  # on, before the job
    with flag_app.app_context():
        job = Job(runbook="deploy", target="web", mutates=True, actor_name="operator")
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on"})  # off, during the job
    post(client, "/targets/web/flags/search_beta/toggle", {"seen": "on"})
    page = plan_page(client, f"job={job_id}")
    assert f"as of before job #{job_id}" in page and "2 flag(s) change" in page
    post(client, "/targets/web/flags/restore", {"job": str(job_id), **confirm_of(page)})
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": True, "search_beta": True}


def test_the_target_page_and_dashboard_card_say_how_many_flags_are_on_and_the_timeline_lists_changes(
    flag_app, flagdb, as_role
):
    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off", "reason": "try it"}, headers=HTMX)
    line = "3 of 3 on; changed in the last day: <code>dark_mode</code>"
    assert line in client.get("/targets/web").get_data(as_text=True)
    assert line in client.get("/dashboard/cards").get_data(as_text=True)
    timeline = client.get("/targets/web/timeline?kind=flags").get_data(as_text=True)
    assert "flags.toggle" in timeline or "dark_mode" in timeline
    assert client.get("/targets/web/timeline?kind=nonsense").status_code == 400


def test_the_card_shows_each_recently_changed_flag_name_as_code_so_an_odd_one_reads_as_a_name(
    flag_app, flagdb, as_role
):
    """It read "changed in the last day: .., 100% on, dark_mode and 1 more": a name ran into the sentence."""
    for name in ("..", "100% on", "<b>x</b>"):
        flagdb.add(name, True, at=utcnow())
    flagdb.outside_change("dark_mode", True, utcnow())
    card = as_role(Role.VIEWER).get("/dashboard/cards").get_data(as_text=True)
    names = "<code>..</code>, <code>100% on</code>, <code>&lt;b&gt;x&lt;/b&gt;</code>"
    assert f"6 of 6 on; changed in the last day: {names} and 1 more" in card, card


def test_a_long_flag_name_wraps_after_its_underscores_and_dots_and_keeps_its_words(flag_app, flagdb, as_role):
    """The Flag column broke "legacy_export" anywhere ("legacy_expor|t"); the page now offers <wbr> where it reads."""
    flagdb.add("legacy_export.v2", False)
    page = as_role(Role.OPERATOR).get("/targets/web/flags").get_data(as_text=True)
    assert "<code>legacy_<wbr>export.<wbr>v2</code>" in page
    assert 'value="legacy_export.v2"' in page  # the kill switch's box and the row's id keep the name whole


def test_a_refused_toggle_row_tells_an_outside_change_by_the_newest_checkpoint(flag_app, flagdb, as_role):
    """The row a toggle answers with reads the newest checkpoint's states (kept per process): a newer checkpoint
    replaces an older one at once."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint: dark_mode off
    flagdb.execute("UPDATE feature_flags SET enabled = %s WHERE name = 'dark_mode'", (True,))  # no stamp at all
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 409 and "changed outside Rewind" in response.get_data(as_text=True)
    with flag_app.app_context():
        from app.checkpoints import store as checkpoints

        checkpoints.record("web", None, "a later checkpoint", {"flags": {"states": flagdb.states()}})
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 409 and "changed outside Rewind" not in response.get_data(as_text=True)


def test_pages_for_a_signed_in_person_are_not_stored_even_after_a_write(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    assert client.get("/targets/web/flags").headers.get("Cache-Control") == "no-store"
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 200 and response.headers.get("Cache-Control") == "no-store"
    assert "Cache-Control" not in flag_app.test_client().get("/login").headers


def test_a_toggle_whose_commit_fails_after_its_audit_row_leaves_only_the_refusal(app, as_role, tmp_path, pg_server):
    """The audit row is written before the flag's commit; a commit the database refuses takes it back."""
    from app.audit import store as audit_store
    from tests.flags.conftest import make_flag_db

    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    flagdb.add("dark_mode", False, "Dark colours")
    refuse_at_commit(flagdb, "UPDATE")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 503
    assert "nothing was written" in response.get_data(as_text=True)
    assert flagdb.states()["dark_mode"] is False
    [(actor, outcome, details)] = audit_rows(app, "flags.toggle")
    assert (actor, outcome) == ("operator", "failed")
    assert "the application refuses this change" in details["error"] and "changes" not in details
    with app.app_context():
        assert audit_store.verify().intact


def test_the_last_change_shown_skips_a_newer_audit_row_that_changed_nothing(app, flag_app, flagdb, as_role, users):
    """A shell `set` to the state a flag already has is audited (ok, no changes) with the flag's name in it: the
    newest row naming the flag is then not its last change, and the page must look past it."""
    client = as_role(Role.OPERATOR)
    assert post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX).status_code == 200
    again = app.test_cli_runner().invoke(args=["rewind", "flags", "set", "web", "dark_mode", "on", "--as", "operator"])
    assert again.exit_code == 0, again.output
    newest = audit_rows(flag_app, "flags.toggle")[-1][2]
    assert newest["flag"] == "dark_mode" and newest["changes"] == []
    flagdb.outside_change("dark_mode", False, datetime(2026, 4, 1))
    stale = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on"}, headers=HTMX)
    assert stale.status_code == 409
    row = stale.get_data(as_text=True)
    assert "toggled by operator" in row and "off → on" in row


def test_a_protected_target_asks_for_a_reason_to_create_a_flag(flag_app, flagdb, as_role):
    admin = as_role(Role.ADMIN)
    assert 'id="new-reason" name="reason" required' in admin.get("/targets/prod/flags").get_data(as_text=True)
    assert 'id="new-reason" name="reason" required' not in admin.get("/targets/web/flags").get_data(as_text=True)
    form = {"flag": "fresh", "enabled": "on", "reason": " "}
    page = post(admin, "/targets/prod/flags/new", form, follow_redirects=True).get_data(as_text=True)
    assert "creating a flag on prod needs a reason" in page
    assert "fresh" not in flagdb.states()
    post(admin, "/targets/prod/flags/new", {**form, "reason": "launch"})
    assert flagdb.states()["fresh"] is True
    rows = audit_rows(flag_app, "flags.create")
    assert [(outcome, details["reason"]) for _, outcome, details in rows] == [("denied", " "), ("ok", "launch")]
    assert "needs a reason" in rows[0][2]["error"] and "changes" not in rows[0][2]


@both_databases  # Rewind's own ops database, too
@pytest.mark.parametrize("write", ["create", "delete"])
def test_a_create_or_delete_whose_commit_fails_after_its_audit_row_leaves_only_the_refusal(
    app, as_role, tmp_path, pg_server, write
):
    """Their audit rows are written before the flags table's commit, as a toggle's: a commit refused takes it back."""
    from app.audit import store as audit_store
    from tests.flags.conftest import make_flag_db

    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    flagdb.add("dark_mode", False, "Dark colours")
    refuse_at_commit(flagdb, "INSERT OR DELETE")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    admin = as_role(Role.ADMIN)
    if write == "create":
        response = post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"}, follow_redirects=True)
    else:
        response = post(admin, "/targets/web/flags/dark_mode/delete", {"seen": "off"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "the application refuses this change" in page and "nothing was written" in page
    assert flagdb.states() == {"dark_mode": False}
    [(actor, outcome, details)] = audit_rows(app, f"flags.{write}")
    assert (actor, outcome) == ("admin", "failed") and "changes" not in details
    with app.app_context():
        assert audit_store.verify().intact


# The application stamps updated_at itself, by its database's clock (here a minute ahead of Rewind's host).
STAMP_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER stamp_insert AFTER INSERT ON feature_flags BEGIN UPDATE feature_flags "
        "SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 minute') WHERE name = NEW.name; END",
        "CREATE TRIGGER stamp_update AFTER UPDATE OF enabled ON feature_flags BEGIN UPDATE feature_flags "
        "SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 minute') WHERE name = NEW.name; END",
    ],
    "postgresql": [
        "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.updated_at := (clock_timestamp() AT TIME ZONE 'UTC') + interval '1 minute'; RETURN NEW; END $$",
        "CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON feature_flags FOR EACH ROW EXECUTE FUNCTION stamp()",
    ],
}


def test_rewind_audits_the_updated_at_a_trigger_stored_so_its_own_writes_are_not_outside_changes(
    flag_app, flagdb, as_role
):
    for statement in STAMP_TRIGGERS[flagdb.kind]:
        flagdb.execute(statement)
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    client.get("/targets/web/flags")  # the baseline checkpoint
    row = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX).get_data(as_text=True)
    assert "dark_mode is now on." in row and "changed outside Rewind" not in row
    [(_, _, toggled)] = audit_rows(flag_app, "flags.toggle")
    stored = flagdb.table().get("dark_mode").updated_at
    assert datetime.fromisoformat(toggled["written_at"]) == stored > utcnow()  # the trigger's, not Rewind's
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/kill", {"flag": ["checkout_v2"], "reason": "errors"})
    page = plan_page(client, f"as_of={moment}")
    post(client, "/targets/web/flags/restore", {"as_of": moment, **confirm_of(page), "reason": "back"})
    post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"})
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": True, "fresh": True, "search_beta": True}
    [(_, _, restored)] = audit_rows(flag_app, "flags.restore")
    assert datetime.fromisoformat(restored["written_at"]) == flagdb.table().get("checkout_v2").updated_at
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert "changed outside Rewind" not in page
    flagdb.outside_change("search_beta", False, utcnow())  # the application's own change still shows
    assert client.get("/targets/web/flags").get_data(as_text=True).count("changed outside Rewind") == 1


def test_a_plan_with_nothing_to_restore_offers_no_restore_button(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline record
    moment = utcnow().isoformat()
    page = plan_page(client, f"as_of={moment}")
    assert "No flag state differs." in page and "nothing to restore" in page
    assert "Restore 0 flag(s)" not in page and "flags/restore" not in page.split("Restore flags as of")[1]
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off", "reason": "drill"})
    assert "Restore 1 flag(s)</button>" in plan_page(client, f"as_of={moment}")


def _form(row: str, button: str) -> tuple[str, dict[str, str]]:
    """The address and hidden fields of the row's form whose button starts with `button`, as a browser sends them."""
    for form in re.findall(r"<form .*?</form>", row, re.S):
        if re.search(rf"<button[^>]*>{button}", form):
            action = html.unescape(re.search(r'action="([^"]+)"', form).group(1))
            fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
            return action, {k: html.unescape(v) for k, v in fields if k != "csrf_token"}
    raise AssertionError(f"no {button} form in {row}")


def test_a_flag_named_with_a_slash_a_space_dots_or_accents_is_toggled_deleted_and_shown_from_its_own_links(
    flag_app, flagdb, as_role
):
    """Rewind refuses to create '.' or '..', but an application may write them; in a form's path a browser dropped
    them (and 'a/./b' became 'a/b'): the name travels as a form field instead."""
    names = ["checkout/eu", "Dark Mode.v2", "café_ünïcode", ".", "..", "a/./b", "a/../b", "100% on", "line\r\nbreak"]
    for name in names:
        flagdb.add(name, False, "odd name")
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    page = client.get("/targets/web/flags").get_data(as_text=True)
    for name in names:
        row = page[page.index(f'id="flag-{dom_id(name)}"') :].split("</tr>", 1)[0]
        action, fields = _form(row, "Turn on")
        assert action == "/targets/web/flags/toggle" and fields == {"flag": quote(name), "seen": "off"}
        response = post(client, action, fields, headers=HTMX)
        assert response.status_code == 200 and f"{name} is now on." in response.get_data(as_text=True)
        history = html.unescape(re.search(r'href="(/targets/web/flags/history\?flag=[^"]+)"', row).group(1))
        assert client.get(history).status_code == 200
    assert {n: on for n, on in flagdb.states().items() if n in names} == dict.fromkeys(names, True)
    protected = admin.get("/targets/prod/flags").get_data(as_text=True)
    ids = re.findall(r'\bid="([^"]*)"', protected)
    assert not [i for i in ids if re.search(r"\s", i)] and len(ids) == len(set(ids))  # ids with spaces matched no label
    assert set(re.findall(r'<label class="sr-only" for="([^"]+)"', protected)) <= set(ids)
    assert 'for="reason-Dark_Mode_v2-' in protected
    page = admin.get("/targets/web/flags").get_data(as_text=True)
    for name in ("..", "checkout/eu"):
        row = page[page.index(f'id="flag-{dom_id(name)}"') :].split("</tr>", 1)[0]
        action, fields = _form(row, "Delete")
        assert action == "/targets/web/flags/delete"
        response = post(admin, action, fields, follow_redirects=True)
        assert f"Flag {name} deleted" in response.get_data(as_text=True)
        assert name not in flagdb.states()
    # a page served before the name moved into the form still reaches the flag by its address
    response = post(admin, "/targets/web/flags/a/./b/delete", {"seen": "on"}, follow_redirects=True)
    assert "Flag a/./b deleted" in response.get_data(as_text=True) and "a/./b" not in flagdb.states()


@pytest.mark.parametrize("action", ["toggle", "delete"])
def test_a_toggle_or_delete_that_names_no_flag_is_a_400_that_says_so(flag_app, flagdb, as_role, action):
    before = flagdb.states()
    response = post(as_role(Role.ADMIN), f"/targets/web/flags/{action}", {"seen": "on", "flag": ""})
    assert response.status_code == 400
    assert "Which flag? The form named none" in response.get_data(as_text=True)
    assert flagdb.states() == before


def test_a_flag_whose_state_is_null_is_named_and_the_others_stay_usable(flag_app, flagdb, as_role):
    flagdb.execute("DROP TABLE feature_flags")
    flagdb.execute(  # the application's table lets enabled be NULL, and one row holds it
        "CREATE TABLE feature_flags (name VARCHAR(80) PRIMARY KEY, enabled BOOLEAN, description TEXT, "
        "updated_at TIMESTAMP, team TEXT)"
    )
    flagdb.execute("INSERT INTO feature_flags (name, enabled) VALUES ('checkout_v2', TRUE), ('dark_mode', FALSE)")
    flagdb.execute("INSERT INTO feature_flags (name, enabled) VALUES ('half_set', NULL)")
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/web/flags").get_data(as_text=True)
    assert "Flags unavailable" not in page  # one NULL row used to hide every flag, and the kill switch
    assert 'id="flag-checkout_v2"' in page and 'id="flag-dark_mode"' in page and 'id="flag-half_set"' not in page
    assert re.search(
        r"1 flag\(s\) of web have a state that is neither on nor off.*<code>half_set</code> holds NULL", page, re.S
    )
    assert post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"}).status_code == 303
    response = post(client, "/targets/web/flags/half_set/toggle", {"seen": "off"}, follow_redirects=True)
    assert "flag &#39;half_set&#39; holds NULL in its enabled column" in response.get_data(as_text=True)
    assert flagdb.execute("SELECT name, enabled FROM feature_flags ORDER BY name")[1:] == [
        ("dark_mode", 0 if flagdb.kind == "sqlite" else False),
        ("half_set", None),
    ]
    assert not flagdb.states()["checkout_v2"]


def test_a_toggle_the_table_cannot_take_is_said_above_the_table_and_leaves_the_row(flag_app, flagdb, as_role):
    """The message replaced the flag's row ("closest tr"): a paragraph in the first column, the row and its buttons
    gone, so the retry it asks for needed a reload. It goes to the notice above the table; the row stays as shown."""
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/web/flags").get_data(as_text=True)
    notice = page.index('<div id="flag-notice" data-refusal-note></div>')
    assert notice < page.index('id="flag-rows"')
    flagdb.execute("DROP TABLE feature_flags")  # the application's migration took it away meanwhile
    response = post(client, "/targets/web/flags/toggle", {"flag": "dark_mode", "seen": "off"}, headers=HTMX)
    assert response.status_code == 503
    assert response.headers["HX-Retarget"] == "#flag-notice" and response.headers["HX-Reswap"] == "innerHTML"
    said = response.get_data(as_text=True)
    assert said.startswith('<p class="flash flash-error" role="alert"><strong>Error:</strong> <code>dark_mode</code>: ')
    assert "the flags table feature_flags cannot be read" in said and "<tr" not in said
    assert said.rstrip().endswith("; nothing was changed</p>")  # said once, where the reason does not say it


def test_a_toggle_of_a_flag_deleted_since_the_page_was_drawn_takes_its_row_and_buttons_away(flag_app, flagdb, as_role):
    """Review: the row stayed with a live "Turn on", the notice said "check the name on the Flags page" while that
    page still listed it, and every retry failed the same way."""
    client = as_role(Role.OPERATOR)
    assert 'id="flag-dark_mode"' in client.get("/targets/web/flags").get_data(as_text=True)
    flagdb.execute("DELETE FROM feature_flags WHERE name = 'dark_mode'")  # another admin, or the app itself
    response = post(client, "/targets/web/flags/toggle", {"flag": "dark_mode", "seen": "off"}, headers=HTMX)
    assert response.status_code == 404 and "HX-Retarget" not in response.headers  # in place of its row
    row = response.get_data(as_text=True)
    assert row.startswith('<tr id="flag-dark_mode" class="flag-row">') and "<button" not in row
    assert "There is no flag &#39;dark_mode&#39; in feature_flags: nothing was changed. It may have been deleted" in row


def test_a_table_held_by_a_long_transaction_is_said_to_be_locked_and_nothing_is_written(
    flag_app, flagdb, as_role, monkeypatch
):
    monkeypatch.setattr(flags_adapter, "LOCK_TIMEOUT_S", 1)  # the toggle and the CLI wait this long each
    client = as_role(Role.OPERATOR)
    token = csrf_token(client)  # before the lock
    holder = flagdb.connect()
    if flagdb.kind == "sqlite":
        holder.execute("BEGIN EXCLUSIVE")
    else:
        holder.autocommit = False
        holder.execute("LOCK TABLE feature_flags IN ACCESS EXCLUSIVE MODE")  # what a running migration holds
    try:
        page = client.get("/targets/web/flags").get_data(as_text=True)
        toggle = client.post(
            "/targets/web/flags/dark_mode/toggle", data={"seen": "off", "csrf_token": token}, headers=HTMX
        )
        listed = flag_app.test_cli_runner().invoke(args=["rewind", "flags", "list", "web"])
    finally:
        holder.rollback() if flagdb.kind == "postgresql" else holder.execute("ROLLBACK")
        holder.close()
    locked = "the flags table feature_flags is locked by another transaction of the application&#39;s database"
    assert locked in page and "Rewind never creates it" not in page  # it said to create the table
    assert toggle.status_code == 503 and locked in toggle.get_data(as_text=True)
    assert listed.exit_code == 1 and "is locked by another transaction" in listed.output
    assert flagdb.states()["dark_mode"] is False
    [(_, outcome, details)] = audit_rows(flag_app, "flags.toggle")
    assert outcome == "failed" and "is locked by another transaction" in details["error"]


def test_each_reason_field_of_a_protected_row_says_what_it_is_for(flag_app, flagdb, as_role):
    """Two reason fields side by side (toggle, delete) read the same unless their hints differ."""
    page = as_role(Role.ADMIN).get("/targets/prod/flags").get_data(as_text=True)
    row = re.search(r'<tr id="flag-dark_mode".*?</tr>', page, re.S).group(0)
    assert 'placeholder="why turn on"' in row and 'placeholder="why delete"' in row
    assert 'placeholder="reason"' not in row
    assert '<button type="submit" class="link danger">Delete' in row  # a destructive button looks it
    on = re.search(r'<tr id="flag-checkout_v2".*?</tr>', page, re.S).group(0)
    assert 'placeholder="why turn off"' in on
    assert re.search(r'<div class="table-scroll">\s*<table class="grid flags">', page)  # actions reachable at 800 px
    as_of = re.search(r'<input id="restore-as-of"[^>]*>', page).group(0)
    assert 'size="32"' in as_of  # its example ("15 minutes ago, or 2026-05-01 10:00") shows whole


@pytest.mark.parametrize("ago", ["999999999 days ago", "99999999999999 minutes ago"])
def test_a_moment_too_long_ago_for_a_date_is_a_clear_message_not_a_500(flag_app, flagdb, as_role, ago):
    response = as_role(Role.OPERATOR).get(f"/targets/web/flags/restore?as_of={ago}", follow_redirects=True)
    assert response.status_code == 200
    assert f"as of: {ago} is too long ago" in response.get_data(as_text=True)


def test_the_timeline_says_why_a_flag_change_was_refused_not_the_reason_typed_for_it(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    stale = {"seen": "on", "reason": "checkout errors"}  # dark_mode is off: the person saw an older page
    assert post(client, "/targets/prod/flags/dark_mode/toggle", stale, headers=HTMX).status_code == 409
    assert post(client, "/targets/prod/flags/kill", {"reason": "stop the bleeding"}).status_code == 303
    rows = client.get("/targets/prod/timeline?kind=refusals").get_data(as_text=True).split('<tr id="event-')[1:]
    # in words, not the audit action (QA: "flags.kill refused: …")
    assert "Kill switch refused: no flags chosen: nothing to turn off" in rows[0]
    assert "Turning dark_mode off refused: dark_mode is off now, not on as you saw it" in rows[1]
    viewer = flag_app.test_cli_runner().invoke(
        args=["rewind", "flags", "set", "prod", "dark_mode", "on", "--as", "viewer"]
    )
    assert viewer.exit_code == 6, viewer.output
    rows = client.get("/targets/prod/timeline?kind=refusals").get_data(as_text=True).split('<tr id="event-')[1:]
    assert "Changing flag dark_mode refused: needs the operator role" in rows[0]
    cli = flag_app.test_cli_runner()
    assert cli.invoke(args=["rewind", "flags", "set", "prod", "dark_mode", "maybe", "--as", "operator"]).exit_code
    gone = cli.invoke(args=["rewind", "flags", "restore", "prod", "--checkpoint", "999", "--yes", "--as", "admin"])
    assert gone.exit_code, gone.output
    rows = client.get("/targets/prod/timeline?kind=refusals").get_data(as_text=True).split('<tr id="event-')[1:]
    # review: "maybe" read as "on" (any text is true), and a checkpoint or job as "as of ?"
    assert "Restoring the flags as of checkpoint #999 refused: checkpoint #999 of prod does not exist" in rows[0]
    assert "Changing flag dark_mode refused: state: " in rows[1] and "Turning dark_mode on" not in rows[1]
    assert "flags." not in "".join(row.split("</td>", 2)[1] for row in rows)
    assert "refused: checkout errors" not in rows[1] and "refused: stop the bleeding" not in rows[0]


def test_the_timeline_names_the_flags_each_change_turned_and_why(flag_app, flagdb, as_role):
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off", "reason": "try it"}, headers=HTMX)
    post(client, "/targets/web/flags/kill", {"flag": ["checkout_v2", "search_beta"], "reason": "checkout errors"})
    post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"})
    post(admin, "/targets/web/flags/new", {"flag": "wordy", "description": "x" * 41})  # the table's CHECK says no
    page = plan_page(client, f"as_of={moment}")
    post(client, "/targets/web/flags/restore", {"as_of": moment, **confirm_of(page), "reason": "back"})
    timeline = client.get("/targets/web/timeline?kind=flags").get_data(as_text=True)
    rows = [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", row))) for row in timeline.split('<tr id="ev')]
    said = " | ".join(rows)
    assert "dark_mode turned on — “try it”" in said
    assert "Kill switch: checkout_v2, search_beta turned off — “checkout errors”" in said
    assert "Flag fresh created (on)" in said
    assert "Creating flag wordy failed: " in said
    assert "Flags restored as of " in said and "checkout_v2 on, dark_mode off, search_beta on — “back”" in said
    assert "written_at" not in said and "flags.kill:" not in said


def test_a_plan_whose_only_difference_is_a_deleted_flag_asks_to_tick_it_and_writes_nothing_unticked(
    flag_app, flagdb, as_role
):
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline record
    moment = utcnow().isoformat()
    post(as_role(Role.ADMIN), "/targets/web/flags/search_beta/delete", {"seen": "on"})
    page = plan_page(client, f"as_of={moment}")
    assert "Recreate the ticked flags</button>" in page and "Restore 0 flag(s)" not in page
    form = {"as_of": moment, **confirm_of(page), "reason": "back"}
    said = post(client, "/targets/web/flags/restore", form, follow_redirects=True).get_data(as_text=True)
    assert "nothing to write: tick the deleted flags to recreate" in said and "0 change(s) written" not in said
    assert [o for _, o, _ in audit_rows(flag_app, "flags.restore")] == ["denied"]
    said = post(client, "/targets/web/flags/restore", {**form, "recreate": "search_beta"}, follow_redirects=True)
    assert "1 change(s) written" in said.get_data(as_text=True) and flagdb.states()["search_beta"] is True


def test_a_toggle_that_breaks_the_app_shows_its_health_where_it_was_made(app, flagdb, as_role, tmp_path):
    """The app answers 500 while dark_mode is on, as a flag that breaks it does: the row that turned it on asks
    for the app's health a moment later, and the answer says so and what to do."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            broken = flagdb.states()["dark_mode"]
            body = b'{"status": "broken"}' if broken else b'{"status": "healthy"}'
            self.send_response(500 if broken else 200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        health = f'\n[targets.web.health]\nurl = "http://127.0.0.1:{server.server_port}/health"\n'
        health += 'json = { status = "healthy" }\n'
        toml = targets_toml(flagdb.url, tmp_path)
        write_targets_file(app, toml.replace("\n[targets.prod]", health + "\n[targets.prod]", 1))
        client = as_role(Role.OPERATOR)
        row = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX).get_data(as_text=True)
        assert 'hx-get="/targets/web/health-now" hx-trigger="load delay:1s"' in row
        said = html.unescape(client.get("/targets/web/health-now").get_data(as_text=True))
        assert (
            '<span class="badge badge-bad">not healthy</span> one probe: web: status 500: {"status": "broken"}' in said
        )
        assert "if the change just made is the cause, turn it back" in said

        row = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on"}, headers=HTMX).get_data(as_text=True)
        assert "health-now" in row
        assert '<span class="badge badge-ok">healthy</span> one probe: web answers: ' in client.get(
            "/targets/web/health-now"
        ).get_data(as_text=True)
        assert "health-now" not in as_role(Role.VIEWER).get("/targets/web/flags").get_data(as_text=True)
    finally:
        server.shutdown()


def test_flag_changes_are_refused_while_a_job_replaces_the_database_and_allowed_once_it_ends(
    flag_app, flagdb, as_role, runner
):
    """A restore fills its copy while live serves: a flag written to live meanwhile would stay behind in the
    database its swap replaces, and come back as the backup has it. Refused, in words, at every door."""
    from app.audit.store import Actor
    from app.jobs import runbook as runbooks
    from app.jobs import service
    from app.jobs.models import Job
    from tests.conftest import wait_for
    from tests.support.jobs import finished

    with flag_app.app_context():
        book = runbooks.get("test.replace")
        job_id = service.enqueue(book, "web", book.parse_params({"seconds": "60"}, "web"), Actor(None, "admin")).id
    with flag_app.app_context():
        wait_for(lambda: db.session.get(Job, job_id).state == "running" or db.session.commit(), timeout=30)
    client = as_role(Role.OPERATOR)
    said = f"job #{job_id} (Sleep as a restore would fill) is replacing web's database"
    tab = client.get("/targets/web/flags").get_data(as_text=True)
    assert 'id="busy-notice"' in tab and "Flag changes are refused until it ends" in tab
    toggle = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert toggle.status_code == 409 and said in html.unescape(toggle.get_data(as_text=True))
    kill = post(client, "/targets/web/flags/kill", {"flag": ["checkout_v2"], "reason": "errors"}, follow_redirects=True)
    assert said in html.unescape(kill.get_data(as_text=True))
    cli = flag_app.test_cli_runner().invoke(
        args=["rewind", "flags", "set", "web", "search_beta", "off", "--as", "admin"]
    )
    assert cli.exit_code == ExitStatus.REFUSED and said in cli.output, cli.output  # refused (6), not Rewind's error
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": True}  # nothing written
    refusals = audit_rows(flag_app, "flags.toggle") + audit_rows(flag_app, "flags.kill")
    assert [o for _, o, _ in refusals] == ["denied"] * 3 and all(said in d["error"] for _, _, d in refusals)

    with flag_app.app_context():
        service.cancel(db.session.get(Job, job_id), Actor(None, "admin"))
    finished(flag_app, job_id)
    assert "busy-notice" not in client.get("/targets/web/flags").get_data(as_text=True)
    toggle = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert toggle.status_code == 200 and flagdb.states()["dark_mode"] is True


def _older_link(page: str, rel: str = "next") -> str | None:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def test_a_flag_s_history_is_paged_newest_first_with_nothing_repeated_or_lost(flag_app, flagdb, as_role, monkeypatch):
    from app.flags import history

    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    client = as_role(Role.OPERATOR)
    state = "off"
    for n in range(5):
        post(client, "/targets/web/flags/toggle", {"flag": "dark_mode", "seen": state, "reason": f"change {n}"})
        state = "on" if state == "off" else "off"
    post(client, "/targets/web/flags/toggle", {"flag": "search_beta", "seen": "on", "reason": "another flag"})
    seen, url, pages = [], "/targets/web/flags/history?flag=dark_mode", 0
    while url:
        page = client.get(url).get_data(as_text=True)
        reasons = re.findall(r"<td>(change \d|another flag)</td>", page)
        assert len(reasons) <= 2, page
        seen += reasons
        url, pages = _older_link(page), pages + 1
    assert pages == 3
    assert seen == [f"change {n}" for n in reversed(range(5))]  # newest first, each once, no other flag's
    assert "« Newest" in page
    empty = client.get("/targets/web/flags/history?flag=dark_mode&before=1")
    assert empty.status_code == 200 and "No older changes" in empty.get_data(as_text=True)  # not a 404: it exists
    assert client.get("/targets/web/flags/history?flag=dark_mode&before=x").status_code == 400


def test_the_tab_pages_by_name_past_a_page_full_keeping_the_search(flag_app, flagdb, as_role, monkeypatch):
    from app.flags import views

    monkeypatch.setattr(views, "SHOWN", 2)
    for name in ("zeta_web", "alpha_web", "mid_web", "beta_other"):
        flagdb.add(name, False, "paged")
    client = as_role(Role.VIEWER)

    def walk(url: str) -> tuple[list[str], list[str]]:
        names, links = [], []
        while url:
            page = client.get(url).get_data(as_text=True)
            shown = re.findall(r'<tr id="flag-([a-z0-9_]+)"', page)
            assert 0 < len(shown) <= 2, page
            names += shown
            url = _older_link(page)
            links += [url] if url else []
        return names, links

    names, links = walk("/targets/web/flags")
    everything = sorted(["checkout_v2", "dark_mode", "search_beta", "zeta_web", "alpha_web", "mid_web", "beta_other"])
    assert names == everything  # each page starts after the one before ended: nothing repeated or lost
    assert len(links) == 3 and parse_qs(urlsplit(links[0]).query) == {"after": ["beta_other"]}
    names, links = walk("/targets/web/flags?q=web")  # by name or description: the three *_web flags
    assert names == ["alpha_web", "mid_web", "zeta_web"]
    assert all(parse_qs(urlsplit(link).query)["q"] == ["web"] for link in links)
    page = client.get("/targets/web/flags?q=web&after=mid_web").get_data(as_text=True)
    # QA: the last page said "search to narrow, or page on below" with nothing below to page on to
    assert "3 of 7 flag(s); showing 1 after “mid_web”, the last by name." in page and "« First" in page
    first = client.get("/targets/web/flags?q=web").get_data(as_text=True)
    assert "3 of 7 flag(s); showing 2, the first by name: search to narrow, or page on below." in first
    gone = client.get("/targets/web/flags?after=zzz").get_data(as_text=True)
    assert "comes after “zzz”" in gone and "back to the first" in gone


def test_flags_are_listed_as_a_person_reads_a_list_whatever_their_case(flag_app, flagdb, as_role, monkeypatch):
    """QA: "Upper" came before "beta_search" (capitals first, as bytes sort); paging follows the same order."""
    from app.flags import views

    for name in ("Upper", "aardvark", "Dark_mode"):
        flagdb.add(name, False, "cased")
    client = as_role(Role.VIEWER)
    page = client.get("/targets/web/flags").get_data(as_text=True)
    shown = re.findall(r'<tr id="flag-([A-Za-z0-9_]+)"', page)
    assert shown == ["aardvark", "checkout_v2", "Dark_mode", "dark_mode", "search_beta", "Upper"], shown
    monkeypatch.setattr(views, "SHOWN", 3)
    first = client.get("/targets/web/flags").get_data(as_text=True)
    assert re.findall(r'<tr id="flag-([A-Za-z0-9_]+)"', first) == ["aardvark", "checkout_v2", "Dark_mode"]
    second = client.get(_older_link(first)).get_data(as_text=True)
    assert re.findall(r'<tr id="flag-([A-Za-z0-9_]+)"', second) == ["dark_mode", "search_beta", "Upper"]


def test_a_restore_queued_between_the_check_and_the_write_rolls_the_flag_change_back(
    flag_app, flagdb, as_role, monkeypatch
):
    """Review: the check before a flag write read the jobs without a lock, so a restore queued in between let the
    write land in live, audited "ok", then be lost at the swap. The write looks again once its audit row holds the
    chain's head, the lock a job is queued under: here the restore is queued right after the first look."""
    from app.audit.store import Actor
    from app.flags import store
    from app.jobs import runbook as runbooks
    from app.jobs import service
    from app.jobs.models import Job

    first_look = store.writable
    queued = []

    def then_a_restore_is_queued(target):
        table = first_look(target)
        book = runbooks.get("test.replace")
        params = book.parse_params({"seconds": "60"}, "web")
        queued.append(service.enqueue(book, "web", params, Actor(None, "admin")).id)
        return table

    monkeypatch.setattr(store, "writable", then_a_restore_is_queued)
    toggle = post(as_role(Role.OPERATOR), "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert toggle.status_code == 409, toggle.get_data(as_text=True)
    assert f"job #{queued[0]} (Sleep as a restore would fill) is replacing web's database" in html.unescape(
        toggle.get_data(as_text=True)
    )
    assert flagdb.states()["dark_mode"] is False  # the write was rolled back with its audit row
    assert [o for _, o, _ in audit_rows(flag_app, "flags.toggle")] == ["denied"]
    with flag_app.app_context():
        job = db.session.get(Job, queued[0])
        job.state = "cancelled"  # never run: no runner in this test
        db.session.commit()
