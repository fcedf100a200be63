"""The guard between gpg and psql: a plain dump may only act inside the database it is restored into."""

from __future__ import annotations

import io
import os
import subprocess
import uuid

import psycopg
import pytest

from app.backups import sqlguard
from app.backups.restore import RestoreFailed, restore_scratch
from app.backups.setup import setup_of
from app.backups.sqlguard import REFUSED, guard, guard_stage
from app.jobs.engine import current_targets
from app.targets.command import run_pipeline
from tests.backups.conftest import RECIPIENT
from tests.backups.test_runbooks import app_pid, copies
from tests.deployments.test_runbooks import log_text, run
from tests.support.sinks import Lines

DUMP = b"""\\restrict k3y
SET statement_timeout = 0;
CREATE TABLE public.t (id integer, note text);
COPY public.t (id, note) FROM stdin;
1\t\\N
2\t\\\\connect starts with a backslash, as data
\\.
CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
\\unrestrict k3y
"""


def test_a_plain_dump_of_one_database_passes_unchanged_copy_data_included():
    out = io.BytesIO()
    assert guard(io.BytesIO(DUMP), out) is None
    assert out.getvalue() == DUMP


@pytest.mark.parametrize(
    "line, why",
    [
        (b"\\connect shop\n", "a psql meta-command"),
        (b"\\! rm -rf /tmp/x\n", "a psql meta-command"),
        (b"  \\c shop\n", "a psql meta-command"),
        (b"DROP DATABASE shop;\n", "a statement on a whole database"),
        (b"create database shop;\n", "a statement on a whole database"),
        (b"ALTER DATABASE shop RENAME TO gone;\n", "a statement on a whole database"),
        (b"COPY t TO PROGRAM 'sh -c id';\n", "a COPY that is not FROM stdin"),
        (b"COPY t FROM '/etc/passwd';\n", "a COPY that is not FROM stdin"),
    ],
)
def test_a_line_reaching_outside_stops_the_stream_before_it(line, why):
    head = b"CREATE TABLE a (id int);\n"
    out = io.BytesIO()
    found = guard(io.BytesIO(head + line + b"CREATE TABLE b (id int);\n"), out)
    assert found == (2, why, line)
    assert out.getvalue() == head  # nothing from the refused line on reached the reader


def test_as_a_pipeline_stage_it_fails_with_the_line_named():
    read, write = os.pipe()
    os.write(write, b"SELECT 1;\nDROP DATABASE shop;\n")
    os.close(write)
    sink = Lines()
    with open(os.devnull, "wb") as nowhere, os.fdopen(read, "rb") as source:
        result = run_pipeline([guard_stage(dict(os.environ))], sink, stdin=source, stdout=nowhere, timeout=60)
    assert not result.ok and result.failed.name == "sqlguard" and result.failed.returncode == REFUSED
    said = " ".join(result.failed.stderr_tail)
    assert "refused at line 2: a statement on a whole database (DROP DATABASE shop;)" in said


# --- psql splits a line into statements and reads quotes itself: so does the guard ----------------


