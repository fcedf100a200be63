"""Summary lines (the dashboard card, the target overview) give up soon on a flags table another transaction holds.

A migration's ALTER TABLE holds the table in ACCESS EXCLUSIVE mode (on SQLite: a writer's exclusive lock);
a page that reads the flags must say so at once rather than wait a toggle's whole lock timeout.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from app.auth.roles import Role
from app.flags import summary
from app.targets import flags as flags_adapter
from tests.conftest import wait_for
from tests.flags.conftest import make_flag_db, targets_toml
from tests.support.apps import post
from tests.support.targets import write_targets_file

BOUND_S = 30  # generous: far more than the summary's wait, far less than the raised toggle wait below


@contextmanager
def held(flagdb):
    """The flags table held by another transaction, as a running migration holds it, until the block ends."""
    holder = flagdb.connect()
    if flagdb.kind == "sqlite":
        holder.execute("BEGIN EXCLUSIVE")
    else:
        holder.autocommit = False
        holder.execute("LOCK TABLE feature_flags IN ACCESS EXCLUSIVE MODE")
    try:
        yield holder
    finally:
        holder.rollback() if flagdb.kind == "postgresql" else holder.execute("ROLLBACK")
        holder.close()


def fetched_while_held(flagdb, client, paths: list[str]) -> dict[str, str]:
    """Each page, fetched while the table is held; fails unless every one answered before the lock was let go."""
    pages: dict[str, str] = {}
    done = threading.Event()

    def fetch():
        try:
            for path in paths:
                pages[path] = client.get(path).get_data(as_text=True)
        finally:
            done.set()

    with held(flagdb):
        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        answered = done.wait(BOUND_S)
    worker.join(BOUND_S)
    assert answered, "a page waited on the held flags table as long as a toggle would"
    return pages


def test_the_overview_and_the_dashboard_say_the_table_is_locked_while_it_is_held(
    flag_app, flagdb, as_role, monkeypatch
):
    # A summary that waited as a toggle does would now wait past the test's bound (PostgreSQL's statement
    # timeout would end it first, with other words): only the summary's own short wait answers in time.
    monkeypatch.setattr(flags_adapter, "LOCK_TIMEOUT_S", BOUND_S * 4)
    client = as_role(Role.VIEWER)
    pages = fetched_while_held(flagdb, client, ["/targets/web", "/dashboard/cards"])
    said = (
        "could not be read: the flags table feature_flags is locked by another transaction of the application"
        f"&#39;s database; Rewind waited {summary.LOCK_WAIT_S:g} s and gave up"
    )
    assert said in pages["/targets/web"], pages["/targets/web"]
    assert said in pages["/dashboard/cards"], pages["/dashboard/cards"]
    # Once the lock is let go the same line reads the table again.
    assert "2 of 3 on" in client.get("/targets/web").get_data(as_text=True)


def test_a_summary_gives_up_after_its_own_wait_and_a_later_toggle_still_gets_the_long_one(flag_app, flagdb):
    with flag_app.app_context():
        from app.jobs.engine import current_targets

        target = current_targets().open("web")
        with held(flagdb):
            try:
                summary.flags_line(target)
            except flags_adapter.TableLocked as exc:
                locked = exc
            else:
                raise AssertionError("the summary read a table another transaction holds")
        assert locked.waited_s == summary.LOCK_WAIT_S and locked.table == "feature_flags"
        # The short wait was that read's alone: the (reused) connection reads and writes with the usual one.
        assert summary.flags_line(target)[0][1].startswith("2 of 3 on")
        assert lock_wait_of_next_connection(target.flags()) == flags_adapter.LOCK_TIMEOUT_S
        change, _ = target.flags().set("dark_mode", True, seen=False)
        assert change.changed and flagdb.states()["dark_mode"] is True


def lock_wait_of_next_connection(table) -> float:
    """How long the connection the table's next read or write gets (the idle one, on PostgreSQL) waits on a lock."""
    with table._reading() as conn:
        if table.sqlite:
            return conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
        return int(conn.execute("SELECT setting FROM pg_settings WHERE name = 'lock_timeout'").fetchone()[0]) / 1000


def test_a_toggle_waits_for_the_migration_holding_the_table_and_then_writes(
    app, as_role, pg_server, tmp_path, monkeypatch
):
    """PostgreSQL shows a waiting lock in pg_locks: the table is let go only once the toggle is seen waiting."""
    monkeypatch.setattr(flags_adapter, "LOCK_TIMEOUT_S", BOUND_S * 4)  # however slow the machine, it still waits
    flagdb = make_flag_db("postgresql", tmp_path, pg_server)
    flagdb.add("dark_mode", False)
    write_targets_file(app, targets_toml(flagdb.url, tmp_path))
    client = as_role(Role.OPERATOR)
    answers = []
    with held(flagdb):
        toggler = threading.Thread(
            target=lambda: answers.append(post(client, "/targets/web/flags/dark_mode/toggle", {"seen": "off"})),
            daemon=True,
        )
        toggler.start()

        def toggle_waits():
            return flagdb.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = 'feature_flags'::regclass AND NOT granted"
            )[0][0]

        wait_for(toggle_waits, timeout=BOUND_S)
    toggler.join(BOUND_S)
    assert answers and answers[0].status_code == 303, answers
    assert flagdb.states() == {"dark_mode": True}
