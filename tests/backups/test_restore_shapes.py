"""A restore and its undo on a database shaped like a real application's: everything comes back, row for row,
and the application's next writes continue its sequences instead of colliding with restored rows."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.backups.shapes import (
    SHAPED_KEY_TABLES,
    change,
    contents,
    foreign_backup,
    shaped_target,
    sibling_url,
    write_as_the_app,
)
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run
from tests.support.targets import write_targets_file


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

    tested, view = run(app, "verify_backup", shaped.name, backup=name, level="restore-test")
    assert tested.state == "succeeded", (tested.result, log_text(view))
    assert '"Orders" 8, user 8, billing."line.items" 8' in tested.result, tested.result

    job, view = run(app, "restore_backup", shaped.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert contents(shaped.url) == before  # every table, sequence, large object and definition, as backed up
    for key in SHAPED_KEY_TABLES:  # compared by the names the targets file gives, each found
        assert re.search(rf"^{re.escape(key)} +\d+ +8 ", text, re.M), text
    assert "missing" not in text
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


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
@pytest.mark.parametrize("schema", ["public", '"Sales.EU"', '"My Schema"', '"EU (old)"'])
def test_a_check_constraint_s_function_that_needs_the_search_path_is_named_with_its_fix(
    app, runner, data_target, schema
):
    """pg_dump's restore runs with an empty search_path: a CHECK constraint's function naming a table without its
    schema fails to load the rows. The scratch is dropped, live untouched, and the job says which function and how
    to make the next backup restorable; that backup then restores. A schema whose quoted name holds a dot, a space
    or parentheses is one name."""
    if schema != "public":
        data_target.execute(f"CREATE SCHEMA {schema}")
    data_target.execute(f"CREATE TABLE {schema}.limits (min_total integer NOT NULL)")
    data_target.execute(f"INSERT INTO {schema}.limits VALUES (0)")  # noqa: S608 the two schemas above
    data_target.execute(
        f"CREATE FUNCTION {schema}.total_ok(n integer) RETURNS boolean LANGUAGE plpgsql STABLE "  # noqa: S608
        "AS $$ BEGIN RETURN n >= (SELECT min_total FROM limits); END $$"
    )
    data_target.execute(  # the rows are checked now, as the application's own session would: with limits in its path
        f"SET search_path = {schema}, public; "
        f"ALTER TABLE orders ADD CONSTRAINT orders_total_ok CHECK ({schema}.total_ok(total))"
    )
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 10")
    before = data_target.snapshot()

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert 'relation "limits" does not exist' in job.result, job.result
    fix = f"ALTER FUNCTION {schema}.total_ok(integer) SET search_path = {schema}"
    assert fix in job.result, job.result
    assert data_target.snapshot() == before and copies(data_target) == []

    data_target.execute(fix)  # as the fix says
    (data_target.backup_dir / name).unlink()
    (data_target.backup_dir / f"{name}.json").unlink()
    fixed = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 5")
    job, view = run(app, "restore_backup", data_target.name, backup=fixed)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert data_target.snapshot() == before


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_key_table_spelled_unlike_its_table_is_said_with_how_to_write_it(app, runner, data_target):
    """`Orders` names a table "Orders", not orders (names are matched exactly): said, never counted as missing
    from the backup alone."""
    data_target.key_tables = ["user", "Orders"]
    write_targets_file(app, data_target.toml())
    name = backup_now(app, data_target)

    tested, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert tested.state == "failed", log_text(view)
    assert "restores without the key table(s) Orders" in tested.result, tested.result
    assert "matched exactly (case included)" in tested.result and 'billing."line.items"' in tested.result

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert "the key table(s) Orders are in neither live nor the copy: check the name" in log_text(view)