@pytest.mark.parametrize(
    "sql, number, why",
    [
        (b"SELECT 1; DROP DATABASE shop WITH (FORCE);\n", 1, "a statement on a whole database"),
        (b"SELECT 1; \\connect shop\n", 1, "a psql meta-command"),
        (b"/* x */ DROP DATABASE shop;\n", 1, "a statement on a whole database"),
        (b"DROP /* a /* nested */ comment */ DATABASE shop;\n", 1, "a statement on a whole database"),
        (
            b"SELECT 1;\nDROP\n  -- a comment between the words\n  DATABASE shop;\n",
            2,
            "a statement on a whole database",
        ),
        (
            b"CREATE FUNCTION f() RETURNS void AS $$\nCOPY t FROM stdin;\n$$ LANGUAGE sql;\n\\connect shop\n",
            4,
            "a psql meta-command",
        ),
        (b"ALTER ROLE app PASSWORD 'x';\n", 1, "a statement on a role"),
        (b"SELECT 'it''s'; CREATE USER evil SUPERUSER;\n", 1, "a statement on a role"),
        (b"DROP GROUP staff;\n", 1, "a statement on a role"),
        (b"CREATE TABLESPACE t LOCATION '/tmp';\n", 1, "a statement on a tablespace"),
        (b"SELECT $x$ ; $x$; ALTER SYSTEM SET fsync = off;\n", 1, "ALTER SYSTEM"),
        (b"GRANT app TO evil;\n", 1, "a GRANT of role membership"),
        (b"GRANT ALL ON DATABASE shop TO evil;\n", 1, "a GRANT on a database"),
        (b"COMMENT ON DATABASE shop IS 'x';\n", 1, "a comment on a database"),
        (b"REASSIGN OWNED BY app TO evil;\n", 1, "REASSIGN OWNED"),
        (b"LOAD '/tmp/evil.so';\n", 1, "LOAD"),
        (b"SELECT 1; COPY t TO PROGRAM 'id';\n", 1, "a COPY that is not FROM stdin"),
        (b"COPY t FROM stdin; DROP TABLE a;\n1\n\\.\n", 1, "more on the line after COPY"),
        (b"COMMIT;\nDROP TABLE a;\n", 1, "a transaction end"),
        (b"ROLLBACK;\n", 1, "a transaction end"),
        # where psql's reading depends on a setting or its version, the guard does not guess
        (b"SELECT 'a\\'; DROP DATABASE shop; --';\n", 1, "a quote after a backslash"),
        (b"SELECT E'a\\\\'; DROP DATABASE shop;\n", 1, "a statement on a whole database"),
        (b"SELECT 1$$ ' $$; DROP DATABASE shop; -- ';\n", 1, "a $ run into a number"),
        (b"SELECT $1$$ ' $$; DROP DATABASE shop; -- ';\n", 1, "a $ run into a parameter"),
        (b"CREATE PROCEDURE p() BEGIN ATOMIC SELECT 1; END;\nCOMMIT;\n", 2, "a transaction end"),
        # psql drops what follows a NUL byte on its line: its quotes would not be the ones the guard read
        (b"SELECT '\x00';\n'; ALTER ROLE app CONNECTION LIMIT 0; --'\n;\n", 1, "a NUL byte"),
        (b"COPY t FROM stdin;\n1\tabc\x00\n\\.\n'\n\\.\nALTER ROLE app CONNECTION LIMIT 0;\n-- '\n;\n", 2, "a NUL"),
        # in SJIS (BIG5, GBK, …) psql reads \x95\\ as one character: that backslash escapes nothing
        (b"SELECT E'\x95\\';ALTER ROLE app CONNECTION LIMIT 0;--'\n;\n", 1, "depends on client_encoding"),
        (b"SELECT '\x95\\';ALTER ROLE app CONNECTION LIMIT 0;--'\n;\n", 1, "depends on client_encoding"),
        (b"SELECT '\x95\\\\';SELECT ';ALTER ROLE app CONNECTION LIMIT 0;--'\n", 1, "depends on client_encoding"),
    ],
)
def test_what_psql_would_run_outside_the_scratch_is_refused_wherever_it_is(sql, number, why):
    out = io.BytesIO()
    found = guard(io.BytesIO(sql), out)
    assert found is not None, f"passed to psql: {sql!r}"
    assert found[0] == number and why in found[1], found
    assert not out.getvalue().endswith(sql.splitlines(keepends=True)[number - 1])  # the refused line never passed


LEGITIMATE = [
    # a function body with \d and ; inside dollar quotes
    b"CREATE FUNCTION public.digits(t text) RETURNS boolean LANGUAGE plpgsql AS $$\n"
    b"BEGIN\n  RETURN t ~ '^\\d+$'; -- \\connect here is text\nEND;\n$$;\n",
    b"CREATE FUNCTION public.g() RETURNS text LANGUAGE sql AS $_$ SELECT '$$; DROP DATABASE x;' $_$;\n",
    # a string literal and a quoted identifier holding what would be refused outside them
    b"COMMENT ON TABLE public.t IS '; DROP DATABASE x; \\connect x';\n",
    b"ALTER TABLE public.t ALTER COLUMN note SET DEFAULT E'it\\'s; DROP DATABASE x;'::text;\n",
    b'CREATE TABLE public."; DROP DATABASE x;" (id integer);\n',
    # COPY data holding a meta-command and SQL: data until a line that is exactly \.
    b"COPY public.t (id, note) FROM stdin;\n1\t\\connect shop\n2\tDROP DATABASE shop;\n\\.x\n\\.\r\r\n3\t'\n\\.\n",
    # an SQL-standard body: psql keeps BEGIN ATOMIC ... END; whole, its END ends no transaction
    b"CREATE FUNCTION public.h() RETURNS integer LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\nEND;\n",
    b"GRANT SELECT (id, note) ON TABLE public.t TO app;\nCREATE USER MAPPING FOR app SERVER s;\n",
]


