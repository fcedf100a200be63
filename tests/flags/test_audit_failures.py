"""A toggle writes its audit row after the flag's commit: a row that fails then must not leave the change unaudited
and unsaid."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from app.audit import store as audit_store
from app.auth.roles import Role
from app.checkpoints import captures
from app.checkpoints import store as checkpoints
from app.checkpoints.models import Checkpoint
from app.clock import utcnow
from app.extensions import db
from app.flags import history, restore
from app.flags import store as flag_store
from app.jobs.engine import current_targets
from tests.conftest import both_databases, wait_for
from tests.flags.conftest import HTMX, audit_rows, confirm_of, make_flag_db, plan_page, seen_of, targets_toml
from tests.support.apps import post
from tests.support.targets import write_targets_file

REFUSE = {
    "postgresql": [
        "CREATE FUNCTION refuse_toggle_rows() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.action = 'flags.toggle' AND NEW.details NOT LIKE :allowed THEN "
        "RAISE EXCEPTION 'the audit log refuses this row'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_toggle_rows BEFORE INSERT ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION refuse_toggle_rows()",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse_toggle_rows BEFORE INSERT ON audit_event "
        "WHEN NEW.action = 'flags.toggle' AND NEW.details NOT LIKE :allowed "
        "BEGIN SELECT RAISE(ABORT, 'the audit log refuses this row'); END",
    ],
}
UNDO = {
    "postgresql": ["DROP TRIGGER refuse_toggle_rows ON audit_event"],
    "sqlite": ["DROP TRIGGER refuse_toggle_rows"],
}


def ops_sql(app, statements: dict[str, list[str]], **params) -> None:
    with app.app_context():
        for statement in statements[db.engine.dialect.name]:
            if params:  # a trigger's body cannot take bound parameters: the allowed pattern is written in
                statement = statement.replace(":allowed", "'" + params["allowed"].replace("'", "''") + "'")
            db.session.execute(text(statement))
        db.session.commit()


def flag_target(app, tmp_path):
    flagdb = make_flag_db("sqlite", tmp_path)
    flagdb.add("dark_mode", False, "Dark colours")
    flagdb.add("search_beta", False, "The new search")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    return flagdb


@both_databases
def test_a_toggle_whose_audit_row_fails_after_the_flag_commit_is_audited_late(app, as_role, tmp_path):
    flagdb = flag_target(app, tmp_path)
    ops_sql(app, REFUSE, allowed="%audit_late%")  # the first writing of the row fails, a later one is let in
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert flagdb.states()["dark_mode"] is True
    [(actor, outcome, details)] = audit_rows(app, "flags.toggle")
    assert (actor, outcome) == ("operator", "ok")
    assert details["changes"] == [{"flag": "dark_mode", "old": False, "new": True}]
    assert "the audit log refuses this row" in details["audit_late"]
    with app.app_context():
        assert audit_store.verify().intact


@both_databases
def test_a_toggle_whose_audit_row_cannot_be_written_says_the_change_stands(app, as_role, tmp_path):
    flagdb = flag_target(app, tmp_path)
    ops_sql(app, REFUSE, allowed="%never%")
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    page = response.get_data(as_text=True)
    assert response.status_code == 503, page
    assert "web: dark_mode was turned on, but the audit log could not record it" in page
    assert flagdb.states()["dark_mode"] is True
    assert audit_rows(app, "flags.toggle") == []
    # The session and its pooled connection are left clean: the next change on them is written and audited.
    ops_sql(app, UNDO)
    response = post(client, "/targets/web/flags/search_beta/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [d["flag"] for _, _, d in audit_rows(app, "flags.toggle")] == ["search_beta"]
    with app.app_context():
        assert audit_store.verify().intact


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_toggle_whose_ops_connection_dies_at_the_flag_commit_is_audited_late(app, as_role, tmp_path, pg_server):
    """The ops database's connection, holding the row's place, is lost while the flag commits (a restart, a
    failover): the change stands and is audited on a fresh connection, and the pool goes on."""
    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    flagdb.add("dark_mode", False, "Dark colours")
    drop_ops_at_commit(app, flagdb, "UPDATE")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert flagdb.states()["dark_mode"] is True
    [(actor, outcome, details)] = audit_rows(app, "flags.toggle")
    assert (actor, outcome) == ("operator", "ok") and details["audit_late"]
    assert details["changes"] == [{"flag": "dark_mode", "old": False, "new": True}]
    flagdb.execute("DROP TRIGGER drop_ops ON feature_flags")
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on"}, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [d["new"] for _, _, d in audit_rows(app, "flags.toggle")] == [True, False]
    with app.app_context():
        assert audit_store.verify().intact


def drop_ops_at_commit(app, flagdb, events: str) -> None:
    """At the flag's commit, the application's database ends every ops-database session left in a transaction:
    the writer's, which holds the audit head (and its rows) while it waits for the flag's commit."""
    with app.app_context():
        ops_name = db.engine.url.database
    flagdb.execute(
        "CREATE FUNCTION drop_ops() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{ops_name}' AND state = 'idle in transaction'; RETURN NULL; END $$"
    )
    flagdb.execute(
        f"CREATE CONSTRAINT TRIGGER drop_ops AFTER {events} ON feature_flags "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION drop_ops()"
    )


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_kill_create_delete_or_restore_whose_ops_connection_dies_at_the_flag_commit_is_audited_late(
    app, as_role, tmp_path, pg_server
):
    """Their rows are written before the flags' commit and committed after it: a commit lost then must not leave
    the change unaudited either."""
    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    flagdb.add("dark_mode", True, "Dark colours")
    flagdb.add("search_beta", True, "The new search")
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    operator, admin = as_role(Role.OPERATOR), as_role(Role.ADMIN)
    operator.get("/targets/web/flags")  # the first look records the flags (a checkpoint): no flag written
    moment = utcnow().isoformat()
    drop_ops_at_commit(app, flagdb, "INSERT OR UPDATE OR DELETE")

    response = post(operator, "/targets/web/flags/kill", {"flag": ["dark_mode"], "reason": "errors"})
    assert response.status_code == 303 and flagdb.states()["dark_mode"] is False
    response = post(admin, "/targets/web/flags/new", {"flag": "fresh", "enabled": "on"})
    assert response.status_code == 303 and flagdb.states()["fresh"] is True
    response = post(admin, "/targets/web/flags/search_beta/delete", {"seen": "on"})
    assert response.status_code == 303 and "search_beta" not in flagdb.states()
    page = plan_page(operator, f"as_of={moment}")
    form = {"as_of": moment, **confirm_of(page), "reason": "back", "recreate": "search_beta"}
    response = post(operator, "/targets/web/flags/restore", form, follow_redirects=True)
    assert "2 change(s) written" in response.get_data(as_text=True)
    assert flagdb.states() == {"dark_mode": True, "fresh": True, "search_beta": True}

    for action in ("flags.kill", "flags.create", "flags.delete", "flags.restore"):
        [(_, outcome, details)] = audit_rows(app, action)
        assert outcome == "ok" and "terminat" in details["audit_late"], (action, details)
    with app.app_context():
        assert audit_store.verify().intact


@both_databases
def test_an_audit_commit_whose_answer_is_lost_is_not_written_twice(app, as_role, tmp_path, monkeypatch):
    """The audit row's commit reached the database but its answer did not (the connection dropped right after):
    the row is there, so the late path finds it by its hash instead of writing the change a second time."""
    from sqlalchemy.exc import OperationalError

    from app.flags import store as flag_store

    flagdb = flag_target(app, tmp_path)
    committed = audit_store.write_and_commit

    def answer_lost(reserved):
        committed(reserved)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(flag_store, "write_and_commit", answer_lost)
    client = as_role(Role.OPERATOR)
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert flagdb.states()["dark_mode"] is True
    [(actor, outcome, details)] = audit_rows(app, "flags.toggle")
    assert (actor, outcome) == ("operator", "ok") and "audit_late" not in details
    with app.app_context():
        assert audit_store.verify().intact


@contextmanager
def late_toggle(app, client, monkeypatch) -> Iterator[None]:
    """dark_mode turned on in a thread of its own, whose audit row fails after the flag's commit: the body runs while
    the late path is held (the row's place given back, the flag's change committed), and on leaving it the late row
    is written, at the chain's end."""
    held, go = threading.Event(), threading.Event()
    kept = flag_store._already_kept

    def hold(events):  # the late path's first step
        held.set()
        assert go.wait(30)
        return kept(events)

    monkeypatch.setattr(flag_store, "_already_kept", hold)
    ops_sql(app, REFUSE, allowed="%audit_late%")
    answers: list[int] = []
    worker = threading.Thread(
        target=lambda: answers.append(
            post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"}, headers=HTMX).status_code
        )
    )
    worker.start()
    try:
        wait_for(held.is_set)
        ops_sql(app, UNDO)
        yield
    finally:
        go.set()
        worker.join(30)
    assert answers == [200]


