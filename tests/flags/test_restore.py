"""Restore as of a moment through the real app: each flag's state then is what Rewind can prove."""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta

from sqlalchemy import func, select

from app.auth.roles import Role
from app.clock import utcnow
from app.extensions import db
from app.flags import history
from tests.conftest import wait_for
from tests.flags.conftest import audit_rows, confirm_of, plan_page, seen_of
from tests.support.apps import post

UNKNOWN = "Changed outside Rewind — state then unknown"


def restore(client, moment: str, page: str, **form):
    return post(client, "/targets/web/flags/restore", {"as_of": moment, **confirm_of(page), **form})


def test_an_outside_change_stamped_before_the_moment_is_how_the_flag_was_then(flag_app, flagdb, as_role):
    """Rewind turns dark_mode on, the application turns it off (stamped), then the moment: it was off then."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    flagdb.outside_change("dark_mode", False, utcnow())  # e.g. the application's own circuit breaker
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})  # the change to undo
    page = plan_page(client, f"as_of={moment}")
    assert json.loads(seen_of(page)) == {"checkout_v2": False} and UNKNOWN not in page
    restore(client, moment, page, reason="undo")
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": True}


def test_the_first_rewind_change_after_the_moment_says_how_the_flag_was_then(flag_app, flagdb, as_role):
    """A checkpoint has dark_mode off, the application turns it on (stamped), the moment, then Rewind turns it off:
    its audit row (old on, the row stamped before the moment) is newer evidence than the checkpoint."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint: dark_mode off
    flagdb.outside_change("dark_mode", True, utcnow())
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on", "reason": "incident"})
    page = plan_page(client, f"as_of={moment}")
    assert json.loads(seen_of(page)) == {"dark_mode": False}
    restore(client, moment, page)
    assert flagdb.states()["dark_mode"] is True