@pytest.mark.parametrize("sql", LEGITIMATE)
def test_what_only_looks_like_it_inside_quotes_comments_or_copy_data_passes_unchanged(sql):
    out = io.BytesIO()
    assert guard(io.BytesIO(sql), out) is None
    assert out.getvalue() == sql


LARGE_OBJECTS = (
    b"BEGIN;\n\nSELECT pg_catalog.lo_open('16385', 131072);\nSELECT pg_catalog.lowrite(0, '\\x68');\nCOMMIT;\n"
)


def test_pg_dump_s_own_begin_and_commit_around_large_objects_pass_as_comments():
    """Under psql's --single-transaction, the dump's COMMIT would end the one transaction halfway through the fill."""
    out = io.BytesIO()
    sql = b"CREATE TABLE a (id int);\n" + LARGE_OBJECTS + b"CREATE INDEX i ON a (id);\n"
    assert guard(io.BytesIO(sql), out) is None
    assert out.getvalue() == sql.replace(b"BEGIN;\n", b"-- BEGIN;\n").replace(b"COMMIT;\n", b"-- COMMIT;\n")


@pytest.mark.parametrize(
    ("sql", "number", "why"),
    [
        (b"BEGIN; SELECT 1;\nCOMMIT;\n", 1, "a transaction statement not as pg_dump writes it"),
        (b"BEGIN;\nSELECT 1; COMMIT;\n", 2, "a transaction statement not as pg_dump writes it"),
        (b"BEGIN;\nCOMMIT; DROP TABLE a;\n", 2, "a transaction statement not as pg_dump writes it"),
        (b"START TRANSACTION;\nCOMMIT;\n", 1, "a transaction statement not as pg_dump writes it"),
        (b"BEGIN;\nEND;\n", 2, "a transaction statement not as pg_dump writes it"),
        (b"BEGIN\n;\nCOMMIT;\n", 2, "a transaction statement not as pg_dump writes it"),
        (b"BEGIN;\nBEGIN;\nCOMMIT;\n", 2, "a transaction begun inside another"),
        (b"BEGIN;\nSELECT 1;\nCOMMIT", 3, "a transaction statement not as pg_dump writes it"),
        # psql ends a -- comment at a carriage return: commented out, this COMMIT would still run
        (b"BEGIN;\n\rCOMMIT;\n", 2, "a transaction statement not as pg_dump writes it"),
        (b"\rBEGIN;\nCOMMIT;\n", 1, "a transaction statement not as pg_dump writes it"),
    ],
)
def test_other_transaction_statements_are_refused(sql, number, why):
    out = io.BytesIO()
    found = guard(io.BytesIO(sql), out)
    assert found is not None and found[0] == number and why in found[1], found


def test_a_refused_statement_is_held_back_whole_the_ones_before_it_pass():
    sql = b"CREATE TABLE a (id int);\nSELECT 1; DROP\nDATABASE shop;\n"
    out = io.BytesIO()
    assert guard(io.BytesIO(sql), out) == (2, "a statement on a whole database", b"SELECT 1; DROP\n")
    assert out.getvalue() == b"CREATE TABLE a (id int);\n"  # psql never gets a part of the refused statement


# --- end to end, with real dumps of the session's PostgreSQL -------------------------------------