def turn_off(client) -> None:
    response = post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "on"}, headers=HTMX)
    assert response.status_code == 200, response.get_data(as_text=True)


@both_databases
def test_a_late_audit_row_keeps_its_place_before_a_later_change_of_the_same_flag(app, as_role, tmp_path, monkeypatch):
    """The first toggle's row fails after the flag's commit, and before its late row is written a second toggle of
    the same flag is made and audited: in the log the late row comes last, yet the history and a restore as of a
    moment before or between the two read the changes in the order they were made."""
    flagdb = flag_target(app, tmp_path)
    first, second = as_role(Role.OPERATOR), as_role(Role.OPERATOR)
    first.get("/targets/web/flags")  # the baseline checkpoint
    before = utcnow().isoformat()
    with late_toggle(app, first, monkeypatch):
        between = utcnow().isoformat()
        turn_off(second)
    assert flagdb.states()["dark_mode"] is False
    logged = [(d["changes"][0]["new"], "audit_late" in d) for _, _, d in audit_rows(app, "flags.toggle")]
    assert logged == [(False, False), (True, True)]  # in the log's order the late row comes after the later change

    with app.app_context():
        assert history.last_change("web", "dark_mode").change_of("dark_mode")["new"] is False
        assert history.last_changes("web")["dark_mode"].change_of("dark_mode")["new"] is False
        assert [c["new"] for _, c in history.of_flag("web", "dark_mode").items] == [False, True]  # newest first
        assert [e.change_of("dark_mode")["new"] for e in history.events("web")] == [True, False]
        assert audit_store.verify().intact
    page = plan_page(first, f"as_of={before}")  # off then, off now: nothing to do, and nothing unknown
    assert json.loads(seen_of(page)) == {} and "state then unknown" not in page
    page = plan_page(first, f"as_of={between}")  # on then (the late row's change), off now: turned back on
    assert json.loads(seen_of(page)) == {"dark_mode": False} and "state then unknown" not in page
    form = {"as_of": between, **confirm_of(page), "reason": "back"}
    assert post(first, "/targets/web/flags/restore", form).status_code == 303
    assert flagdb.states()["dark_mode"] is True


