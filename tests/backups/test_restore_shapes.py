"""A restore and its undo on a database shaped like a real application's: everything comes back, row for row,
and the application's next writes continue its sequences instead of colliding with restored rows."""

from __future__ import annotations

import psycopg
import pytest

from tests.backups.shapes import change, contents, foreign_backup, shaped_target, sibling_url, write_as_the_app
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run


@pytest.fixture
def shaped(app, tmp_path, gpg_homes, pg_server):
    with shaped_target(app, tmp_path, gpg_homes, pg_server) as target:
        yield target


@pytest.mark.parametrize("made_by", ["rewind", "custom", "plain"])
def test_a_database_shaped_like_an_application_s_restores_and_undoes_whole(app, runner, shaped, pg_server, made_by):
    before = contents(shaped.url)
    name = backup_now(app, shaped) if made_by == "rewind" else foreign_backup(shaped, pg_server, made_by)
    change(shaped.url)
    changed = contents(shaped.url)
    assert changed != before
    assert len(before["large objects"]) == 9 and len(before["billing.revenue"]) == 8 and before["triggers"]

    job, view = run(app, "restore_backup", shaped.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert contents(shaped.url) == before  # every table, sequence, large object and definition, as backed up
    for key in ("billing.invoices", "Orders", "user"):
        assert f"\n{key} " in f"\n{text}", text  # compared by the names the targets file gives
    (pre,) = copies(shaped)
    assert contents(sibling_url(shaped.url, pre)) == changed

    with psycopg.connect(shaped.url, autocommit=True) as conn:  # the application's next writes, by its defaults
        ids = write_as_the_app(conn, "after the restore")
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY billing.revenue")  # needs its unique index restored
        audit = conn.execute("SELECT what FROM billing.audit ORDER BY id DESC LIMIT 1").fetchone()
    assert ids == {"user": 9, "Orders": 9, "billing.invoices": 9, "events": 9}  # after the restored rows
    assert audit == ("INSERT",)  # the trigger fires in the restored database

    after_restore = contents(shaped.url)
    undo, view = run(app, "undo_restore", shaped.name, pre_restore=pre)
    assert undo.state == "succeeded", (undo.result, log_text(view))
    assert contents(shaped.url) == changed
    (undone,) = [c for c in copies(shaped) if "_undone_" in c]
    assert contents(sibling_url(shaped.url, undone)) == after_restore
    with psycopg.connect(shaped.url, autocommit=True) as conn:
        ids = write_as_the_app(conn, "after the undo")
    assert ids == {"user": 10, "Orders": 10, "billing.invoices": 10, "events": 10}  # after the rows kept by undo
