"""The flags adapter against real databases: SQLite files and the session's PostgreSQL."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from datetime import datetime

import psycopg
import pytest

from app.targets import flags as flags_adapter
from app.targets.flags import (
    ChangedMeanwhile,
    Flag,
    FlagError,
    FlagExists,
    FlagTable,
    FlagTableError,
    FlagValueError,
    StaleFlag,
    UnknownFlag,
    VanishedFlags,
)
from tests.conftest import wait_for
from tests.flags.conftest import make_flag_db


def test_lists_flags_with_their_state_description_and_time(flagdb):
    flags = flagdb.table().list()
    assert [(f.name, f.enabled, f.description) for f in flags] == [
        ("checkout_v2", True, "The new checkout"),
        ("dark_mode", False, "Dark colours"),
        ("search_beta", True, "The new search"),
    ]
    assert flags[0].updated_at == datetime(2026, 1, 1)


def test_toggle_writes_the_state_and_a_new_updated_at(flagdb):
    change, stamp = flagdb.table().set("dark_mode", True, seen=False)
    assert (change.old, change.new, change.changed) == (False, True, True)
    flag = flagdb.table().get("dark_mode")
    assert flag.enabled is True and flag.updated_at == stamp
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": True, "search_beta": True}


def test_setting_the_state_a_flag_already_has_writes_nothing(flagdb):
    change, _ = flagdb.table().set("checkout_v2", True)
    assert not change.changed
    assert flagdb.table().get("checkout_v2").updated_at == datetime(2026, 1, 1)


def test_a_stale_toggle_is_refused_and_writes_nothing(flagdb):
    flagdb.outside_change("dark_mode", True, datetime(2026, 2, 1))
    with pytest.raises(StaleFlag) as refused:
        flagdb.table().set("dark_mode", True, seen=False)
    assert refused.value.flag.enabled is True
    assert "dark_mode is on now, not off as you saw it" in refused.value.message
    assert flagdb.table().get("dark_mode").updated_at == datetime(2026, 2, 1)


def _waiting_on_lock(flagdb) -> bool:
    rows = flagdb.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return rows[0][0] > 0


def test_a_toggle_racing_a_concurrent_writer_is_refused(flagdb):
    """Another connection holds the row and changes it; the toggle waits for it, then sees the new state."""
    other = flagdb.connect()
    other.execute("BEGIN IMMEDIATE" if flagdb.kind == "sqlite" else "BEGIN")
    other.execute(flagdb.sql("UPDATE feature_flags SET enabled = %s WHERE name = %s"), (True, "dark_mode"))
    outcome: list[BaseException | object] = []

    def toggle():
        try:
            outcome.append(flagdb.table().set("dark_mode", True, seen=False))
        except FlagError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=toggle)
    worker.start()
    try:
        if flagdb.kind == "postgresql":
            wait_for(lambda: _waiting_on_lock(flagdb))
        assert outcome == []  # it cannot have finished: the row is held
        other.execute("COMMIT")
    finally:
        worker.join(timeout=30)
        other.close()
    assert len(outcome) == 1 and isinstance(outcome[0], StaleFlag)
    assert flagdb.states()["dark_mode"] is True


def test_unknown_flag_is_named(flagdb):
    with pytest.raises(UnknownFlag, match="there is no flag 'nope' in feature_flags"):
        flagdb.table().set("nope", True)
    with pytest.raises(UnknownFlag):
        flagdb.table().get("nope")


def test_kill_switch_turns_several_off_in_one_transaction(flagdb):
    changes, stamp = flagdb.table().kill(["checkout_v2", "dark_mode", "search_beta"])
    assert [(c.name, c.old, c.new) for c in changes] == [
        ("checkout_v2", True, False),
        ("dark_mode", False, False),
        ("search_beta", True, False),
    ]
    assert set(flagdb.states().values()) == {False}
    assert flagdb.table().get("checkout_v2").updated_at == stamp
    assert flagdb.table().get("dark_mode").updated_at == datetime(2026, 1, 1)  # already off: untouched


def test_kill_switch_by_tag(flagdb):
    changes, _ = flagdb.table(tag="team").kill(tag="web")
    assert [c.name for c in changes] == ["dark_mode", "search_beta"]
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False, "search_beta": False}


def test_kill_by_tag_needs_a_tag_column(flagdb):
    with pytest.raises(FlagError, match="no tag column configured"):
        flagdb.table().kill(tag="web")
    with pytest.raises(FlagError, match="no flag in feature_flags is tagged 'nobody'"):
        flagdb.table(tag="team").kill(tag="nobody")


def test_kill_switch_with_a_vanished_flag_changes_nothing(flagdb):
    flagdb.execute("DELETE FROM feature_flags WHERE name = 'dark_mode'")
    with pytest.raises(VanishedFlags) as refused:
        flagdb.table().kill(["checkout_v2", "dark_mode", "search_beta"])
    assert refused.value.names == ["dark_mode"]
    assert "dark_mode" in refused.value.message and "nothing was changed" in refused.value.message
    assert flagdb.states() == {"checkout_v2": True, "search_beta": True}


def test_kill_switch_failing_midway_changes_nothing(flagdb):
    """The database refuses the third update (a constraint): the first two are rolled back with it."""
    flagdb.add("pinned", True, "Must stay on")
    if flagdb.kind == "sqlite":
        flagdb.execute(
            "CREATE TRIGGER pinned_stays_on BEFORE UPDATE ON feature_flags "
            "WHEN NEW.name = 'pinned' AND NOT NEW.enabled BEGIN SELECT RAISE(ABORT, 'pinned stays on'); END"
        )
    else:
        flagdb.execute("ALTER TABLE feature_flags ADD CONSTRAINT pinned_stays_on CHECK (name <> 'pinned' OR enabled)")
    before = flagdb.states()
    with pytest.raises(FlagValueError, match="nothing was written"):
        flagdb.table().kill(["checkout_v2", "pinned", "search_beta"])
    assert flagdb.states() == before
    assert flagdb.table().get("checkout_v2").updated_at == datetime(2026, 1, 1)


def test_apply_refuses_when_a_flag_moved_since_the_plan(flagdb):
    flagdb.outside_change("checkout_v2", False, datetime(2026, 3, 1))
    with pytest.raises(ChangedMeanwhile, match=r"checkout_v2 \(now off\)"):
        flagdb.table().apply({"dark_mode": True}, expected={"checkout_v2": True, "dark_mode": False})
    assert flagdb.states()["dark_mode"] is False


def test_apply_against_a_whole_table_refuses_when_any_flag_moved_even_one_it_does_not_write(flagdb):
    """The plan saw the whole table; search_beta, not part of the write, is stamped anew since: nothing is written."""
    whole = flags_adapter.fingerprint(flagdb.table().list())
    flagdb.outside_change("search_beta", True, datetime(2026, 3, 1))  # same state, a new stamp
    with pytest.raises(flags_adapter.TableMoved, match="changed since the plan was shown"):
        flagdb.table().apply({"dark_mode": True}, expected={"dark_mode": False}, whole=whole)
    assert flagdb.states()["dark_mode"] is False
    whole = flags_adapter.fingerprint(flagdb.table().list())
    flagdb.add("brand_new", False)  # a flag come since
    with pytest.raises(flags_adapter.TableMoved):
        flagdb.table().apply({"dark_mode": True}, expected={"dark_mode": False}, whole=whole)
    whole = flags_adapter.fingerprint(flagdb.table().list())
    changes, _ = flagdb.table().apply({"dark_mode": True}, expected={"dark_mode": False}, whole=whole)
    assert [(c.name, c.old, c.new) for c in changes] == [("dark_mode", False, True)]


def test_apply_sets_states_and_recreates_in_one_go(flagdb):
    changes, _ = flagdb.table().apply(
        {"checkout_v2": False, "dark_mode": False},
        expected={"checkout_v2": True, "dark_mode": False},
        create=[Flag("old_export", True, "Back again")],
    )
    assert [(c.name, c.old, c.new) for c in changes] == [("checkout_v2", True, False), ("old_export", None, True)]
    assert flagdb.states() == {"checkout_v2": False, "dark_mode": False, "old_export": True, "search_beta": True}


def test_create_and_delete(flagdb):
    table = flagdb.table()
    table.create(Flag("fresh", False, "Brand new"))
    with pytest.raises(FlagExists):
        table.create(Flag("fresh", True, ""))
    assert table.get("fresh").description == "Brand new"
    with pytest.raises(StaleFlag):
        table.delete("fresh", seen=True)
    assert table.delete("fresh", seen=False).name == "fresh"
    assert "fresh" not in flagdb.states()


def test_a_value_the_column_cannot_hold_is_refused_cleanly(flagdb):
    with pytest.raises(FlagValueError, match="the database refused the change"):
        flagdb.table().create(Flag("wordy", True, "x" * 200))
    assert "wordy" not in flagdb.states()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_missing_table_is_a_clear_message(kind, tmp_path, request):
    server = request.getfixturevalue("pg_server") if kind == "postgresql" else None
    db = make_flag_db(kind, tmp_path, server, create=False)
    with pytest.raises(FlagTableError, match="the flags table feature_flags cannot be read") as refused:
        db.table().list()
    assert "Rewind never creates it" in refused.value.fix
    with pytest.raises(FlagTableError, match="the flags table feature_flags cannot be read"):
        db.table().set("x", True)


def test_a_table_of_another_shape_names_the_missing_column(flagdb):
    with pytest.raises(FlagTableError, match="has no column 'is_on' \\(its enabled column\\)") as refused:
        flagdb.table(enabled="is_on").list()
    assert "database.flags_columns.enabled" in refused.value.fix
    with pytest.raises(FlagTableError, match="'is_on'"):
        flagdb.table(enabled="is_on").kill(["dark_mode"])
    assert flagdb.states()["checkout_v2"] is True


def test_an_unreachable_database_is_a_clear_message(tmp_path):
    table = FlagTable(f"sqlite:///{tmp_path}/no/such/dir/app.db", "feature_flags")
    with pytest.raises(FlagTableError, match="cannot open the flags database"):
        table.list()


def test_identifiers_are_quoted(flagdb):
    """A table name is an identifier, never SQL: a hostile one only fails to be found."""
    table = FlagTable(flagdb.url, 'feature_flags"; DROP TABLE feature_flags; --')
    with pytest.raises(FlagTableError):
        table.list()
    assert len(flagdb.states()) == 3


def test_kill_switch_racing_a_delete_changes_nothing(flagdb):
    """Another connection deletes one of the chosen flags while the kill switch waits for it: all or none."""
    other = flagdb.connect()
    other.execute("BEGIN IMMEDIATE" if flagdb.kind == "sqlite" else "BEGIN")
    other.execute("DELETE FROM feature_flags WHERE name = 'search_beta'")
    outcome: list[object] = []

    def kill():
        try:
            outcome.append(flagdb.table().kill(["checkout_v2", "search_beta"]))
        except FlagError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=kill)
    worker.start()
    try:
        if flagdb.kind == "postgresql":
            wait_for(lambda: _waiting_on_lock(flagdb))
        other.execute("COMMIT")
    finally:
        worker.join(timeout=30)
        other.close()
    assert len(outcome) == 1 and isinstance(outcome[0], VanishedFlags)
    assert outcome[0].names == ["search_beta"]
    assert flagdb.states() == {"checkout_v2": True, "dark_mode": False}


def test_a_write_to_a_table_of_another_shape_names_the_missing_column(flagdb):
    """PostgreSQL writes skip the up-front shape check; the failed statement is followed by it."""
    with pytest.raises(FlagTableError, match="has no column 'last_change' \\(its updated_at column\\)"):
        flagdb.table(updated_at="last_change").set("dark_mode", True, seen=False)
    assert flagdb.states()["dark_mode"] is False


def test_a_reused_connection_the_server_ended_is_replaced_before_anything_is_written(tmp_path, pg_server):
    db = make_flag_db("postgresql", tmp_path, pg_server)
    db.add("dark_mode", False)
    table = db.table()
    table.set("dark_mode", True)  # leaves its connection idle, for the next write
    ended = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert ended, "the first write left no idle connection"
    for (pid,) in ended:  # as a restore's database swap does
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: not db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", ([p for (p,) in ended],)))
    change, _ = table.set("dark_mode", False, seen=True)
    assert (change.old, change.new) == (True, False)
    assert db.states() == {"dark_mode": False}


def _backends(db) -> set[int]:
    return {
        pid
        for (pid,) in db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    }


def test_a_refused_write_keeps_its_connection_for_the_next_one(tmp_path, pg_server):
    """Stale toggles are common when people collide: each must not cost the server a new backend."""
    db = make_flag_db("postgresql", tmp_path, pg_server)
    db.add("dark_mode", False)
    table = db.table()
    table.set("dark_mode", True)
    kept = _backends(db)
    assert len(kept) == 1
    with pytest.raises(StaleFlag):
        table.set("dark_mode", True, seen=False)
    with pytest.raises(UnknownFlag):
        table.set("no_such_flag", True, seen=False)
    assert _backends(db) == kept
    change, _ = table.set("dark_mode", False, seen=True)
    assert (change.old, change.new) == (True, False)
    assert _backends(db) == kept and db.states() == {"dark_mode": False}


def test_a_forked_process_starts_without_its_parents_connections_and_leaves_them_working(tmp_path, pg_server):
    """A gunicorn worker is a fork: it must neither use nor close a connection its parent keeps idle."""
    db = make_flag_db("postgresql", tmp_path, pg_server)
    db.add("dark_mode", False)
    table = db.table()
    table.set("dark_mode", True)
    child = os.fork()
    if child == 0:  # the child forgets the parent's connections (and drops them, which must not close them)
        inherited = flags_adapter._idle.take(db.url)
        gc.collect()
        os._exit(0 if inherited is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child was handed its parent's connection"
    kept = flags_adapter._idle.take(db.url)
    assert kept is not None, "the parent lost its idle connection"
    assert kept.execute("SELECT 1").fetchone() == (1,)  # the server did not see it closed by the child
    flags_adapter._idle.give(db.url, kept)
    assert table.set("dark_mode", False, seen=True)[0].new is False


def _row_is_locked_by_another(flagdb, name: str) -> bool:
    """Can another connection take the row's write lock right now? (SQLite: the database's.)"""
    other = flagdb.connect()
    try:
        if flagdb.kind == "sqlite":
            other.execute("PRAGMA busy_timeout = 0")
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        else:
            other.execute("SELECT 1 FROM feature_flags WHERE name = %s FOR UPDATE NOWAIT", (name,))
        return False
    except (sqlite3.OperationalError, psycopg.errors.LockNotAvailable):
        return True
    finally:
        other.close()


def test_before_commit_runs_while_the_row_is_locked_and_the_write_not_yet_visible(flagdb):
    """The audit row is written there: a second writer of the flag waits until it holds its place in the chain."""
    seen = []

    def audit(change, stamp):
        seen.append((change.old, change.new, _row_is_locked_by_another(flagdb, "dark_mode"), flagdb.states()))

    change, _ = flagdb.table().set("dark_mode", True, seen=False, before_commit=audit)
    assert change.changed
    [(old, new, locked, states)] = seen
    assert (old, new, locked) == (False, True, True)
    assert states["dark_mode"] is False  # not committed yet
    assert flagdb.states()["dark_mode"] is True
    assert not _row_is_locked_by_another(flagdb, "dark_mode")


def test_create_and_delete_call_before_commit_before_their_write_is_visible(flagdb):
    """Their audit rows are written there, as a toggle's is."""
    seen = []

    def audit_create(change, stamp):
        seen.append((change.old, change.new, change.after.updated_at == stamp, "fresh" in flagdb.states()))

    change, _stamp = flagdb.table(tag="team").create(Flag("fresh", True, "New", tag="web"), before_commit=audit_create)
    assert (change.name, change.old, change.new, change.after.tag) == ("fresh", None, True, "web")
    assert seen == [(None, True, True, False)]  # not committed yet when audited
    assert "fresh" in flagdb.states()

    def audit_delete(gone):
        seen.append((gone.name, gone.tag, _row_is_locked_by_another(flagdb, "fresh"), "fresh" in flagdb.states()))

    gone = flagdb.table(tag="team").delete("fresh", seen=True, before_commit=audit_delete)
    assert (gone.name, gone.description) == ("fresh", "New")
    assert seen[1] == ("fresh", "web", True, True)  # locked, and still there for every other reader
    assert "fresh" not in flagdb.states()