def store_plain_backup(target, pg_server, extra: bytes = b"") -> str:
    """`pg_dump db | gpg -e > backup_….sql.gpg`, as the written procedure makes it, with `extra` appended."""
    dump = subprocess.run([str(pg_server.bin / "pg_dump"), "--dbname", target.url], capture_output=True, check=True)
    out = io.BytesIO()
    target.home.encrypt(dump.stdout + extra, out, [RECIPIENT])
    target.backup_dir.mkdir(exist_ok=True)
    name = "backup_20240101_000000.sql.gpg"
    (target.backup_dir / name).write_bytes(out.getvalue())
    return name


def scratch_fill(app, target, name: str, scratch: str) -> None:
    with app.app_context():
        setup = setup_of(current_targets().open(target.name))
        restore_scratch(setup, setup.catalog.get(name), scratch, Lines())


LOOKALIKES = [
    # a function body with \d and ; inside dollar quotes
    r"""CREATE FUNCTION digits(t text) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
        RETURN t ~ '^\d+$';  -- \connect is only text here
    END; $$""",
    "CREATE FUNCTION answer() RETURNS integer LANGUAGE sql BEGIN ATOMIC SELECT 42; END",
    "CREATE TABLE notes (id integer PRIMARY KEY, body text DEFAULT '; DROP DATABASE x;')",
    r"""COMMENT ON TABLE notes IS '; DROP DATABASE x; \connect x'""",
    # COPY data lines that start with a backslash and hold SQL
    r"""INSERT INTO notes (id, body) VALUES (1, '\connect shop'), (2, E'\\.'), (3, 'DROP DATABASE x;')""",
    "INSERT INTO notes (id) VALUES (4)",
    "SELECT lo_from_bytea(0, 'a large object')",  # pg_dump wraps these in its own BEGIN; … COMMIT;
]


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_real_dump_with_lookalikes_in_quotes_and_copy_data_verifies_and_restores(app, runner, data_target, pg_server):
    for statement in LOOKALIKES:
        data_target.execute(statement)
    name = store_plain_backup(data_target, pg_server)
    before = data_target.snapshot()

    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", (job.result, log_text(view))
    data_target.execute("DELETE FROM notes")
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))

    assert data_target.snapshot() == before
    assert data_target.rows("notes") == [
        (1, "\\connect shop"),
        (2, "\\."),
        (3, "DROP DATABASE x;"),
        (4, "; DROP DATABASE x;"),
    ]
    with psycopg.connect(data_target.url) as conn:
        assert conn.execute("SELECT digits('123'), digits('12a'), answer()").fetchone() == (True, False, 42)
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (1,)


