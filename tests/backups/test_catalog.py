"""The catalog, the OpenPGP envelope check and the database adapter's pieces, on real files, gpg and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import psycopg
import pytest

from app.backups.catalog import Catalog, CatalogError, manifest_path
from app.backups.status import freshness
from app.targets import openpgp
from app.targets.dbadmin import DatabaseError, PgUrl, Postgres
from app.targets.environment import inherited_env
from tests.backups.conftest import RECIPIENT


def encrypted(home, data: bytes, recipient: str = RECIPIENT) -> bytes:
    out = io.BytesIO()
    home.encrypt(data, out, [recipient])
    return out.getvalue()


def test_foreign_backups_are_listed_with_what_their_name_says(tmp_path):
    (tmp_path / "backup_20240102_030405.sql.gpg").write_bytes(b"x" * 10)
    (tmp_path / "backup_20240101_000000.sql.gpg").write_bytes(b"y")
    (tmp_path / "notes.txt").write_text("not a backup")
    (tmp_path / ".staging_x.dump.gpg.partial").write_bytes(b"half")
    found = Catalog(tmp_path).backups()
    assert [b.id for b in found] == ["backup_20240102_030405.sql.gpg", "backup_20240101_000000.sql.gpg"]
    newest = found[0]
    assert newest.foreign and newest.format == "plain" and newest.size == 10
    assert newest.time.isoformat() == "2024-01-02T03:04:05+00:00"
    assert newest.state == "unverified" and newest.sha256 is None


def test_a_manifest_beside_the_file_is_read_and_verification_recorded(tmp_path):
    path = tmp_path / "staging_20240101_000000.dump.gpg"
    path.write_bytes(b"data")
    manifest_path(path).write_text(
        json.dumps({"file": path.name, "time": "2024-01-01T00:00:00+00:00", "format": "custom", "made_by": "rewind"})
    )
    catalog = Catalog(tmp_path)
    backup = catalog.get(path.name)
    assert not backup.foreign and backup.format == "custom"
    catalog.record_verification(backup, how="quick", ok=True, detail="fine", job_id=7)
    again = catalog.get(path.name)
    assert again.state == "verified" and again.verified["job_id"] == 7
    assert catalog.newest_verified().id == path.name
    catalog.record_verification(again, how="quick", ok=False, detail="bad", job_id=8)
    assert catalog.get(path.name).state == "failed" and catalog.newest_verified() is None


def test_a_backup_whose_latest_restore_test_failed_is_not_the_last_restore_tested(tmp_path):
    (tmp_path / "shop_20260101_000000.dump.gpg").write_bytes(b"\x85x")
    (tmp_path / "shop_20260102_000000.dump.gpg").write_bytes(b"\x85y")
    catalog = Catalog(tmp_path)
    older, newer = (catalog.get(f"shop_2026010{d}_000000.dump.gpg") for d in (1, 2))
    older = catalog.record_verification(older, how="restore-test", ok=True, detail="restores", job_id=1)
    newer = catalog.record_verification(newer, how="restore-test", ok=True, detail="restores", job_id=2)
    assert freshness(catalog.backups(), None).last_restore_tested.id == newer.id

    catalog.record_verification(newer, how="restore-test", ok=False, detail="lacks table user", job_id=3)
    fresh = freshness(catalog.backups(), None)
    assert fresh.last_restore_tested.id == older.id  # the one whose latest restore test passed
    assert fresh.newest_verified.id == older.id

    catalog.record_verification(catalog.get(older.id), how="quick", ok=False, detail="checksum differs", job_id=4)
    assert freshness(catalog.backups(), None).last_restore_tested is None  # its file no longer checks out


def test_ids_outside_the_folder_are_refused(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    outside = tmp_path / "secret.dump.gpg"
    outside.write_bytes(b"x")
    os.symlink(outside, folder / "link.dump.gpg")
    (folder / "sub.gpg").mkdir()
    catalog = Catalog(folder)
    for bad in ("../secret.dump.gpg", str(outside), "link.dump.gpg", "sub.gpg", "missing.gpg", ".x.gpg", "", "a/b.gpg"):
        with pytest.raises(CatalogError):
            catalog.get(bad)
    assert [b.id for b in catalog.backups()] == []  # neither the link nor the folder is listed


def test_envelope_names_the_recipients_key_and_refuses_cleartext(tmp_path, gpg_homes):
    ours, theirs = gpg_homes
    path = tmp_path / "b.gpg"
    path.write_bytes(encrypted(ours, b"hello"))
    envelope = openpgp.read_envelope(path)
    ids = openpgp.encryption_key_ids(ours.home, [RECIPIENT], ours.env)[RECIPIENT]
    assert set(envelope.key_ids) & ids
    path.write_bytes(encrypted(theirs, b"hello", "stranger@example.invalid"))
    assert not set(openpgp.read_envelope(path).key_ids) & ids
    for cleartext in (b"-- PostgreSQL database dump\n", b"PGDMP\x01\x0e", b"SQLite format 3\x00"):
        path.write_bytes(cleartext)
        with pytest.raises(openpgp.NotEncrypted):
            openpgp.read_envelope(path)
    path.write_bytes(b"")
    with pytest.raises(openpgp.NotEncrypted, match="empty"):
        openpgp.read_envelope(path)


def test_the_password_goes_to_the_environment_never_to_argv():
    url = PgUrl.parse("postgresql://app:s3cr%40t@db.internal:6543/shop?sslmode=require")
    argv = url.tool_args()
    assert "s3cr@t" not in " ".join(argv)
    assert argv == ["--host", "db.internal", "--port", "6543", "--username", "app", "--dbname", "shop"]
    env = url.tool_env({"PATH": "/usr/bin"})
    assert env["PGPASSWORD"] == "s3cr@t" and env["PGSSLMODE"] == "require" and env["PATH"] == "/usr/bin"


def test_pg_tools_must_be_at_least_the_servers_version(pg_server, tmp_path):
    old = tmp_path / "old-bin"
    old.mkdir()
    tool = old / "pg_dump"
    tool.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    tool.chmod(0o755)
    db = Postgres(pg_server.url(), inherited_env(), pg_bin=old)
    major, _ = db.server_version()
    with pytest.raises(DatabaseError) as caught:
        db.tool("pg_dump")
    assert f"pg_dump {major} or newer is needed" in caught.value.message
    assert "9 (" in caught.value.message and f"postgresql-client-{major}" in caught.value.fix
    fitting = Postgres(pg_server.url(), inherited_env()).tool("pg_dump")
    assert f"/postgresql/{major}/" in fitting or fitting.endswith("pg_dump")


def test_a_pg_tool_that_will_not_tell_its_version_says_how_it_failed(pg_server, tmp_path):
    folder = tmp_path / "wrapped-bin"
    folder.mkdir()
    for name, body in (("pg_dump", "exit 1"), ("psql", "kill -KILL $$"), ("pg_restore", "echo 'usage: wrapper'")):
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    db = Postgres(pg_server.url(), inherited_env(), pg_bin=folder)
    said = {}
    for name in ("pg_dump", "psql", "pg_restore"):
        with pytest.raises(DatabaseError) as caught:
            db.tool(name)
        said[name] = caught.value.message
    assert (
        f"found in database.pg_bin = {folder}: none; `{folder}/pg_dump --version` exited with status 1 and "
        "printed nothing" in said["pg_dump"]
    ), said["pg_dump"]
    assert f"`{folder}/psql --version` was killed by SIGKILL and printed nothing" in said["psql"], said["psql"]
    assert f"`{folder}/pg_restore --version` did not name a PostgreSQL version: usage: wrapper" in said["pg_restore"]


def test_database_admin_quotes_names_and_renames_busy_databases(pg_server):
    name = f"odd_{uuid.uuid4().hex[:6]}"
    url = pg_server.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "user" (id int)')
        conn.execute('INSERT INTO "user" VALUES (1), (2)')
    db = Postgres(url, inherited_env())
    assert db.counts(["user", "missing"]) == {"user": 2, "missing": None}
    assert db.revision() is None
    holder = psycopg.connect(url)  # a session the rename must end
    try:
        db.rename(name, name + "_moved")
        assert db.exists(name + "_moved") and not db.exists(name)
        with pytest.raises(psycopg.OperationalError):  # its session was ended for the rename
            holder.execute("SELECT 1")
    finally:
        holder.close()
    db.drop(name + "_moved")
    assert not db.exists(name + "_moved")
    with pytest.raises(DatabaseError, match="longer than"):
        db.create("x" * 64)


def test_a_survey_reads_counts_newer_rows_and_revision_in_one_visit(pg_server):
    from datetime import UTC, datetime

    name = f"survey_{uuid.uuid4().hex[:6]}"
    url = pg_server.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "user" (id int, created_at timestamptz, updated_at timestamp)')
        conn.execute("CREATE TABLE orders (id int, created_at timestamp)")  # no time zone: compared as UTC wall time
        conn.execute("CREATE TABLE notes (id int, updated_at text)")  # not a time: not read as one
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32))")
        conn.execute("INSERT INTO alembic_version VALUES ('ab12')")
        # 1: old, never changed; 2: added after; 3: added before, changed after (a restore rolls the change back)
        conn.execute(
            "INSERT INTO \"user\" VALUES (1, '2020-01-01 00:00+00', NULL), (2, '2030-01-01 00:00+00', NULL), "
            "(3, '2020-01-01 00:00+00', '2030-01-01 00:00'), (4, '2020-01-01 00:00+00', '2020-02-01 00:00')"
        )
        conn.execute("INSERT INTO orders VALUES (1, '2020-01-01 00:00'), (2, '2030-01-01'), (3, '2031-01-01')")
        conn.execute("INSERT INTO notes VALUES (1, '2030-01-01')")
    db = Postgres(url, inherited_env())
    since = datetime(2025, 1, 1, tzinfo=UTC)
    found = db.survey(["user", "orders", "notes", "missing"], since)
    assert found.counts == {"user": 4, "orders": 3, "notes": 1, "missing": None}
    assert found.newer == {"user": 2, "orders": 2}  # notes has no time column, missing is not there
    assert found.revision == "ab12"
    plain = db.survey(["user"])
    assert (plain.counts, plain.newer, plain.revision) == ({"user": 4}, {}, "ab12")
    db.drop(name)


def test_a_column_without_a_zone_is_compared_as_utc_whatever_the_server_s_zone(pg_server):
    """The application stores naive UTC; the server's zone is Kolkata's: a row a minute after the moment is newer."""
    from datetime import UTC, datetime, timedelta

    name = f"zone_{uuid.uuid4().hex[:6]}"
    url = pg_server.create_database(name)
    since = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET timezone = 'Asia/Kolkata'")
        conn.execute("CREATE TABLE orders (id int, created_at timestamp)")
        conn.execute(
            "INSERT INTO orders VALUES (1, %s), (2, %s)",
            ((since + timedelta(minutes=1)).replace(tzinfo=None), (since - timedelta(minutes=1)).replace(tzinfo=None)),
        )
    found = Postgres(url, inherited_env()).survey(["orders"], since)
    assert found.newer == {"orders": 1}
    Postgres(url, inherited_env()).drop(name)


def test_sqlite_adapter_counts_and_copies(tmp_path):
    import sqlite3

    from app.targets.dbadmin import Sqlite

    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE "user" (id int)')
        conn.execute('INSERT INTO "user" VALUES (1)')
    db = Sqlite(f"sqlite:///{path}")
    db.copy_to(tmp_path / "b.db")
    assert db.counts(["user", "nope"], Path(tmp_path / "b.db")) == {"user": 1, "nope": None}
    assert db.integrity(tmp_path / "b.db") == "ok"


def test_a_sqlite_survey_counts_rows_added_or_changed_after_a_moment(tmp_path):
    import sqlite3
    from datetime import UTC, datetime

    from app.targets.dbadmin import Sqlite

    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE "user" (id int, created_at datetime, updated_at datetime)')
        conn.execute("CREATE TABLE orders (id int, modified_at datetime)")
        conn.execute("CREATE TABLE notes (id int)")
        conn.executemany(
            'INSERT INTO "user" VALUES (?, ?, ?)',
            [
                (1, "2020-01-01 00:00:00", None),  # old, never changed
                (2, "2030-01-01 00:00:00", None),  # added after
                (3, "2020-01-01 00:00:00", "2030-01-01 00:00:00.5"),  # changed after: the restore rolls it back
            ],
        )
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(1, "2019-01-01 00:00:00"), (2, "2031-01-01 00:00:00")])
    found = Sqlite(f"sqlite:///{path}").survey(["user", "orders", "notes"], datetime(2025, 1, 1, tzinfo=UTC))
    assert found.counts == {"user": 3, "orders": 2, "notes": 0}
    assert found.newer == {"user": 2, "orders": 1}


def test_sqlite_snapshot_is_the_database_file_s_bytes(tmp_path):
    import sqlite3

    from app.targets.dbadmin import Sqlite

    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE "user" (id int)')
        conn.executemany('INSERT INTO "user" VALUES (?)', [(i,) for i in range(500)])
    (tmp_path / "b.db").write_bytes(Sqlite(f"sqlite:///{path}").snapshot())
    assert Sqlite(f"sqlite:///{tmp_path / 'b.db'}").counts(["user"], tmp_path / "b.db") == {"user": 500}


def test_an_encrypter_that_stops_reading_fails_the_sqlite_backup_instead_of_hanging(tmp_path):
    """The database is far bigger than a pipe holds; the stage quits after 10 bytes: the feeding thread
    must end with the broken pipe, and the failure name the stage."""
    import sqlite3
    import threading
    from types import SimpleNamespace

    from app.backups import create
    from app.targets.dbadmin import Sqlite

    path = tmp_path / "big.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,) for _ in range(4000)])
    quits = ["python3", "-c", "import sys; sys.stdin.buffer.read(10); sys.exit(3)"]
    setup = SimpleNamespace(home=SimpleNamespace(env=inherited_env()))
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            with (tmp_path / "out.gpg").open("wb") as out:
                create._dump_sqlite(Sqlite(f"sqlite:///{path}"), quits, setup, None, out)
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the backup hung on a reader that went away"
    (failure,) = outcome
    assert isinstance(failure, create.BackupFailed) and "gpg" in str(failure), failure


def _own(folder: Path, stamp: str, *, verified: bool | None) -> str:
    name = f"shop_{stamp.replace('-', '').replace(':', '').replace('T', '_')[:15]}.dump.gpg"
    (folder / name).write_bytes(b"x")
    manifest = {"file": name, "time": f"{stamp}+00:00", "format": "custom", "made_by": "rewind"}
    if verified is not None:
        manifest["verified"] = {"ok": verified, "how": "quick", "at": f"{stamp}+00:00"}
    manifest_path(folder / name).write_text(json.dumps(manifest))
    return name


def test_retention_keeps_the_last_the_dailies_and_always_the_newest_verified(tmp_path):
    from datetime import UTC, datetime

    from app.backups import retention

    newest = _own(tmp_path, "2024-03-10T12:00:00", verified=False)
    verified = _own(tmp_path, "2024-03-10T06:00:00", verified=True)
    same_day = _own(tmp_path, "2024-03-10T01:00:00", verified=True)
    yesterday = _own(tmp_path, "2024-03-09T23:00:00", verified=True)
    yesterday_early = _own(tmp_path, "2024-03-09T01:00:00", verified=True)
    old = _own(tmp_path, "2024-01-01T00:00:00", verified=True)
    (tmp_path / "backup_20200101_000000.sql.gpg").write_bytes(b"theirs")
    catalog = Catalog(tmp_path)
    now = datetime(2024, 3, 10, 13, tzinfo=UTC)
    doomed = [b.id for b in retention.plan(catalog.backups(), 1, 2, now)]
    assert doomed == [old, yesterday_early, same_day]  # oldest first; never the foreign file
    assert newest not in doomed and verified not in doomed and yesterday not in doomed
    assert retention.plan(catalog.backups(), None, 0, now) == []  # no retention configured: keep all
    for b in retention.plan(catalog.backups(), 1, 0, now):
        retention.delete(catalog, b)
    assert sorted(b.id for b in catalog.backups()) == sorted([newest, verified, "backup_20200101_000000.sql.gpg"])
    assert not manifest_path(tmp_path / old).exists()


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("rpo_minutes = 0", "rpo_minutes"),
        ("keep_last = 0", "keep_last"),
        ("reserve_mb = -1", "reserve_mb"),
        ("keep_copies_hours = 0", "keep_copies_hours"),
        ('test_as_own_user = "yes"', "test_as_own_user"),
    ],
)
def test_backup_keys_are_checked(line, key):
    from app.targets.config import TargetsFileError, parse_targets

    text = f'[targets.a.repo]\npath = "/srv/a"\n[targets.a.backups]\ndir = "/srv/b"\n{line}\n'
    with pytest.raises(TargetsFileError) as caught:
        parse_targets(text, Path("/etc/rewind/targets.toml"), {})
    assert caught.value.key == f"backups.{key}"


def test_documented_backup_keys_parse():
    from app.targets.config import parse_targets

    example = Path(__file__).resolve().parents[2] / "docs" / "targets.example.toml"
    env = {"PRODUCTION_DATABASE_URL": "postgresql://app:x@db/app", "BACKUP_PASSPHRASE": "y"}
    backups = parse_targets(example.read_text(), example, env)["production"].backups
    found = (backups.rpo_minutes, backups.interval_minutes, backups.keep_last, backups.keep_daily_days)
    assert found == (60, 60, 24, 14)
    assert backups.keep_copies_hours == 24
    assert backups.test_as_own_user is False


def test_a_checkpoint_names_its_backup_with_a_time_a_person_reads():
    """In every checkpoint's log lines: minutes in UTC, not an ISO stamp with microseconds and an offset."""
    from app.backups.captures import BACKUP

    value = {"file": "production_20261126_113517-2.dump.gpg", "time": "2026-11-26T11:35:17.717718+00:00"}
    assert BACKUP.describe(value) == "production_20261126_113517-2.dump.gpg (taken 2026-11-26 11:35 UTC)"
    assert BACKUP.describe({"file": None}) == "none"  # said after its label: "newest verified backup: none"


