"""The application (or something beside it) still connected to live when the swap renames it: its sessions are
ended and the swap goes through, or it is refused naming them; it never hangs."""

from __future__ import annotations

import contextlib
import threading

import psycopg
import pytest

from tests.backups.test_runbooks import backup_now, copies
from tests.conftest import wait_for
from tests.deployments.test_runbooks import log_text, run

pytestmark = pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)


def _long_query(url: str, started: threading.Event, outcome: list) -> None:
    try:
        with psycopg.connect(url, application_name="report") as conn:
            started.set()
            conn.execute("SELECT pg_sleep(60)")
        outcome.append("finished")
    except psycopg.Error as exc:
        outcome.append(type(exc).__name__)
    finally:
        started.set()


def _running(url: str, sql: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query = %s", (sql,)).fetchone()[0])


def test_idle_idle_in_transaction_and_long_running_sessions_are_ended_and_the_swap_goes_through(
    app, runner, data_target
):
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 10")
    before = len(data_target.rows("orders"))
    idle = psycopg.connect(data_target.url, application_name="idle")
    idle.execute("SELECT 1")
    idle.commit()
    in_transaction = psycopg.connect(data_target.url, application_name="in a transaction")
    in_transaction.execute("UPDATE orders SET total = total + 1 WHERE id = 1")  # holds a row lock, uncommitted
    started, outcome = threading.Event(), []
    long = threading.Thread(target=_long_query, args=(data_target.url, started, outcome), daemon=True)
    long.start()
    assert started.wait(30)
    wait_for(lambda: _running(data_target.pg_url, "SELECT pg_sleep(60)"), timeout=30)
    try:
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert job.state == "succeeded", (job.result, log_text(view))
        long.join(timeout=30)
        assert not long.is_alive() and outcome and outcome[0] != "finished", outcome  # ended, not waited for
        for conn in (idle, in_transaction):
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
    finally:
        idle.close()
        in_transaction.close()
    assert before == 10 and len(data_target.rows("orders")) == 20  # the restored rows under the live name
    (pre,) = copies(data_target)
    assert "_pre_restore_" in pre


class Pool(threading.Thread):
    """An application's connection pool: it keeps connections open to live and opens new ones as soon as they are
    ended, in a loop, as fast as it can, until told to stop. What it read, and how often it reconnected."""

    def __init__(self, url: str, size: int = 5) -> None:
        super().__init__(daemon=True)
        self.url, self.size = url, size
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.seen: set[int] = set()
        self.reconnects = 0

    def run(self) -> None:
        conns: list[psycopg.Connection] = []
        while not self.stop.is_set():
            while len(conns) < self.size and not self.stop.is_set():
                try:
                    conns.append(psycopg.connect(self.url, autocommit=True, application_name="pool"))
                    self.reconnects += 1
                except psycopg.Error:
                    continue  # the live name is gone for a moment mid-swap: at once again
            for conn in list(conns):
                try:
                    self.seen.add(conn.execute("SELECT count(*) FROM orders").fetchone()[0])
                    self.connected.set()
                except psycopg.Error:
                    conn.close()
                    conns.remove(conn)
        for conn in conns:
            conn.close()


def test_a_pool_that_reconnects_in_a_loop_does_not_keep_the_swap_from_renaming_live(app, runner, data_target):
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 10")
    pool = Pool(data_target.url)
    pool.start()
    try:
        assert pool.connected.wait(30)
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert job.state == "succeeded", (job.result, log_text(view))
        reconnects = pool.reconnects
        wait_for(lambda: pool.reconnects > reconnects or 20 in pool.seen, timeout=30)
        wait_for(lambda: 20 in pool.seen, timeout=30)  # the pool now reads the restored database under live's name
    finally:
        pool.stop.set()
        pool.join(timeout=30)
    assert not pool.is_alive()
    assert pool.seen == {10, 20}
    (pre,) = copies(data_target)
    undo, view = run(app, "undo_restore", data_target.name, pre_restore=pre)
    assert undo.state == "succeeded", (undo.result, log_text(view))


@pytest.fixture
def short_lock_wait(monkeypatch):
    """Rewind waits a second, not ten, for a lock another session holds on a table it reads."""
    from app.backups import create
    from app.targets import dbadmin

    monkeypatch.setattr(dbadmin, "LOCK_WAIT_S", 1.0)
    monkeypatch.setattr(create, "LOCK_WAIT_S", 1.0)


def _migration(url: str, table: str) -> psycopg.Connection:
    """A migration that took its table's lock and was left idle in its transaction."""
    conn = psycopg.connect(url, application_name="migration")
    conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return conn


def test_a_key_table_locked_by_a_session_fails_the_compare_naming_it_instead_of_waiting_for_it(
    app, runner, data_target, short_lock_wait
):
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 10")
    before = data_target.snapshot()
    migration = _migration(data_target.url, "orders")
    try:
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert job.state == "failed", log_text(view)
        assert [s.state for s in view.steps[2:5]] == ["succeeded", "failed", "not_run"]
        assert "could not read orders in" in job.result and "locked for more than 1 s" in job.result, job.result
        assert '("migration")' in job.result and "idle in transaction" in job.result, job.result
        # the statement to paste names the session's pid (QA: it said pg_terminate_backend(pid), to fill in)
        pid = migration.info.backend_pid
        assert f"or end it (SELECT pg_terminate_backend({pid})), then try again" in job.result, job.result
        assert copies(data_target) == []  # the scratch was dropped
        assert not migration.closed  # nothing before the stop ends the application's sessions

        made, view = run(app, "backup", data_target.name)  # a key table is counted for the manifest first
        assert made.state == "failed" and "could not read orders" in made.result, made.result
    finally:
        migration.rollback()
        migration.close()
    assert data_target.snapshot() == before

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert len(data_target.rows("orders")) == 20


def test_a_backup_whose_table_another_session_holds_locked_fails_instead_of_waiting_for_it(
    app, runner, data_target, short_lock_wait
):
    data_target.execute("CREATE TABLE visits (id integer PRIMARY KEY)")
    migration = _migration(data_target.url, "visits")
    try:
        job, view = run(app, "backup", data_target.name)
        assert job.state == "failed", log_text(view)
        assert "LOCK TABLE public.visits" in job.result, job.result
        assert "a session held a lock on a table for more than 1 s" in job.result, job.result
    finally:
        migration.rollback()
        migration.close()
    assert [p for p in data_target.backup_dir.iterdir() if p.name.endswith(".gpg")] == []
    backup_now(app, data_target)


def test_a_key_table_locked_in_live_does_not_stop_an_undo(app, runner, data_target, short_lock_wait):
    """Undo is the way back: its compare says what it could not read and goes on, and the swap ends the session
    that held the lock, as the restore's swap does."""
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 10")
    changed = data_target.snapshot()
    restored, view = run(app, "restore_backup", data_target.name, backup=name)
    assert restored.state == "succeeded", log_text(view)
    (pre,) = copies(data_target)
    migration = _migration(data_target.url, "orders")
    try:
        undo, view = run(app, "undo_restore", data_target.name, pre_restore=pre)
        text = log_text(view)
        assert undo.state == "succeeded", (undo.result, text)
        assert "could not compare: could not read orders in" in text and "locked for more than 1 s" in text, text
        assert "the undo goes on; rows written since the restore stay in" in text
    finally:
        with contextlib.suppress(psycopg.Error):
            migration.rollback()
        migration.close()
    assert data_target.snapshot() == changed