CRAFTED = {
    "a DROP after a statement": 'SELECT 1; DROP DATABASE "{live}" WITH (FORCE);\n',
    "a meta-command after a statement": 'SELECT 1; \\connect "{live}"\nDROP TABLE orders;\n',
    "a role changed": "/* harmless */ ALTER ROLE CURRENT_USER CONNECTION LIMIT 0;\n",
    # psql (like the server) ends a -- comment at a carriage return, not only at the line's end
    "a role changed after a comment's carriage return": "-- harmless\rALTER ROLE CURRENT_USER CONNECTION LIMIT 0;\n",
    # psql drops the rest of a line after a NUL byte: the guard's quotes and COPY data's end are not psql's then
    "a role changed behind a NUL": "SELECT '\x00';\n'; ALTER ROLE CURRENT_USER CONNECTION LIMIT 0; --'\n;\n",
    # (public.orders: the dump empties search_path, and a COPY psql refuses would end the fill before the guard's turn)
    "a role changed after COPY data with a NUL": "COPY public.orders FROM stdin;\n99\t1\t1\x00\n\\.\n'\n\\.\n"
    "ALTER ROLE CURRENT_USER CONNECTION LIMIT 0;\n-- '\n;\n",
}


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
@pytest.mark.parametrize("crafted", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_plain_backup_is_refused_at_verify_and_at_restore_and_live_is_intact(
    app, runner, data_target, pg_server, crafted
):
    live = data_target.url.rsplit("/", 1)[1]
    name = store_plain_backup(data_target, pg_server, crafted.format(live=live).encode())
    data_target.execute("DELETE FROM orders WHERE id > 5")  # what a restore would bring back
    before = data_target.snapshot()
    pid = app_pid(app, data_target)

    for level in ("quick", "restore-test"):
        job, view = run(app, "verify_backup", data_target.name, backup=name, level=level)
        assert job.state == "failed" and job.verification == "failed", (level, log_text(view))
        assert "would act outside the database it is restored into" in job.result, job.result
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert view.steps[0].state == "failed" and view.steps[1].state == "not_run"
    assert "would act outside the database it is restored into" in job.result, job.result
    # and the scratch fill guards on its own, whatever the checks before it found
    with pytest.raises(RestoreFailed) as caught:
        scratch_fill(app, data_target, name, f"{live}_guarded")
    assert "sqlguard exited with status 3" in caught.value.message and "refused at line" in caught.value.message
    assert "made without --create/--clean" in caught.value.fix

    assert live in data_target.databases() and data_target.snapshot() == before
    assert copies(data_target) == []
    assert app_pid(app, data_target) == pid
    with psycopg.connect(data_target.url) as conn:  # the role is as it was
        assert conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user").fetchone() == (-1,)


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_the_scratch_is_filled_in_one_transaction(app, runner, data_target, pg_server):
    """What the guard lets through still cannot run outside a transaction: psql fills with --single-transaction."""
    live = data_target.url.rsplit("/", 1)[1]
    name = store_plain_backup(data_target, pg_server, b"VACUUM;\n")
    with pytest.raises(RestoreFailed) as caught:
        scratch_fill(app, data_target, name, f"{live}_one_transaction")
    assert "psql exited" in caught.value.message
    assert "cannot run inside a transaction block" in caught.value.message
    assert copies(data_target) == []


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_real_dump_with_large_objects_fills_the_scratch_in_one_transaction_and_restores_them(
    app, runner, data_target, pg_server
):
    """pg_dump writes the large objects inside its own BEGIN; … COMMIT;: psql's one transaction holds to the end."""
    data_target.execute("CREATE TABLE doc (id integer PRIMARY KEY, body oid)")
    data_target.execute("INSERT INTO doc VALUES (1, lo_from_bytea(0, 'a large object'::bytea))")
    data_target.execute("INSERT INTO doc VALUES (2, lo_from_bytea(0, '\\x00ff'::bytea))")
    live = data_target.url.rsplit("/", 1)[1]

    # after the dump's COMMIT, what cannot run in a transaction is still refused by the server
    name = store_plain_backup(data_target, pg_server, b"VACUUM;\n")
    with pytest.raises(RestoreFailed) as caught:
        scratch_fill(app, data_target, name, f"{live}_one_transaction")
    assert "VACUUM cannot run inside a transaction block" in caught.value.message, caught.value.message
    assert copies(data_target) == []

    name = store_plain_backup(data_target, pg_server)
    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", (job.result, log_text(view))
    data_target.execute("SELECT lo_unlink(body) FROM doc")
    data_target.execute("DELETE FROM doc")
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert "transaction in progress" not in log_text(view)  # psql's warnings of a BEGIN or COMMIT out of place
    with psycopg.connect(data_target.url) as conn:
        found = conn.execute("SELECT id, lo_get(body) FROM doc ORDER BY id").fetchall()
    assert found == [(1, b"a large object"), (2, b"\x00\xff")]


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_commit_hidden_behind_a_carriage_return_cannot_end_the_one_transaction(app, runner, data_target, pg_server):
    """`\\rCOMMIT;` passed as a comment would still run: psql's -- comment ends at the carriage return."""
    live = data_target.url.rsplit("/", 1)[1]
    name = store_plain_backup(data_target, pg_server, b"BEGIN;\n\rCOMMIT;\nVACUUM;\n")
    with pytest.raises(RestoreFailed) as caught:
        scratch_fill(app, data_target, name, f"{live}_one_transaction")
    assert "sqlguard exited with status 3" in caught.value.message, caught.value.message
    assert "a transaction statement not as pg_dump writes it" in caught.value.message
    assert copies(data_target) == []


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_backslash_a_client_encoding_makes_part_of_a_character_cannot_end_a_string_early(
    app, runner, data_target, pg_server
):
    """Under SJIS psql reads 0x95 0x5C as one character: the guard's E'…' would go on where psql's ended."""
    live = data_target.url.rsplit("/", 1)[1]
    crafted = b"SET client_encoding = 'SJIS';\nSELECT E'\x95\\';ALTER ROLE CURRENT_USER CONNECTION LIMIT 0;--'\n;\n"
    name = store_plain_backup(data_target, pg_server, crafted)
    try:
        with pytest.raises(RestoreFailed) as caught:
            scratch_fill(app, data_target, name, f"{live}_encoding")
        assert "sqlguard exited with status 3" in caught.value.message, caught.value.message
        assert "depends on client_encoding" in caught.value.message
        assert copies(data_target) == []
        with psycopg.connect(data_target.url) as conn:  # the role is as it was
            assert conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user").fetchone() == (-1,)
    finally:
        data_target.execute("ALTER ROLE CURRENT_USER CONNECTION LIMIT -1")


def test_statements_pass_once_they_end_and_copy_data_at_once_nothing_waits_for_the_end():
    """Dumps can be gigabytes: what is passed on never waits for the rest of the stream."""
    out = io.BytesIO()

    def source():
        yield b"CREATE TABLE a (id int);\n"
        yield b"CREATE TABLE b\n"
        assert out.getvalue() == b"CREATE TABLE a (id int);\n"  # b is held until its end is seen
        yield b"  (id int);\nCOPY a (id) FROM stdin;\n"
        yield b"1\n"
        assert out.getvalue().endswith(b"FROM stdin;\n1\n")
        yield b"\\.\n"

    assert guard(source(), out) is None


# --- the guard's statements are psql's: what psql runs as a statement, the guard checked as one ----------

P = "CREATE TABLE pwned"
AS_PSQL_READS = [
    f"SELECT 'a; {P}();';",
    f"SELECT E'it\\'s; {P}(); --';",
    f"SELECT $$ ; {P}(); $$;",
    f"SELECT $a$ $$ ; {P}(); $a$;",
    f"SELECT 1 /* /* */ ; {P}(); */;",
    f'SELECT 1 AS "a; {P}();";',
    f"SELECT 'a'\n'; {P}(); --';",
    f"SELECT e'\\\\'' ; {P}(); --';",
    f"SELECT E'a'\n'\\\\'; {P}();",
    f"SELECT (1; {P}(); 2);\n;",
    f"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; {P}(); END;",
    f"CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; {P}();",
    f"CREATE TABLE t (x text); COPY t FROM stdin;\n{P}_data();\n\\.\n{P}_after();",
    f"SELECT x$$ FROM (SELECT 1 AS x$$) s; {P}();",  # noqa: S608 - the statements are the test
    f"SELECT $_$ ' $_$; {P}();",
    f"SELECT 'a' -- '\n; {P}();",
    f'SELECT "a""; {P}_no()"; {P}();',
    f"SELECT n'a\\\\'; {P}();",
    f"SELECT 1; -- a comment psql ends at the carriage return\r{P}();",
]


@pytest.mark.parametrize("sql", AS_PSQL_READS)
def test_the_statements_the_guard_checks_are_the_ones_psql_runs(sql, pg_server, monkeypatch):
    checked = []

    def spy(words):
        checked.append(words)
        return statement_refusal(words)

    statement_refusal = sqlguard.statement_refusal
    monkeypatch.setattr(sqlguard, "statement_refusal", spy)
    assert guard(io.BytesIO(sql.encode() + b"\n"), io.BytesIO()) is None
    seen = {w[2].decode() for w in checked if w[:2] == [b"create", b"table"] and w[2].startswith(b"pwned")}

    url = pg_server.create_database(f"guard_{uuid.uuid4().hex[:8]}")
    psql = [str(pg_server.bin / "psql"), "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=0", "--dbname", url]
    subprocess.run(psql, input=sql.encode() + b"\n", capture_output=True, check=True)
    with psycopg.connect(url) as conn:
        made = {row[0] for row in conn.execute("SELECT relname FROM pg_class WHERE relname LIKE 'pwned%'")}
    assert made == seen, (made, seen)


def test_a_statement_that_never_ends_is_not_held_without_bound(monkeypatch):
    monkeypatch.setattr(sqlguard, "HELD_MAX", 1 << 20)
    sql = b"CREATE TABLE a (id int);\nSELECT $$\n" + (b"x" * 999 + b"\n") * 2000
    out = io.BytesIO()
    found = guard(io.BytesIO(sql), out)
    assert found is not None and found[:2] == (2, "a statement over 1 MB (no dump has one)")
    assert out.getvalue() == b"CREATE TABLE a (id int);\n"


OWNED = b"""CREATE TABLE public.t (id integer);
ALTER TABLE public.t OWNER TO shop_owner;
ALTER FUNCTION public.f(integer, text)
    OWNER TO "Shop Owner";
ALTER DEFAULT PRIVILEGES FOR ROLE shop_owner IN SCHEMA public GRANT SELECT ON TABLES TO reader;
ALTER TABLE public.t RENAME COLUMN owner TO boss;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader;
SELECT 1; ALTER TABLE public.t OWNER TO shop_owner;
GRANT SELECT ON TABLE public.t TO reader;
"""


def test_asked_to_the_guard_leaves_out_only_what_the_owner_alone_may_run():
    """A restore test's copy filled as Rewind's own user: OWNER TO and FOR ROLE default privileges go, as comments."""
    out = io.BytesIO()
    assert guard(io.BytesIO(OWNED), out) is None
    assert out.getvalue() == OWNED  # not asked: unchanged

    out = io.BytesIO()
    assert guard(io.BytesIO(OWNED), out, leave_out_ownership=True) is None
    lines = OWNED.splitlines(keepends=True)
    assert out.getvalue().splitlines(keepends=True) == [
        lines[0],
        sqlguard.LEFT_OUT,  # ALTER TABLE … OWNER TO
        sqlguard.LEFT_OUT,  # the function's, over two lines, to a quoted role
        sqlguard.LEFT_OUT,  # default privileges FOR ROLE
        lines[5],  # a RENAME of a column called owner
        lines[6],  # default privileges of the user that runs it
        lines[7],  # not alone on its line: passed as it is (psql says what it says)
        lines[8],
    ]


def test_asked_to_leave_out_ownership_the_guard_still_refuses_what_reaches_past_the_copy():
    sql = b"ALTER TABLE public.t OWNER TO shop_owner;\nALTER DATABASE shop OWNER TO shop_owner;\n"
    out = io.BytesIO()
    found = guard(io.BytesIO(sql), out, leave_out_ownership=True)
    assert found == (2, "a statement on a whole database", b"ALTER DATABASE shop OWNER TO shop_owner;\n")
    assert b"DATABASE" not in out.getvalue()


def test_leaving_a_statement_out_never_leaves_out_the_start_or_end_of_a_comment():
    """A comment opened after a statement left out would be dropped with it: psql would then run as SQL what the
    guard let through as comment. Lines that open or close a block comment pass as they are (and psql says what it
    says of the OWNER TO), so psql and the guard keep reading the stream alike."""
    hidden = b"ALTER TABLE public.t OWNER TO shop_owner; /*\nALTER ROLE postgres PASSWORD 'x';\n*/\n"
    out = io.BytesIO()
    assert guard(io.BytesIO(hidden), out, leave_out_ownership=True) is None
    assert out.getvalue() == hidden, "passed whole, so psql reads the ALTER ROLE inside the comment, as the guard did"

    closing = b"/* a comment\n*/ ALTER TABLE public.t OWNER TO shop_owner;\nCREATE TABLE public.u (id integer);\n"
    out = io.BytesIO()
    assert guard(io.BytesIO(closing), out, leave_out_ownership=True) is None
    assert out.getvalue() == closing, "the line that closes the comment is psql's too"


# pg_dump's own line for default privileges of a few kinds on tables: 18 top-level words
MANY_WORDS = (
    b"ALTER DEFAULT PRIVILEGES FOR ROLE shop_owner IN SCHEMA public GRANT SELECT,INSERT,UPDATE,DELETE ON TABLES "
    b"TO shop_app;\n"
)


def test_default_privileges_for_role_of_many_words_are_left_out_too():
    """Only the first four words say it is one: its length must not keep it in (psql would fail the fill)."""
    out = io.BytesIO()
    assert guard(io.BytesIO(MANY_WORDS), out, leave_out_ownership=True) is None
    assert out.getvalue() == sqlguard.LEFT_OUT
