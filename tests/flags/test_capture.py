"""A checkpoint's flag states say exactly which audited changes they include, however a write races the capture."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.auth.roles import Role
from app.checkpoints import captures
from app.checkpoints import store as checkpoints
from app.checkpoints.models import Checkpoint
from app.clock import utcnow
from app.extensions import db
from app.flags import history
from app.jobs.engine import current_targets
from tests.conftest import both_databases, wait_for
from tests.deployments.test_runbooks import run
from tests.flags.conftest import audit_rows, confirm_of, make_flag_db, plan_page, seen_of, targets_toml
from tests.support.apps import post
from tests.support.targets import write_targets_file

UNKNOWN = "Changed outside Rewind — state then unknown"
CAPTURED = {"checkout_v2": True, "dark_mode": False, "search_beta": True}


def _checkpoint_in(app, done: dict) -> threading.Thread:
    """The checkpoint step's work (every capture, then the checkpoint row) in a thread of its own."""

    def take() -> None:
        with app.app_context():
            taken = captures.take_all(current_targets().open("web"))
            done["id"] = checkpoints.record("web", None, "raced", taken).id

    worker = threading.Thread(target=take)
    worker.start()
    return worker


def _states_of(app, checkpoint_id: int) -> dict:
    with app.app_context():
        return db.session.get(Checkpoint, checkpoint_id).captures["flags"]


def _restore_as_of_checkpoint_puts_back(client, flagdb, checkpoint_id: int, states: dict, **form) -> None:
    page = plan_page(client, f"checkpoint={checkpoint_id}")
    response = post(
        client, "/targets/web/flags/restore", {"checkpoint": str(checkpoint_id), **confirm_of(page), **form}
    )
    assert response.status_code == 303
    assert flagdb.states() == states


def test_changes_committed_between_the_capture_and_its_checkpoint_are_replayed(flag_app, flagdb, as_role, monkeypatch):
    """A toggle and a delete commit after the flags were read and before the checkpoint row: their audit rows are
    older than the checkpoint, their changes are not in it. Both stay Rewind's known changes after it."""
    client, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    client.get("/targets/web/flags")  # the baseline checkpoint
    read, go = threading.Event(), threading.Event()

    def hold(target):  # a capture taken after the flags': holds the checkpoint between its read and its commit
        read.set()
        assert go.wait(30)

    monkeypatch.setitem(captures._captures, "zz_hold", captures.Capture("zz_hold", "held", hold))
    done: dict = {}
    worker = _checkpoint_in(flag_app, done)
    try:
        wait_for(read.is_set)
        assert post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}).status_code == 303
        assert post(admin, "/targets/web/flags/search_beta/delete", {"seen": "on"}).status_code == 303
    finally:
        go.set()
        worker.join(30)
    flags = _states_of(flag_app, done["id"])
    assert flags["states"] == CAPTURED
    [(_, _, toggled)] = audit_rows(flag_app, "flags.toggle")
    assert toggled["changes"] == [{"flag": "dark_mode", "old": False, "new": True}]

    moment = utcnow()
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})  # the change to undo
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert UNKNOWN not in page and json.loads(seen_of(page)) == {"checkout_v2": False}

    page = plan_page(client, f"checkpoint={done['id']}")
    assert json.loads(seen_of(page)) == {"checkout_v2": False, "dark_mode": True}
    _restore_as_of_checkpoint_puts_back(client, flagdb, done["id"], CAPTURED, recreate="search_beta")
    again = flagdb.table(tag="team").get("search_beta")
    assert (again.description, again.tag) == ("The new search", "web")  # from the delete's audit row


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_capture_waits_for_a_write_whose_audit_row_is_not_committed_yet(app, as_role, pg_server, tmp_path):
    """The toggle has written its audit row and is held in its flags commit (a deferred trigger waits on a lock
    the test holds): a capture must not read the flags then, or it misses a change audited before it."""
    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    for name, on in CAPTURED.items():
        flagdb.add(name, on, team="web")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path, tag="team"))
    flagdb.execute(
        "CREATE FUNCTION wait_at_commit() RETURNS trigger LANGUAGE plpgsql SET lock_timeout = 0 AS "
        "$$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$"
    )
    flagdb.execute(
        "CREATE CONSTRAINT TRIGGER wait_at_commit AFTER UPDATE ON feature_flags "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wait_at_commit()"
    )
    client, toggler = as_role(Role.OPERATOR), as_role(Role.OPERATOR)
    client.get("/targets/web/flags")  # the baseline checkpoint
    ops_db = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database

    def waiting(sql: str, *args) -> bool:
        return flagdb.execute(sql, args)[0][0] > 0

    holder = flagdb.connect()
    holder.execute("SELECT pg_advisory_lock(4242)")
    answers: list[int] = []
    toggle = threading.Thread(
        target=lambda: answers.append(post(toggler, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}).status_code)
    )
    done: dict = {}
    toggle.start()
    try:
        wait_for(lambda: waiting("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
        capture = _checkpoint_in(app, done)
        try:  # the capture (or, without the head lock, its checkpoint's audit row) waits for the toggle's audit row
            wait_for(
                lambda: waiting(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", ops_db
                )
            )
        finally:
            holder.execute("SELECT pg_advisory_unlock(4242)")
            capture.join(30)
    finally:
        holder.close()
        toggle.join(30)
    assert answers == [303]
    flags = _states_of(app, done["id"])
    assert flags["states"] == {**CAPTURED, "dark_mode": True}  # the capture waited for the toggle
    with app.app_context():
        toggled = max(e.id for e in history.events("web"))
    assert flags["through_audit"] >= toggled

    moment = utcnow()
    post(client, "/targets/web/flags/checkout_v2/toggle", {"seen": "on"})
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert UNKNOWN not in page and json.loads(seen_of(page)) == {"checkout_v2": False}
    _restore_as_of_checkpoint_puts_back(client, flagdb, done["id"], flags["states"])


def test_a_checkpoint_from_before_positions_were_kept_is_read_by_its_time(flag_app, flagdb, as_role):
    """Old checkpoints hold only states: the changes after them are those audited after their time, as before."""
    client = as_role(Role.OPERATOR)
    with flag_app.app_context():
        old = checkpoints.record("web", None, "an old one", {"flags": {"states": CAPTURED}}).id
    moment = utcnow()
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    page = plan_page(client, f"as_of={moment.isoformat()}")
    assert json.loads(seen_of(page)) == {"dark_mode": True}  # on now, to be turned back off
    page = plan_page(client, f"checkpoint={old}")
    assert json.loads(seen_of(page)) == {"dark_mode": True}
    _restore_as_of_checkpoint_puts_back(client, flagdb, old, CAPTURED)


@both_databases
def test_a_job_checkpoint_holds_the_flags_and_the_audit_position_they_include(flag_app, flagdb, as_role, runner):
    """The checkpoint step, run by the job engine on either ops database, takes the audit head for its read without
    waiting on the job's own transaction."""
    client = as_role(Role.OPERATOR)
    post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})
    job, _ = run(flag_app, "test.checkpoint", target="web")
    assert job.state == "succeeded", job.result
    with flag_app.app_context():
        cp = db.session.scalars(select(Checkpoint).where(Checkpoint.job_id == job.id)).one()
        flags = cp.captures["flags"]
        toggled = [e.id for e in history.events("web")]
    assert flags["states"] == {**CAPTURED, "dark_mode": True}
    assert len(toggled) == 1 and flags["through_audit"] >= toggled[0]