def test_each_write_audits_the_stamp_it_found_on_the_row(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    flagdb.outside_change("dark_mode", False, datetime(2026, 3, 4, 5, 6, 7, 89))
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    post(client, "/targets/web/flags/kill", {"flag": ["checkout_v2", "dark_mode"], "reason": "errors"})
    [(_, _, toggled)] = audit_rows(flag_app, "flags.toggle")
    [(_, _, killed)] = audit_rows(flag_app, "flags.kill")
    assert toggled["old_at"] == {"dark_mode": "2026-03-04T05:06:07.000089"}
    assert killed["old_at"] == {"checkout_v2": "2026-01-01T00:00:00.000000", "dark_mode": toggled["written_at"]}


def test_a_flag_changed_outside_after_the_moment_is_listed_as_unknown_and_not_written(flag_app, flagdb, as_role):
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint
    moment = utcnow()
    flagdb.outside_change("dark_mode", True, moment + timedelta(seconds=1))  # after the moment: off or on then?
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert UNKNOWN in page and "<code>dark_mode</code>: on now, last changed" in page
    assert json.loads(seen_of(page)) == {"checkout_v2": False}  # dark_mode is not part of the write
    restore(client, moment.isoformat(), page, reason="undo")
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": True, "search_beta": True}
    [(_, outcome, details)] = audit_rows(flag_app, "flags.restore")
    assert outcome == "ok" and details["unknown"] == ["dark_mode"]
    assert details["changes"] == [{"flag": "checkout_v2", "old": False, "new": True}]


def test_a_rewind_change_that_found_the_row_stamped_after_the_moment_proves_nothing_of_then(flag_app, flagdb, as_role):
    """The application turned dark_mode on after the moment, then Rewind turned it off: its `old` (on) is how the
    flag was just before Rewind's write, not at the moment."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")
    moment = utcnow()
    flagdb.outside_change("dark_mode", True, moment + timedelta(seconds=1))
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on"})
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert UNKNOWN in page and "<code>dark_mode</code>: off now" in page and "No flag state differs." in page


def test_a_change_made_without_a_stamp_leaves_the_state_then_unknown(flag_app, flagdb, as_role):
    """The row still carries a stamp older than the baseline, yet is not as the baseline recorded it."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline: dark_mode off
    moment = utcnow().isoformat()
    flagdb.execute("UPDATE feature_flags SET enabled = %s WHERE name = 'dark_mode'", (True,))  # no stamp
    page = plan_page(client, f"as_of={moment}")
    assert UNKNOWN in page and "<code>dark_mode</code>: on now" in page
    assert json.loads(seen_of(page)) == {} and "3 flag(s)" not in page
    assert "2 flag(s) are already as they were" in page


def test_a_deleted_flag_is_recreated_with_its_description_and_tag(flag_app, flagdb, as_role):
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    client.get("/targets/web/flags")
    moment = utcnow().isoformat()
    post(admin, "/targets/web/flags/search_beta/delete", {"seen": "on"})
    [(_, _, deleted)] = audit_rows(flag_app, "flags.delete")
    assert deleted["tag"] == "web"
    page = plan_page(client, f"as_of={moment}")
    assert 'name="recreate" value="search_beta"' in page
    restore(client, moment, page, recreate="search_beta")
    again = flagdb.table(tag="team").get("search_beta")
    assert (again.enabled, again.description, again.tag) == (True, "The new search", "web")


def test_a_baseline_is_found_among_any_number_of_checkpoints_without_flag_states(flag_app, flagdb, as_role):
    """A target that ran many jobs before its flags table was configured (no flags part), then many whose flags
    capture failed, a few with something like flag states elsewhere: none counts, however many there are."""
    from app.checkpoints import store as checkpoints
    from app.checkpoints.models import Checkpoint

    with flag_app.app_context():
        for i in range(60):
            checkpoints.record("web", None, f"old job {i}", {"code": {"commit": "a" * 40, "branch": "main"}})
    viewer = as_role(Role.VIEWER)
    for _ in range(3):
        assert viewer.get("/targets/web/flags").status_code == 200
    with flag_app.app_context():
        baselines = db.session.scalars(select(Checkpoint).where(Checkpoint.reason == "flags first seen")).all()
        assert [cp.captures["flags"]["states"]["dark_mode"] for cp in baselines] == [False]
        for i in range(60):
            failed = {"flags": {"error": "the flags table cannot be read"}}
            if i % 20 == 0:  # reads like flag states to a text search, and is not
                failed["notes"] = {"flags": {"states": "none kept"}}
            checkpoints.record("web", None, f"later job {i}", failed)
    operator = as_role(Role.OPERATOR)
    assert "— flags first seen</option>" in operator.get("/targets/web/flags").get_data(as_text=True)
    moment = utcnow().isoformat()
    post(operator, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    flagdb.execute("UPDATE feature_flags SET enabled = %s WHERE name = 'search_beta'", (False,))  # no stamp
    page = plan_page(operator, f"as_of={moment}")
    assert json.loads(seen_of(page)) == {"dark_mode": True}
    assert "<code>search_beta</code>: off now" in page  # the baseline (on) is what tells it apart
    with flag_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Checkpoint)) == 121


def test_a_flag_changed_outside_after_the_moment_then_deleted_is_listed_and_not_offered(flag_app, flagdb, as_role):
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    client.get("/targets/web/flags")
    moment = utcnow()
    flagdb.outside_change("dark_mode", True, moment + timedelta(seconds=1))
    post(admin, "/targets/web/flags/dark_mode/delete", {"seen": "on"})
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert "<code>dark_mode</code>: deleted since; state then unknown" in page
    assert 'name="recreate" value="dark_mode"' not in page