@both_databases
def test_a_late_audit_row_a_checkpoint_already_holds_is_not_replayed_after_it(app, as_role, tmp_path, monkeypatch):
    """A checkpoint taken after the second toggle holds both changes, though the first one's late row is logged
    after it: a restore as of a later moment starts from the checkpoint and must not replay the late row over it.
    The application then deletes the flag, so the checkpoint is all that says how it was."""
    flagdb = flag_target(app, tmp_path)
    first, second = as_role(Role.OPERATOR), as_role(Role.OPERATOR)
    first.get("/targets/web/flags")  # the baseline checkpoint
    with late_toggle(app, first, monkeypatch):
        turn_off(second)
        with app.app_context():
            taken = captures.take_all(current_targets().open("web"))
            checkpoint = checkpoints.record("web", None, "after both", taken).id
    with app.app_context():
        through = db.session.get(Checkpoint, checkpoint).captures["flags"]["through_audit"]
    [(_, _, late)] = [row for row in audit_rows(app, "flags.toggle") if "audit_late" in row[2]]
    assert late["placed"]["id"] <= through  # its place is in the checkpoint, though the row came after it
    moment = utcnow()
    flagdb.execute("DELETE FROM feature_flags WHERE name = %s", ("dark_mode",))  # by the application
    with app.app_context():
        target = current_targets().open("web")
        for the_plan in (restore.plan(target, moment=moment), restore.plan(target, checkpoint=checkpoint)):
            assert [(f.name, f.enabled) for f in the_plan.deleted_since] == [("dark_mode", False)], the_plan.source


@both_databases
def test_a_late_audit_row_made_first_starts_the_record_when_it_was_made(app, as_role, tmp_path, monkeypatch):
    """No checkpoint yet (no one opened the Flags tab): Rewind's record starts with its first change, which is the
    late row's though a later change was logged before it, so a moment between the two is not too early."""
    flagdb = flag_target(app, tmp_path)
    first, second = as_role(Role.OPERATOR), as_role(Role.OPERATOR)
    with late_toggle(app, first, monkeypatch):
        between = utcnow()
        turn_off(second)
    assert flagdb.states()["dark_mode"] is False
    with app.app_context():
        assert history.first_change_at("web") < between
        the_plan = restore.plan(current_targets().open("web"), moment=between)
        assert [(c.name, c.new) for c in the_plan.changes] == [("dark_mode", True)] and not the_plan.unknown