@pytest.mark.parametrize("write", ["set", "kill", "apply", "create", "delete"])
def test_a_before_commit_that_fails_leaves_the_table_untouched(flagdb, write):
    """An audit row that cannot be written means no change either."""
    before = flagdb.states()

    def audit(*_):
        raise RuntimeError("the ops database is gone")

    table = flagdb.table()
    with pytest.raises(RuntimeError, match="ops database is gone"):
        if write == "set":
            table.set("dark_mode", True, seen=False, before_commit=audit)
        elif write == "kill":
            table.kill(["checkout_v2", "search_beta"], before_commit=audit)
        elif write == "apply":
            table.apply({"dark_mode": True, "checkout_v2": False}, before_commit=audit)
        elif write == "create":
            table.create(Flag("fresh", True), before_commit=audit)
        else:
            table.delete("dark_mode", seen=False, before_commit=audit)
    assert flagdb.states() == before
    assert not _row_is_locked_by_another(flagdb, "dark_mode")


def test_a_text_enabled_column_on_postgresql_is_read_and_written(tmp_path, pg_server):
    """Some applications keep the state as text ('true'/'false'): both the shell's set and the web's checked one."""
    flagdb = make_flag_db("postgresql", tmp_path, pg_server, create=False)
    flagdb.execute(
        "CREATE TABLE feature_flags (name VARCHAR(80) PRIMARY KEY, enabled TEXT NOT NULL, "
        "description TEXT NOT NULL DEFAULT '', updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    flagdb.execute("INSERT INTO feature_flags (name, enabled) VALUES ('dark_mode', 'false')")
    table = flagdb.table()
    assert table.get("dark_mode").enabled is False
    table.set("dark_mode", True)  # the shell's path (no seen)
    assert flagdb.execute("SELECT enabled FROM feature_flags") == [("true",)]
    table.set("dark_mode", False, seen=True)  # the web's path (seen given)
    assert table.get("dark_mode").enabled is False


@pytest.mark.parametrize("how", ["whole table", "several by name", "by tag"])
def test_rows_are_locked_in_name_order_whatever_order_they_lie_in(tmp_path, pg_server, how):
    """Two writes that lock several rows take them in one order (by name), so they cannot deadlock each other: one
    waits for the other. Here the rows lie in the table against name order (zeta first), and another connection
    holds "mid": a write waiting for "mid" must hold "alpha" only, never "zeta"."""
    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    for name in ("zeta", "mid", "alpha"):
        flagdb.add(name, True, team="web")
    table = flagdb.table(tag="team")
    holder = flagdb.connect()
    holder.execute("BEGIN")
    holder.execute("SELECT 1 FROM feature_flags WHERE name = 'mid' FOR UPDATE")
    done: list[object] = []

    def write():
        try:
            if how == "whole table":
                current = table.list()
                done.append(table.apply({"mid": False}, whole=flags_adapter.fingerprint(current)))
            elif how == "several by name":
                done.append(table.kill(["zeta", "mid", "alpha"]))
            else:
                done.append(table.kill(tag="web"))
        except FlagError as exc:
            done.append(exc)

    worker = threading.Thread(target=write)
    worker.start()
    try:
        wait_for(lambda: _waiting_on_lock(flagdb))
        probe = flagdb.connect()
        try:
            probe.execute("BEGIN")
            assert probe.execute("SELECT name FROM feature_flags WHERE name = 'zeta' FOR UPDATE SKIP LOCKED").fetchall()
            assert not probe.execute(
                "SELECT name FROM feature_flags WHERE name = 'alpha' FOR UPDATE SKIP LOCKED"
            ).fetchall()
            probe.execute("ROLLBACK")
        finally:
            probe.close()
        holder.execute("ROLLBACK")
    finally:
        worker.join(timeout=30)
        holder.close()
    assert len(done) == 1 and not isinstance(done[0], BaseException), done


def test_a_flags_read_that_does_not_answer_is_given_up_with_a_clear_error(tmp_path, pg_server, monkeypatch):
    """A checkpoint reads the flags while every audited write in Rewind waits: a read is bounded."""
    monkeypatch.setattr(flags_adapter, "STATEMENT_TIMEOUT_S", 0.3)
    flagdb = make_flag_db("postgresql", tmp_path, pg_server, create=False)
    flagdb.execute(
        "CREATE TABLE real_flags (name text PRIMARY KEY, enabled boolean NOT NULL, description text NOT NULL "
        "DEFAULT '', updated_at timestamptz, team text)"
    )
    flagdb.execute("INSERT INTO real_flags VALUES ('dark_mode', false, '', now(), 'web')")
    flagdb.execute("CREATE VIEW feature_flags AS SELECT r.* FROM real_flags r, pg_sleep(30) AS slow")
    with pytest.raises(FlagTableError, match=r"reading feature_flags failed: .*statement timeout") as refused:
        flagdb.table().list()
    assert "nothing was changed" in refused.value.fix