def test_a_stamp_in_whole_seconds_is_not_taken_as_before_a_moment_within_that_second(flag_app, flagdb, as_role):
    """A clock that keeps whole seconds stamps a change made just after the moment with the moment's second."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")
    moment = utcnow()
    flagdb.outside_change("dark_mode", True, moment.replace(microsecond=0))
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert UNKNOWN in page and "<code>dark_mode</code>: on now" in page
    later = moment.replace(microsecond=0) + timedelta(seconds=1)
    wait_for(lambda: utcnow() > later)  # a moment in the future is refused
    page = plan_page(client, f"as_of={later.isoformat()}")
    assert json.loads(seen_of(page)) == {} and UNKNOWN not in page  # a whole second on, it was on then


def test_the_first_change_is_found_after_any_number_of_writes_that_changed_nothing(flag_app, flagdb, as_role):
    """A shell `set` to the state a flag already has is audited with no changes: those are no record of the flags."""
    from app.audit.store import Actor
    from app.flags import store
    from app.jobs.engine import current_targets

    with flag_app.app_context():
        target = current_targets().open("web")
        for _ in range(60):
            store.toggle(target, "dark_mode", False, seen=None, actor=Actor.system(), via="cli")
    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})  # Rewind's first record
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    page = plan_page(client, f"as_of={moment}")
    assert json.loads(seen_of(page)) == {"dark_mode": True}
    assert len(audit_rows(flag_app, "flags.toggle")) == 62


def test_a_kill_and_a_restore_of_hundreds_of_flags_are_audited_whole_and_put_back(flag_app, flagdb, as_role):
    """Each audit row is kept under the size past which details are cut: a write of 300 flags takes several rows,
    every change is in one of them, and a restore as of a moment before the kill puts all 300 back."""
    names = [f"bulk_flag_with_a_long_name_{i:04d}" for i in range(300)]
    for name in names:
        flagdb.add(name, True, "one of many")
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint
    moment = utcnow().isoformat()
    assert post(client, "/targets/web/flags/kill", {"flag": names, "reason": "load shedding"}).status_code == 303
    killed = [details for _, outcome, details in audit_rows(flag_app, "flags.kill") if outcome == "ok"]
    assert len(killed) > 1 and [d["part"] for d in killed] == [
        f"{i} of {len(killed)}" for i in range(1, 1 + len(killed))
    ]
    assert not any(d.get("details_cut") for d in killed)
    assert sorted(c["flag"] for d in killed for c in d["changes"]) == names
    assert sorted(name for d in killed for name in d["old_at"]) == names
    assert all(d["reason"] == "load shedding" for d in killed)

    page = plan_page(client, f"as_of={moment}")
    assert UNKNOWN not in page and json.loads(seen_of(page)) == dict.fromkeys(names, False)
    assert restore(client, moment, page, reason="back").status_code == 303
    assert all(flagdb.states()[name] for name in names)
    restored = [details for _, outcome, details in audit_rows(flag_app, "flags.restore") if outcome == "ok"]
    assert len(restored) > 1 and sorted(c["flag"] for d in restored for c in d["changes"]) == names
    with flag_app.app_context():
        assert [event.action for event, _ in history.of_flag("web", "bulk_flag_with_a_long_name_0123").items] == [
            "flags.restore",
            "flags.kill",
        ]


def test_a_moment_before_rewind_first_saw_the_flags_is_planned_from_what_can_be_proven(flag_app, flagdb, as_role):
    """The demo drill on a fresh install: the moment is before the first look at the Flags tab and the toggle.
    Rewind's toggle says how dark_mode was then, the untouched rows' stamps say checkout_v2 has not moved since;
    search_beta, stamped after the moment by the application, cannot be told."""
    moment = utcnow()
    flagdb.outside_change("search_beta", False, moment + timedelta(seconds=1))
    client = as_role(Role.OPERATOR)
    assert client.get("/targets/web/flags").status_code == 200  # Rewind's first record, after the moment
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off", "reason": "drill"})
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert json.loads(seen_of(page)) == {"dark_mode": True}
    assert UNKNOWN in page and "<code>search_beta</code>: off now" in page
    assert "1 flag(s) are already as they were" in page
    assert restore(client, moment.isoformat(), page, reason="drill over").status_code == 303
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": False}
    [(_, outcome, details)] = audit_rows(flag_app, "flags.restore")
    assert outcome == "ok" and details["changes"] == [{"flag": "dark_mode", "old": True, "new": False}]


def test_a_flag_equal_in_the_plan_that_moves_before_the_confirm_refuses_the_whole_restore(flag_app, flagdb, as_role):
    """The plan shows dark_mode as already right; the application turns it on between the page and the click. The
    restore is refused (409) with the plan as it is now, nothing written; confirming that one writes it."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint
    moment = utcnow().isoformat()
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})  # the change to undo
    page = plan_page(client, f"as_of={moment}")
    assert json.loads(seen_of(page)) == {"checkout_v2": False} and "2 flag(s) are already as they were" in page
    flagdb.outside_change("dark_mode", True, utcnow())  # another writer, between showing and confirming
    response = restore(client, moment, page, reason="undo")
    assert response.status_code == 409
    again = response.get_data(as_text=True)
    assert "the flags changed since the plan was shown, so nothing was written" in again
    assert UNKNOWN in again and "<code>dark_mode</code>: on now" in again  # the new plan, to confirm or not
    assert flagdb.states() == {"checkout_v2": False, "dark_mode": True, "search_beta": True}
    [(_, outcome, details)] = audit_rows(flag_app, "flags.restore")
    assert outcome == "denied" and "changed since the plan was shown" in details["error"]
    assert restore(client, moment, again, reason="undo").status_code == 303
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": True, "search_beta": True}