def test_a_damaged_manifest_is_named_not_mislabelled_and_kept_aside_when_recorded_over(tmp_path):
    cut = tmp_path / "shop_20240102_000000.dump.gpg"
    cut.write_bytes(b"\x85x")
    manifest_path(cut).write_text('{"time": "2024-01-02T00:0')  # a write cut short
    bad_time = tmp_path / "shop_20240103_000000.dump.gpg"
    bad_time.write_bytes(b"\x85y")
    manifest_path(bad_time).write_text(json.dumps({"time": "yesterday", "made_by": "rewind"}))
    no_at = tmp_path / "shop_20240101_000000.dump.gpg"
    no_at.write_bytes(b"\x85z")
    record = {"how": "restore-test", "ok": True}  # no "at": the Backups tab's "last restore-tested" read it
    manifest_path(no_at).write_text(
        json.dumps({"time": "2024-01-01T00:00:00+00:00", "made_by": "rewind", "restore_tested": record})
    )
    catalog = Catalog(tmp_path)
    found = catalog.backups()  # a time that is no date used to raise here, a 500 on the tab
    assert [b.id for b in found] == [bad_time.name, cut.name, no_at.name]  # by the time their names say
    assert "restore_tested record without a time" in found[2].manifest_problem
    assert freshness(catalog.backups(), 60).last_restore_tested is None
    assert "is not JSON" in found[1].manifest_problem and "'yesterday'" in found[0].manifest_problem
    assert all(b.foreign and b.state == "unverified" for b in found)  # so retention never deletes them
    catalog.record_verification(found[1], how="quick", ok=True, detail="fine", job_id=3)
    assert catalog.get(cut.name).state == "verified" and catalog.get(cut.name).manifest_problem is None
    assert (tmp_path / f"{cut.name}.json.damaged").read_text() == '{"time": "2024-01-02T00:0'


