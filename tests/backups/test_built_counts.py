"""A restored copy's rows as its index builds counted them: taken only where that count still stands."""

from __future__ import annotations

import subprocess
import uuid

import psycopg
import pytest

from app.targets.dbadmin import Postgres
from app.targets.environment import inherited_env

TABLES = ["user", "orders", "plain", "empty"]


@pytest.fixture
def restored(pg_server, tmp_path):
    """A copy pg_restore has just filled from a custom archive: data first, then its keys and indexes."""
    source = f"built_src_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_server.create_database(source), autocommit=True) as conn:
        conn.execute('CREATE TABLE "user" (id int PRIMARY KEY, name text)')
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, user_id int, note text)")
        conn.execute("CREATE INDEX ON orders (user_id)")
        conn.execute("CREATE TABLE plain (id int)")  # no index: nothing counted it
        conn.execute("CREATE TABLE empty (id int PRIMARY KEY)")
        conn.execute("INSERT INTO \"user\" SELECT g, 'u' || g FROM generate_series(1, 3001) g")
        conn.execute("INSERT INTO orders SELECT g, g % 50, repeat('x', 40) FROM generate_series(1, 5002) g")
        conn.execute("INSERT INTO plain SELECT generate_series(1, 77)")
    archive = tmp_path / "copy.dump"
    subprocess.run([pg_server.bin / "pg_dump", "-Fc", "-f", archive, pg_server.url(source)], check=True)
    name = f"built_{uuid.uuid4().hex[:6]}"
    url = pg_server.create_database(name)
    subprocess.run([pg_server.bin / "pg_restore", "--no-owner", "-d", url, archive], check=True)
    db = Postgres(url, inherited_env())
    yield db, url
    db.drop(name)
    db.drop(source)


def _built(db: Postgres) -> dict[str, int]:
    with db.connect() as conn:
        return db.built_counts(conn, TABLES)


def test_the_index_builds_counted_every_row_of_each_indexed_table(restored):
    db, _ = restored
    assert _built(db) == {"user": 3001, "orders": 5002}  # plain has no index; empty's build found nothing to count
    assert (
        db.counts(TABLES, as_built=True) == db.counts(TABLES) == {"user": 3001, "orders": 5002, "plain": 77, "empty": 0}
    )
    found = db.survey(TABLES, as_built=True)
    assert found.counts == db.counts(TABLES) and found.built == ("user", "orders")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param('ANALYZE "user"', id="analyzed: an estimate"),
        pytest.param('VACUUM "user"', id="vacuumed"),
        pytest.param("INSERT INTO \"user\" SELECT g, 'late' FROM generate_series(5000, 9000) g", id="grown since"),
        # count(*) reads the children's rows too, and under row security only the rows a policy lets through
        pytest.param(
            "CREATE TABLE user_child () INHERITS (\"user\"); INSERT INTO user_child VALUES (1, 'c')", id="parent"
        ),
        pytest.param('ALTER TABLE "user" ENABLE ROW LEVEL SECURITY', id="row security"),
    ],
)
def test_a_table_touched_since_its_build_is_counted_instead(restored, change):
    db, url = restored
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(change)
    assert "user" not in _built(db) and _built(db)["orders"] == 5002
    real = db.counts(["user"])["user"]
    assert db.counts(["user"], as_built=True) == {"user": real}
    assert db.survey(["user"], as_built=True).built == ()


def test_a_table_another_session_holds_is_counted_not_waited_for(restored):
    """A lock that stops a vacuum (autovacuum's own, say) also stops the figure from being trusted: all are counted."""
    db, url = restored
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE")
        assert _built(db) == {}
        assert db.counts(TABLES, as_built=True) == {"user": 3001, "orders": 5002, "plain": 77, "empty": 0}


def test_a_missing_key_table_is_still_said_missing(restored):
    db, _ = restored
    assert db.counts(["user", "missing"], as_built=True) == {"user": 3001, "missing": None}
    with db.connect() as conn:
        assert db.built_counts(conn, []) == {}