def test_after_a_database_restore_a_time_before_it_is_planned_from_rewinds_records_not_the_rows(
    flag_app, flagdb, as_role
):
    """A restore swapped in a database whose flag rows carry the backup's stamps: dark_mode off, stamped long
    ago. Read as rows, that said 'changed outside Rewind, unknown' for a change Rewind itself made (the swap);
    the moment's state is Rewind's record then (its toggle on), as a checkpoint chosen as the moment says."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint: dark_mode off
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    moment = utcnow()
    swap = _swapped_in_backup(flag_app)  # the restore: its job, and the flags table of the backup it swapped in
    flagdb.outside_change("dark_mode", False, moment - timedelta(hours=3))
    tab = client.get("/targets/web/flags").get_data(as_text=True)
    row = tab[tab.index('id="flag-dark_mode"') :].split("</tr>")[0]
    assert (
        "toggled by operator" in row
        and f'then the database was replaced by <a href="/jobs/{swap}">job #{swap}</a>' in row
    )
    other = tab[tab.index('id="flag-checkout_v2"') :].split("</tr>")[0]
    assert "replaced by" not in other  # never changed through Rewind: no last change to put it after
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert UNKNOWN not in page, page
    assert 'id="swapped-since"' in page and f"job #{swap}</a> put another database in live's place" in page
    assert json.loads(seen_of(page)) == {"dark_mode": False}  # off now, on then
    restore(client, moment.isoformat(), page, reason="back to before the restore")
    assert flagdb.states()["dark_mode"] is True

    # A moment after the swap reads the rows as ever: nothing to say of a replaced database.
    later = plan_page(client, f"as_of={utcnow().isoformat()}")
    assert 'id="swapped-since"' not in later


def test_a_flags_own_page_says_a_database_restore_replaced_it_after_its_last_change(flag_app, flagdb, as_role):
    """QA: the tab's row says so, but the flag's own page showed "Now off" under its last change "off → on" and no
    word of the restore that put the backup's row back: a person asking why it is off read two stories."""
    client = as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint: dark_mode off
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    swap = _swapped_in_backup(flag_app)
    flagdb.outside_change("dark_mode", False, utcnow() - timedelta(hours=3))  # the backup's row
    page = client.get("/targets/web/flags/history?flag=dark_mode").get_data(as_text=True)
    assert "off → on" in page
    said = page[page.index('id="swapped-since"') :].split("</p>")[0]
    assert f'the database was replaced by <a href="/jobs/{swap}">job #{swap}</a>' in said, said
    other = client.get("/targets/web/flags/history?flag=checkout_v2").get_data(as_text=True)
    assert 'id="swapped-since"' not in other  # never changed through Rewind: no last change to put it after
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})  # a change after the swap
    again = client.get("/targets/web/flags/history?flag=dark_mode").get_data(as_text=True)
    assert 'id="swapped-since"' not in again


def _swapped_in_backup(flag_app, kept_as: str = "appdb_before_job") -> int:
    """A restore job that put a backup's database in live's place now: its row, as the job leaves it."""
    from app.jobs.models import Job

    with flag_app.app_context():
        job = Job(runbook="restore_backup", target="web", mutates=True, actor_name="admin", state="succeeded")
        job.started_at = job.swapped_at = job.finished_at = utcnow()
        job.swapped_out = kept_as
        db.session.add(job)
        db.session.commit()
        return job.id


def _section(page: str, title: str) -> str:
    return page[page.index(title) :].split("</ul>")[0] if title in page else ""


CREATED = "Created since — left alone"


