"""The guard between gpg and psql: a plain dump may only act inside the database it is restored into."""

from __future__ import annotations

import io
import os

import pytest

from app.backups.sqlguard import REFUSED, guard, guard_stage
from app.targets.command import run_pipeline
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