def test_a_backup_left_unfinished_is_named_once_nothing_has_written_it_for_a_while(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    left = folder / ".shop_20240101_000000.dump.gpg.partial"
    left.write_bytes(b"x" * 2_500_000)
    writing = folder / ".shop_20240102_000000.dump.gpg.partial"
    writing.write_bytes(b"x")
    catalog = Catalog(folder)
    assert catalog.unlisted() == [], "both look like backups being written"
    an_hour_ago = left.stat().st_mtime - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    (unfinished,) = catalog.unlisted()
    assert unfinished.name == left.name and unfinished.reason.startswith("a backup left unfinished (2.4 MiB)")
    assert catalog.stale_partials() == [left] and catalog.backups() == []


def test_files_that_look_like_backups_but_are_not_listed_are_named_with_why(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "real.sql.gpg").write_bytes(b"x")
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "backup_20240101_000000.sql.gpg").write_bytes(b"x")
    (folder / "with space.sql.gpg").write_bytes(b"x")
    (folder / "café.sql.gpg").write_bytes(b"x")
    os.close(os.open(os.fsencode(folder) + b"/latin1_\xe9.sql.gpg", os.O_CREAT | os.O_WRONLY))
    (folder / "in.sql.gpg").symlink_to(folder / "backup_20240101_000000.sql.gpg")
    (folder / "out.sql.gpg").symlink_to(outside / "real.sql.gpg")
    (folder / "dangling.sql.gpg").symlink_to(outside / "gone.sql.gpg")
    (folder / "old.gpg").mkdir()
    (folder / "gone_20240101_000000.dump.gpg.json").write_text('{"time": "2024-01-01T00:00:00+00:00"}')
    (folder / ".shop_20240101_000000.dump.gpg.partial").write_bytes(b"half")  # Rewind's own, being written
    (folder / "notes.txt").write_text("not a backup")
    catalog = Catalog(folder)
    assert [b.id for b in catalog.backups()] == ["backup_20240101_000000.sql.gpg"]
    why = {u.name: u.reason for u in catalog.unlisted()}
    assert set(why) == {
        "with space.sql.gpg",
        "café.sql.gpg",
        "latin1_\\xe9.sql.gpg",
        "in.sql.gpg",
        "out.sql.gpg",
        "dangling.sql.gpg",
        "old.gpg",
        "gone_20240101_000000.dump.gpg.json",
    }
    assert "rename it" in why["with space.sql.gpg"] and "rename it" in why["latin1_\\xe9.sql.gpg"]
    assert "outside the backup folder" in why["out.sql.gpg"] and "another file of this folder" in why["in.sql.gpg"]
    assert "gone" in why["dangling.sql.gpg"] and "a folder" in why["old.gpg"]
    assert "is not in the folder" in why["gone_20240101_000000.dump.gpg.json"]