def test_flags_rewind_created_after_a_database_swap_were_absent_at_a_moment_before_it(flag_app, flagdb, as_role):
    """QA on staging: a restore swapped the database after the moment; then Rewind created Upper_Flag, Zeta and
    aaa_first (toggled many times, Upper_Flag killed). Rewind's record at the moment (the baseline, and its changes
    up to the moment) has none of them: they were absent then, created since, not 'changed outside Rewind'.
    `returning` was created by Rewind before the moment, is missing from the backup swapped in, and was created
    again after the swap: it existed then (on), as Rewind's record says, so it is not 'created since'."""
    admin, client = as_role(Role.ADMIN), as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint
    assert post(admin, "/targets/web/flags/new", {"flag": "returning", "enabled": "on"}).status_code == 303
    moment = utcnow()
    swap = _swapped_in_backup(flag_app)
    flagdb.execute("DELETE FROM feature_flags WHERE name = %s", ("returning",))  # the backup never had it
    for name, state in (("Upper_Flag", "on"), ("Zeta", "off"), ("aaa_first", "off"), ("returning", "off")):
        assert post(admin, "/targets/web/flags/new", {"flag": name, "enabled": state}).status_code == 303
    for seen in ("off", "on", "off", "on", "off"):
        post(client, "/targets/web/flags/aaa_first/toggle", {"seen": seen})
    post(client, "/targets/web/flags/kill", {"flag": ["Upper_Flag"], "reason": "errors"})

    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert f"job #{swap}</a> put another database in live's place" in page
    assert UNKNOWN not in page, page
    created = _section(page, CREATED)
    assert all(f"<code>{name}</code>" in created for name in ("Upper_Flag", "Zeta", "aaa_first")), page
    assert "returning" not in created
    assert json.loads(seen_of(page)) == {"returning": False}  # off now, on then
    shell = flag_app.test_cli_runner().invoke(
        args=["rewind", "flags", "restore", "web", "--as-of", moment.isoformat(), "--as", "operator"]
    )
    assert shell.exit_code == 0 and "unknown" not in shell.output, shell.output
    assert "  created  aaa_first   created since: left alone" in shell.output.splitlines(), shell.output
    restore(client, moment.isoformat(), page, reason="back to before the restore")
    assert flagdb.states() == {
        "Upper_Flag": False,
        "Zeta": False,
        "aaa_first": True,
        "checkout_v2": True,
        "dark_mode": False,
        "returning": True,
        "search_beta": True,
    }


def test_a_flag_rewind_created_after_a_swap_with_no_record_at_the_moment_is_told_by_rewinds_first_look(
    flag_app, flagdb, as_role
):
    """The moment is before Rewind's first record. `fresh`, which Rewind had never seen when it created it after
    the swap, was absent then as far as Rewind's record goes. `early` was already there when Rewind first looked
    (after the moment, before the swap), then missing from the backup and created again by Rewind: how it was at
    the moment is unknown, and it is said so."""
    admin = as_role(Role.ADMIN)
    moment = utcnow()
    flagdb.add("early", True, at=moment + timedelta(seconds=1))  # the application's, after the moment
    admin.get("/targets/web/flags")  # Rewind's first look: the baseline checkpoint, with `early`
    _swapped_in_backup(flag_app)
    flagdb.execute("DELETE FROM feature_flags WHERE name = %s", ("early",))
    for name in ("early", "fresh"):
        assert post(admin, "/targets/web/flags/new", {"flag": name, "enabled": "on"}).status_code == 303

    page = plan_page(client=admin, query=f"as_of={moment.isoformat()}")
    assert "<code>fresh</code>" in _section(page, CREATED), page
    unknown = _section(page, UNKNOWN)
    assert "<code>early</code>: on now" in unknown and "fresh" not in unknown


def test_a_first_look_taken_after_the_swap_proves_nothing_of_the_moment(flag_app, flagdb, as_role):
    """Review: Rewind's first look came after a restore swapped in a backup without `ghost`, which the application
    had at the moment; Rewind then created it. That look saw the swapped-in database, not live at the moment: how
    `ghost` was then is unknown, not "created since"."""
    admin = as_role(Role.ADMIN)
    flagdb.add("ghost", True, at=utcnow() - timedelta(minutes=5))  # the application's, before the moment
    moment = utcnow()
    _swapped_in_backup(flag_app)
    flagdb.execute("DELETE FROM feature_flags WHERE name = %s", ("ghost",))  # the backup had none
    admin.get("/targets/web/flags")  # Rewind's first look, after the swap: no `ghost`
    assert post(admin, "/targets/web/flags/new", {"flag": "ghost", "enabled": "off"}).status_code == 303

    page = html.unescape(plan_page(client=admin, query=f"as_of={moment.isoformat()}"))
    assert "ghost" not in _section(page, CREATED), page
    # unknown, and the moment before Rewind's first record: refused whole, rather than a plan that guesses
    assert "is before Rewind's first record of web's flags" in page and "choose a later moment" in page, page
