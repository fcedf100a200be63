"""Backup, verify, restore and undo on a real database, a real GnuPG home and a real running app."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.audit.store import Actor
from app.backups.catalog import LOCK_FILE, Catalog, manifest_path, sha256_of
from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service, swaps
from app.jobs.engine import current_targets
from app.jobs.events import events_after
from app.jobs.models import Job
from app.jobs.runbook import ParamError
from app.targets.gpg import GpgHome
from tests.backups.conftest import DB_SERVER, RECIPIENT, DataTarget, _fill, serving
from tests.conftest import wait_for
from tests.deployments.test_runbooks import health, log_text, run
from tests.support.sinks import Lines
from tests.support.targets import commit, make_code_target, write_targets_file


def backup_now(app, target) -> str:
    job, view = run(app, "backup", target.name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert job.verification == "passed"
    (made,) = [p for p in target.backup_dir.iterdir() if p.name.endswith(".gpg")]
    return made.name


def app_pid(app, target) -> int | None:
    with app.app_context():
        return current_targets().open(target.name).process().status().pid


def copies(target) -> list[str]:
    if target.engine == "sqlite":
        live = Path(target.url.removeprefix("sqlite:///")).name
        return [f for f in target.files() if f.startswith(live + ".")]
    return [d for d in target.databases() if d.startswith(target.url.rsplit("/", 1)[1] + "_")]


def copy_url(target, name: str) -> str:
    if target.engine == "sqlite":
        return f"sqlite:///{Path(target.url.removeprefix('sqlite:///')).with_name(name)}"
    return target.url.rsplit("/", 1)[0] + "/" + name


def test_backup_is_encrypted_with_a_manifest_and_no_plaintext_left(app, runner, data_target):
    name = backup_now(app, data_target)
    path = data_target.backup_dir / name
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["sha256"] == sha256_of(path)
    assert manifest["recipients"] == [RECIPIENT]
    assert manifest["engine"] == data_target.engine
    assert manifest["counts"] == {"user": 20, "orders": 20}
    assert manifest["revision"] == "ab12cd34ef56"
    assert manifest["verified"]["ok"] is True and manifest["verified"]["how"] == "quick"
    assert path.read_bytes()[:1][0] & 0x80, "an OpenPGP packet, not cleartext"
    assert b"user 1" not in path.read_bytes()
    packets = subprocess.run(
        ["gpg", "--batch", "--homedir", str(data_target.home.home), "--list-packets", str(path)],
        capture_output=True,
        text=True,
        env=data_target.home.env,
        check=True,
    ).stdout
    assert ":literal data packet:" in packets
    # pg_dump's custom format is compressed already, so gpg does not compress it again; an SQLite file it does
    assert (":compressed packet:" in packets) is (data_target.engine == "sqlite")
    # the backup, its manifest, and the lock every manifest change holds: no temporary file left
    assert sorted(p.name for p in data_target.backup_dir.iterdir()) == sorted([name, name + ".json", LOCK_FILE])


def test_restore_round_trip_then_undo(app, runner, data_target):
    stamp = "text" if data_target.engine == "sqlite" else "timestamptz"
    data_target.execute(f'ALTER TABLE "user" ADD COLUMN updated_at {stamp}')
    before = data_target.snapshot()
    name = backup_now(app, data_target)
    data_target.execute('DELETE FROM "user" WHERE id <= 5')
    data_target.execute("UPDATE orders SET total = 0")
    data_target.execute('INSERT INTO "user" VALUES (?, ?, ?, NULL)', (100, "late", "2099-01-01 00:00:00+00"))
    # an old row changed after the backup: the restore rolls the change back, and says so
    data_target.execute(
        'UPDATE "user" SET name = ?, updated_at = ? WHERE id = 6', ("renamed", "2099-01-01 00:00:00+00")
    )
    changed = data_target.snapshot()
    pid = app_pid(app, data_target)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert job.verification == "passed"
    assert data_target.snapshot() == before  # row for row
    assert app_pid(app, data_target) != pid  # stopped and started around the swap
    assert health(data_target.code)[0] == 200
    assert [s.state for s in view.steps] == ["succeeded"] * 8
    # the fill's progress is the backup's bytes the loader has read, measured on the file, ending with all of them
    fill = next(s.index for s in view.steps if s.title == "Restore into a scratch database")
    loader = "pg_restore" if data_target.engine == "postgresql" else "the copy"
    with app.app_context():
        said = [e.payload for e in events_after(job.id, 0) if e.kind == "progress" and e.step == fill]
    assert re.fullmatch(rf"all \d+(\.\d)? (B|KiB|MiB) of the backup read; {loader} finishes", said[-2]["message"]), said
    assert said[-2]["fraction"] == 1.0 and re.search(r"[._]restore_\d{14}$", said[-1]["message"]), said  # the copy
    # live and restored side by side, and the row written after the backup
    assert re.search(r"^table +live +restored +written after the backup$", text, re.M), text
    assert re.search(r"^user +16 +20 +2$", text, re.M), text  # one added, one changed
    assert re.search(r"^orders +20 +20 +unknown$", text, re.M), text
    (pre_name,) = copies(data_target)
    said = "rolls back at least 2 row(s) written to the key tables after the backup (user 2); they stay readable in "
    assert said + pre_name in text, text
    assert "it brings back at least 4 row(s) live no longer has (user 4)" in text  # five deleted, one added
    counted_by_restore = "(restored rows of user, orders: as the restore's index builds counted them)" in text
    assert counted_by_restore == (data_target.engine == "postgresql"), text
    (pre,) = copies(data_target)
    assert "_pre_restore_" in pre or ".pre_restore_" in pre
    assert data_target.snapshot(copy_url(data_target, pre)) == changed  # the replaced database is kept whole
    assert pre in job.result
    with app.app_context():
        checkpoint, _after = db.session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job.id).order_by(Checkpoint.id)
        ).all()  # before anything changed, and what is live after the swap
        assert checkpoint.captures["backup"]["file"] == name  # the newest verified backup, in every checkpoint
    # said as what it is, not as "backup: …", which right after a restore reads as the backup now live
    assert f"\n  newest verified backup: {name} (taken " in text and "\n  backup: " not in text, text

    assert job.result.endswith("— undo puts it back."), job.result
    with app.app_context():  # the swap is marked at the rename, within the job
        assert job.started_at < db.session.get(Job, job.id).swapped_at < job.finished_at
        assert [s.job_id for s in swaps.since(data_target.name)] == [job.id]

    # written to the restored database before the undo: shown before the app stops, kept in the undone copy
    data_target.execute('INSERT INTO "user" VALUES (?, ?, ?, NULL)', (101, "after", "2099-01-01 00:00:00+00"))
    job, view = run(app, "undo_restore", data_target.name, pre_restore=pre)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert [s.title for s in view.steps][2:4] == ["Compare live and the pre-restore copy", "Stop the application"]
    assert re.search(r"^table +live +pre-restore +written since the restore$", text, re.M), text
    assert re.search(r"^user +21 +16 +1$", text, re.M), text
    assert re.search(r"^orders +20 +20 +unknown$", text, re.M), text
    (undone,) = copies(data_target)
    assert "undone" in undone
    assert (
        "takes 1 row(s) written to the key tables since the restore out of the live database; "
        f"they stay readable in {undone}"
    ) in text
    assert data_target.snapshot() == changed
    kept = data_target.snapshot(copy_url(data_target, undone))
    assert kept["orders"] == before["orders"] and kept["user"][:-1] == before["user"] and kept["user"][-1][0] == 101
    assert "undo puts it back" not in job.result, "an undone copy has no undo of its own"
    assert f"kept as {undone} — its rows stay readable there, and “Back up this copy”" in job.result, job.result


def test_a_restore_counts_rows_beyond_the_backup_whatever_their_time_stamps(app, runner, data_target):
    """Rows added after the backup with an older stamp (an import, a clock behind, a demo's made-up times) are not
    'newer' by their time column, but live holding more rows than the backup says they are there to lose."""
    name = backup_now(app, data_target)
    data_target.execute_all(
        [('INSERT INTO "user" VALUES (?, ?, ?)', (200 + i, "imported", "2019-06-01 00:00:00+00")) for i in range(3)]
        + [("INSERT INTO orders VALUES (?, ?, ?)", (300, 1, 5))]
    )
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert re.search(r"^user +23 +20 +3$", text, re.M), text  # none stamped after the backup, three beyond it
    assert re.search(r"^orders +21 +20 +1$", text, re.M), text  # no time column: the count tells
    assert "rolls back at least 4 row(s) written to the key tables after the backup (user 3, orders 1)" in text


def _bad_files(target, good: Path, stranger) -> dict[str, tuple[str, str]]:
    """Backups that must be refused, each with the words its refusal must say."""
    folder = target.backup_dir
    suffix = "dump" if target.engine == "postgresql" else "sqlite"
    manifest = json.loads(manifest_path(good).read_text())
    data = good.read_bytes()
    made = {}

    def own(label: str, content: bytes, *, keep_sum: bool = False) -> str:
        path = folder / f"{target.name}_2001010100000{len(made)}.{suffix}.gpg"
        path.write_bytes(content)
        changed = dict(manifest, file=path.name)
        if not keep_sum:
            changed.pop("verified", None)  # changed after it was verified (tampered) keeps its old verdict
        if not keep_sum:
            changed["sha256"] = sha256_of(path)
        manifest_path(path).write_text(json.dumps(changed))
        return path.name

    def foreign(content: bytes) -> str:
        path = folder / f"backup_2000010{len(made)}_000000.{suffix}.gpg"
        path.write_bytes(content)
        return path.name

    middle = len(data) // 2
    flipped = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
    made["truncated"] = (own("truncated", data[:middle]), "does not decrypt")
    made["corrupt"] = (own("corrupt", flipped), "does not decrypt")
    made["tampered"] = (own("tampered", flipped, keep_sum=True), "does not match its recorded SHA-256")
    made["wrong key"] = (foreign(stranger_encrypt(stranger, b"-- not for you\n")), "is not encrypted to")
    made["empty"] = (foreign(b""), "is empty")
    made["cleartext"] = (foreign(b"-- PostgreSQL database dump\nCREATE TABLE t (id int);\n"), "not OpenPGP-encrypted")
    return made


def stranger_encrypt(home, data: bytes) -> bytes:
    import io

    out = io.BytesIO()
    home.encrypt(data, out, ["stranger@example.invalid"])
    return out.getvalue()


def test_bad_backups_are_refused_and_change_nothing(app, runner, data_target, gpg_homes):
    good = data_target.backup_dir / backup_now(app, data_target)
    before = data_target.snapshot()
    pid = app_pid(app, data_target)
    for case, (name, words) in _bad_files(data_target, good, gpg_homes[1]).items():
        job, view = run(app, "restore_backup", data_target.name, backup=name)
        assert job.state == "failed", case
        assert words in job.result, (case, job.result)
        assert view.steps[0].state == "failed" and view.steps[1].state == "not_run", case
        assert data_target.snapshot() == before, case
        assert copies(data_target) == [], case
        assert app_pid(app, data_target) == pid, case
        # what the restore's check found is on record: no page calls the file verified any longer (QA: a tampered
        # one kept its old "verified", and stayed the newest verified backup, until a separate verify)
        found = Catalog(data_target.backup_dir).get(name)
        assert found.state == "failed" and words in found.verified["detail"], (case, found.verified)
        assert found.verified["job_id"] == job.id, case
        verified, _ = run(app, "verify_backup", data_target.name, backup=name)
        assert verified.state == "failed" and verified.verification == "failed", case
    assert health(data_target.code)[0] == 200


def test_a_failure_while_filling_the_scratch_leaves_live_and_app_untouched(app, runner, data_target, gpg_homes):
    """A backup that decrypts but cannot be restored: the scratch is dropped, live and the app never touched."""
    ours = gpg_homes[0]
    suffix = "sql" if data_target.engine == "postgresql" else "sqlite"
    import io

    out = io.BytesIO()
    ours.encrypt(b"CREATE TABLE broken (;\n" if suffix == "sql" else b"not a database at all" * 100, out, [RECIPIENT])
    name = f"backup_20200101_000000.{suffix}.gpg"
    (data_target.backup_dir).mkdir(exist_ok=True)
    (data_target.backup_dir / name).write_bytes(out.getvalue())
    before = data_target.snapshot()
    pid = app_pid(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    failed = next(s for s in view.steps if s.state == "failed")
    assert failed.title in ("Restore into a scratch database", "Compare live and restored"), failed.title
    assert "sqlguard" not in job.result, job.result  # psql's own error is the one named, not the guard's broken pipe
    assert [s.state for s in view.steps[4:]] == ["not_run"] * 4  # never stopped, never swapped
    assert data_target.snapshot() == before
    assert copies(data_target) == []
    assert app_pid(app, data_target) == pid


def test_names_outside_the_backup_folder_are_refused(app, data_target, tmp_path):
    book = runbooks.get("restore_backup")
    data_target.backup_dir.mkdir(exist_ok=True)
    outside = tmp_path / "elsewhere.dump.gpg"
    outside.write_bytes(b"\x85\x01")
    os.symlink(outside, data_target.backup_dir / "link.dump.gpg")
    with app.app_context():
        for bad in ("../elsewhere.dump.gpg", str(outside), "link.dump.gpg", "missing.dump.gpg", ".hidden.gpg"):
            with pytest.raises(ParamError) as caught:
                book.parse_params({"backup": bad}, data_target.name)
            assert caught.value.param == "backup", bad


def test_restore_waits_for_no_one_while_another_job_runs(app, data_target):
    """The target is busy: the restore is refused at once (BusyTarget), nothing queued."""
    data_target.backup_dir.mkdir(exist_ok=True)
    shutil.copy(__file__, data_target.backup_dir / "backup_20200101_000000.sql.gpg")
    with app.app_context():
        sleeper = runbooks.get("test.sleep")
        busy = service.enqueue(sleeper, data_target.name, {"seconds": 1}, Actor(None, "oncall"))
        book = runbooks.get("restore_backup")
        params = book.parse_params({"backup": "backup_20200101_000000.sql.gpg"}, data_target.name)
        with pytest.raises(service.BusyTarget) as caught:
            service.enqueue(book, data_target.name, params, Actor(None, "oncall"))
        assert f"job #{busy.id}" in str(caught.value)
        service.cancel(busy, Actor(None, "oncall"))


def test_not_enough_disk_space_is_refused_before_the_scratch(app, runner, data_target):
    name = backup_now(app, data_target)
    before = data_target.snapshot()
    free = shutil.disk_usage(data_target.backup_dir).free // (1024 * 1024)
    write_targets_file(app, data_target.toml(reserve_mb=free * 1000))
    job, _ = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed"
    assert "not enough disk space" in job.result, job.result
    assert data_target.snapshot() == before
    assert copies(data_target) == []


def test_protected_target_needs_its_name_typed(app, data_target):
    write_targets_file(app, data_target.toml(protected=True))
    data_target.backup_dir.mkdir(exist_ok=True)
    (data_target.backup_dir / "backup_20200101_000000.sql.gpg").write_bytes(b"x")
    book = runbooks.get("restore_backup")
    with app.app_context():
        with pytest.raises(ParamError) as caught:
            book.parse_params({"backup": "backup_20200101_000000.sql.gpg"}, data_target.name)
        assert caught.value.param == "confirm"
        book.parse_params({"backup": "backup_20200101_000000.sql.gpg", "confirm": data_target.name}, data_target.name)


def test_unhealthy_after_the_swap_swaps_back(app, runner, data_target):
    """The restored copy makes the app fail its health check: the previous database goes back, the app serves."""
    data_target.execute("CREATE TABLE broken_marker (id integer)")
    name = backup_now(app, data_target)
    data_target.execute("DROP TABLE broken_marker")
    commit(data_target.code.repo, "Serve from the database", **{"server.py": DB_SERVER.format(url=data_target.url)})
    with app.app_context():
        target = current_targets().open(data_target.name)
        target.process().restart()
        assert target.health().wait_healthy().ok
    before = data_target.snapshot()
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert job.verification == "failed"
    assert "Swapped back" in job.result and "healthy again" in job.result, job.result
    # What was already done ends with the swap back, not with the rename it undid (read last, the restored copy live).
    done = job.result.split("Already done before that:")[1]
    assert done.rstrip(".").endswith(f"is the previous database again, the restored copy is {copies(data_target)[0]})")
    assert "renamed them back" in done, done
    assert data_target.snapshot() == before
    with app.app_context():  # swapped back: live is what it was, so no swap counts
        assert db.session.get(Job, job.id).swapped_at is None and swaps.since(data_target.name) == []
        # what a kill during the last health wait would leave: the app started, not "stopped" (review)
        assert db.session.get(Job, job.id).standing.endswith(f"{data_target.name} started again, not yet verified")
    assert health(data_target.code) == (200, {"status": "healthy"})
    (kept,) = copies(data_target)
    assert re.search(r"[._]restore_\d{14}$", kept) and kept in job.result


def _serving_from_the_database(app, data_target) -> None:
    commit(data_target.code.repo, "Serve from the database", **{"server.py": DB_SERVER.format(url=data_target.url)})
    with app.app_context():
        target = current_targets().open(data_target.name)
        target.process().restart()
        wait_for(lambda: target.health().probe().status is not None)  # it answers, healthy or not


def test_an_app_unhealthy_before_the_restore_is_said_first_and_again_when_it_swaps_back(app, runner, data_target):
    """QA: an app already failing for another cause fails the restore's verification too. The log says so before
    anything changes, and the swap back says it was not healthy before either: the cause is elsewhere."""
    data_target.execute("CREATE TABLE broken_marker (id integer)")  # both live and the backup make it fail
    name = backup_now(app, data_target)
    _serving_from_the_database(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    text = log_text(view)
    said = f"{data_target.name} is not healthy before the restore (status 500"
    assert said in text and text.index(said) < text.index("into the scratch database"), text
    assert "healthy again" not in job.result and "not healthy either" in job.result, job.result
    assert "it was not healthy before the restore either (status 500" in job.result, job.result


def test_a_restore_that_makes_an_unhealthy_app_healthy_goes_through(app, runner, data_target):
    """The restore is what fixes it (bad rows in live): said unhealthy before, healthy after, no swap back."""
    name = backup_now(app, data_target)
    data_target.execute("CREATE TABLE broken_marker (id integer)")
    _serving_from_the_database(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert f"{data_target.name} is not healthy before the restore" in log_text(view)
    assert health(data_target.code) == (200, {"status": "healthy"})


def test_restore_test_restores_counts_and_drops_its_copy(app, runner, data_target):
    name = backup_now(app, data_target)
    before = data_target.snapshot()
    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded", log_text(view)
    assert "user 20, orders 20; revision ab12cd34ef56" in job.verification_detail
    # QA: the log stopped at "restoring … into the scratch copy …", as if the test never ended
    assert "  ✓ restores (user 20, orders 20; revision ab12cd34ef56); the test copy was dropped" in log_text(view)
    manifest = json.loads(manifest_path(data_target.backup_dir / name).read_text())
    assert manifest["restore_tested"]["ok"] is True and manifest["verified"]["how"] == "restore-test"
    assert copies(data_target) == []
    assert data_target.snapshot() == before


def test_a_restore_test_checks_the_revision_the_backup_was_made_at(app, runner, data_target):
    name = backup_now(app, data_target)
    path = manifest_path(data_target.backup_dir / name)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"revision": "0000aaaa1111"}))
    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "failed", log_text(view)
    assert "restores at schema revision ab12cd34ef56, but its database was at 0000aaaa1111" in job.result
    manifest = json.loads(path.read_text())
    assert manifest["verified"]["ok"] is False and manifest["restore_tested"]["ok"] is False
    assert copies(data_target) == []


def test_a_backup_of_another_database_or_a_newer_server_is_refused(app, runner, data_target):
    good = data_target.backup_dir / backup_now(app, data_target)
    manifest = json.loads(manifest_path(good).read_text())
    before = data_target.snapshot()
    cases = {"another database": ({"database": "someone_else"}, "is a backup of database someone_else")}
    if data_target.engine == "postgresql":
        cases["newer server"] = ({"server_major": 99, "server_version": "99.1"}, "newer than the server's")
    for i, (case, (change, words)) in enumerate(cases.items()):
        copy = good.with_name(good.name.replace(".dump", f"-x{i}.dump").replace(".sqlite", f"-x{i}.sqlite"))
        shutil.copy(good, copy)
        manifest_path(copy).write_text(json.dumps(manifest | change | {"file": copy.name}))
        if case == "another database":  # not this target's (review: a verify was queued and wrote its verdict)
            recorded = manifest_path(copy).read_text()
            for runbook in ("restore_backup", "verify_backup"):
                with pytest.raises(ParamError, match=f"{re.escape(copy.name)} {words}, not of "):
                    run(app, runbook, data_target.name, backup=copy.name)
            assert manifest_path(copy).read_text() == recorded
        else:
            job, _ = run(app, "restore_backup", data_target.name, backup=copy.name)
            assert job.state == "failed" and words in job.result, (case, job.result)
        assert data_target.snapshot() == before and copies(data_target) == [], case


def test_scheduled_backups_are_queued_as_the_system_and_retention_follows(app, runner, data_target):
    write_targets_file(app, data_target.toml(extra="interval_minutes = 60\nkeep_last = 1"))
    cli = app.test_cli_runner()
    first = cli.invoke(args=["rewind", "backups", "due"])
    assert first.exit_code == 0, first.output
    match = re.search(r"staging: queued backup job #(\d+) — no backup made by Rewind yet", first.output)
    assert match, first.output

    def finished():
        with app.app_context():
            return db.session.get(Job, int(match.group(1))).job_state.is_final

    wait_for(finished, timeout=60)
    with app.app_context():
        job = db.session.get(Job, int(match.group(1)))
        assert (job.state, job.actor_name) == ("succeeded", "system")
    (made,) = [p.name for p in data_target.backup_dir.glob("*.gpg")]
    again = cli.invoke(args=["rewind", "backups", "due"])
    assert "staging: not due — the newest backup is 0 min old" in again.output

    job, view = run(app, "backup", data_target.name)  # a second backup: keep_last = 1 prunes the first
    assert job.state == "succeeded", log_text(view)
    (left,) = [p.name for p in data_target.backup_dir.glob("*.gpg")]
    assert left != made and f"deleted {made}" in log_text(view)


def test_a_backup_larger_than_a_pipe_verifies_and_restores(app, runner, data_target):
    """Every reader must read to the end: one that stops early leaves gpg writing into a closed pipe."""
    if data_target.engine == "postgresql":
        data_target.execute(
            'INSERT INTO "user" SELECT i, md5(i::text) || md5((i * 3)::text), now() FROM generate_series(1000, 40999) i'
        )
    else:
        data_target.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 40999) "
            'INSERT INTO "user" SELECT i, hex(randomblob(32)), "2020-01-01" FROM n'
        )
    before = data_target.snapshot()
    name = backup_now(app, data_target)
    assert (data_target.backup_dir / name).stat().st_size > 1024 * 1024
    data_target.execute('DELETE FROM "user" WHERE id > 2000')
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert data_target.snapshot() == before


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_damage_early_in_a_large_backup_is_called_a_decryption_failure(app, runner, data_target):
    """pg_restore stops at once on the damaged bytes and takes gpg down before gpg's own integrity check at the
    end of the file: the verdict must still be gpg's, not "decrypts but is not a readable archive"."""
    data_target.execute(
        'INSERT INTO "user" SELECT i, md5(i::text) || md5((i * 3)::text), now() FROM generate_series(1000, 40999) i'
    )
    path = data_target.backup_dir / backup_now(app, data_target)
    data = bytearray(path.read_bytes())
    assert len(data) > 1024 * 1024  # far more than a pipe holds: gpg is still writing when pg_restore stops
    data[600] ^= 0xFF  # just past the key packet: the archive's first bytes
    path.write_bytes(bytes(data))
    manifest = json.loads(manifest_path(path).read_text())
    manifest["sha256"] = sha256_of(path)  # the same damage at the time it was made: only decrypting finds it
    manifest_path(path).write_text(json.dumps(manifest))

    job, view = run(app, "verify_backup", data_target.name, backup=path.name)
    assert job.state == "failed" and job.verification == "failed", log_text(view)
    assert f"{path.name} does not decrypt" in job.result, job.result


def test_a_restored_copy_missing_a_key_table_is_dropped_before_the_stop(app, runner, data_target):
    data_target.execute("ALTER TABLE orders RENAME TO orders_old")
    name = backup_now(app, data_target)
    data_target.execute("ALTER TABLE orders_old RENAME TO orders")
    before = data_target.snapshot()
    pid = app_pid(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed"
    assert "the restored copy lacks key table(s) orders" in job.result
    assert [s.state for s in view.steps[3:]] == ["failed", "not_run", "not_run", "not_run", "not_run"]
    assert "dropped the scratch copy" in log_text(view)
    assert data_target.snapshot() == before and copies(data_target) == []
    assert app_pid(app, data_target) == pid


def restore_in_its_own_process(app, target, backup: str):
    """`flask rewind run … restore_backup --follow` in a process of its own, as a shell runs it when no runner is
    up: one a test may kill -9. Its printed lines arrive on the queue returned with it."""
    import sys
    import threading
    from queue import Queue

    from tests.jobs.test_cli import flask_env
    from tests.support.server import REPO

    args = ["run", target.name, "restore_backup", f"backup={backup}", "--as", "admin", "--follow"]
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "rewind", *args],
        cwd=REPO,
        env=flask_env(app),
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: Queue = Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    return process, lines


def test_a_restore_killed_midway_leaves_live_data_readable_and_its_job_says_where_things_stood(app, users, data_target):
    """kill -9 of the process running a restore (as the OOM killer would): nothing is lost, and the job says where."""
    from app.jobs.engine import engine

    runner = engine(app).start_runner()
    name = backup_now(app, data_target)
    runner.stop(wait=True)  # from here the job runs in a process of its own: the CLI runs it when no runner is up
    data_target.execute("DELETE FROM orders")
    before = data_target.snapshot()
    process, lines = restore_in_its_own_process(app, data_target, name)
    while "into the scratch database" not in lines.get(timeout=60):
        pass
    process.kill()
    process.wait(timeout=30)
    runner = engine(app).start_runner()  # a runner starting up finds the job orphaned
    try:
        with app.app_context():
            wait_for(lambda: db.session.get(Job, 2).state == "interrupted" or db.session.commit(), timeout=30)
            job = db.session.get(Job, 2)
            assert job.runbook == "restore_backup"
            assert "Where things stood: " in job.result, job.result
            # killed while the scratch copy was filled, or later: every stage names the copies, none dropped
            assert "the live database is untouched" in job.result or "nothing was dropped" in job.result, job.result
    finally:
        runner.stop(wait=True)
    after = data_target.snapshot()
    assert after["orders"] == before["orders"] or len(after["orders"]) == 20  # the live rows, or the restored ones
    assert after["user"] == before["user"]  # readable, whole


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_plain_sql_backup_the_written_procedure_made_restores_row_for_row(app, runner, data_target, pg_server):
    """`pg_dump db | gpg -e > backup_YYYYMMDD_HHMMSS.sql.gpg`, no manifest: listed, checked, restored through psql."""
    import io
    import subprocess

    before = data_target.snapshot()
    pg_dump = [str(pg_server.bin / "pg_dump"), "--dbname", data_target.url]
    dump = subprocess.run(pg_dump, capture_output=True, check=True)
    out = io.BytesIO()
    data_target.home.encrypt(dump.stdout, out, [RECIPIENT])
    data_target.backup_dir.mkdir(exist_ok=True)
    name = "backup_20240101_000000.sql.gpg"
    (data_target.backup_dir / name).write_bytes(out.getvalue())
    data_target.execute("DELETE FROM orders WHERE id > 5")
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert "decrypts to its end" in log_text(view)  # not verified before: step 1 decrypted it whole first
    # QA: what the dump's queries return (pg_dump's set_config, a setval per sequence) filled the log, four lines each
    assert "set_config" not in log_text(view) and "(1 row)" not in log_text(view), log_text(view)
    assert data_target.snapshot() == before
    (pre,) = copies(data_target)
    assert len(data_target.snapshot(copy_url(data_target, pre))["orders"]) == 5


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_plain_dump_made_with_create_and_clean_cannot_drop_the_live_database(app, runner, data_target, pg_server):
    """`pg_dump --create --clean` says DROP DATABASE <live>; \\connect <live>: refused before it reaches psql."""
    import io
    import subprocess

    from app.backups.restore import RestoreFailed, restore_scratch
    from app.backups.setup import setup_of

    pg_dump = [str(pg_server.bin / "pg_dump"), "--create", "--clean", "--dbname", data_target.url]
    dump = subprocess.run(pg_dump, capture_output=True, check=True)
    out = io.BytesIO()
    data_target.home.encrypt(dump.stdout, out, [RECIPIENT])
    data_target.backup_dir.mkdir(exist_ok=True)
    name = "backup_20240101_000000.sql.gpg"
    (data_target.backup_dir / name).write_bytes(out.getvalue())
    data_target.execute("DELETE FROM orders WHERE id > 5")  # what a restore into live would bring back
    before = data_target.snapshot()
    pid = app_pid(app, data_target)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert view.steps[0].state == "failed" and view.steps[1].state == "not_run"
    assert "would act outside the database it is restored into" in job.result, job.result
    assert "a statement on a whole database" in job.result
    assert data_target.snapshot() == before and copies(data_target) == []
    assert app_pid(app, data_target) == pid

    # and the scratch restore itself guards too, whatever step 1 found
    with app.app_context():
        setup = setup_of(current_targets().open(data_target.name))
        with pytest.raises(RestoreFailed) as caught:
            restore_scratch(setup, setup.catalog.get(name), "shop_guarded_scratch", Lines())
    assert "sqlguard exited with status 3" in caught.value.message
    assert data_target.snapshot() == before and "shop_guarded_scratch" not in data_target.databases()


def test_cleanup_drops_only_restore_copies_older_than_asked_and_never_live(app, runner, data_target):
    name = backup_now(app, data_target)
    data_target.execute("DELETE FROM orders WHERE id > 10")
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", log_text(view)
    (pre,) = copies(data_target)
    restored = data_target.snapshot()

    kept, view = run(app, "cleanup_restores", data_target.name, older_than_hours=1)
    assert kept.state == "succeeded" and "no restore copies older than 1 h" in log_text(view)
    assert kept.result.startswith("Succeeded: nothing to do — no restore copies older than 1 h"), kept.result
    assert copies(data_target) == [pre]

    kept, view = run(app, "cleanup_restores", data_target.name)  # the target's backups.keep_copies_hours, 24
    assert "older than 24 h (backups.keep_copies_hours)" in log_text(view) and copies(data_target) == [pre]

    with app.app_context(), pytest.raises(ParamError) as caught:
        runbooks.get("cleanup_restores").parse_params({"older_than_hours": "-1"}, data_target.name)
    assert caught.value.param == "older_than_hours" and "0 or more" in str(caught.value)

    dropped, view = run(app, "cleanup_restores", data_target.name, older_than_hours=0, spare_unsaved="no")
    assert dropped.state == "succeeded", log_text(view)
    assert f"dropped {pre}" in log_text(view) and "Dropped 1 restore copy" in dropped.result
    assert copies(data_target) == []
    assert data_target.snapshot() == restored  # the live database is never a copy


def test_cleanup_removes_a_backup_left_unfinished_and_keeps_one_being_written(app, runner, data_target):
    """A backup job killed while writing leaves its hidden partial file, taking disk space until removed.

    Whatever hours keep restore copies: a half-written backup holds nothing a restore or an undo could use."""
    name = backup_now(app, data_target)
    left = data_target.backup_dir / f".{data_target.name}_20240101_000000.dump.gpg.partial"
    left.write_bytes(b"\x85" * 4096)
    an_hour_ago = left.stat().st_mtime - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    writing = data_target.backup_dir / f".{data_target.name}_20990101_000000.dump.gpg.partial"
    writing.write_bytes(b"\x85")  # written to just now: a backup in progress elsewhere would look like this

    job, view = run(app, "cleanup_restores", data_target.name)  # copies are kept 24 h; the file is an hour old
    assert job.state == "succeeded", log_text(view)
    assert f"removed {left.name}: a backup left unfinished (4.0 KiB)" in log_text(view)
    assert "removed 1 unfinished backup file(s)" in job.result
    assert not left.exists() and writing.exists()
    assert (data_target.backup_dir / name).exists(), "finished backups are not the cleanup's business"


def test_a_backup_of_the_pre_restore_copy_keeps_the_rows_written_after_the_backup(app, runner, data_target):
    """Restore, back up the pre-restore copy, drop the copy: its backup still restores the late rows, row for row."""
    from app.backups.catalog import Catalog
    from app.backups.status import freshness

    name = backup_now(app, data_target)
    data_target.execute('INSERT INTO "user" VALUES (?, ?, ?)', (100, "late", "2099-01-01 00:00:00+00"))
    data_target.execute("UPDATE orders SET total = 7 WHERE id = 3")
    changed = data_target.snapshot()
    restore, view = run(app, "restore_backup", data_target.name, backup=name)
    assert restore.state == "succeeded", log_text(view)
    (pre,) = copies(data_target)

    job, view = run(app, "backup_copy", data_target.name, copy=pre)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert job.verification == "passed"
    (new,) = [p for p in data_target.backup_dir.iterdir() if p.name.endswith(".gpg") and p.name != name]
    # QA: it read "<backup> verified: …" alone, the copy it keeps named nowhere in the result (the timeline's row)
    assert job.result.startswith(f"Backed up {pre} to {new.name}, verified: encrypted to "), job.result
    made = json.loads(manifest_path(new).read_text())
    assert made["purpose"] == f"the pre-restore copy of restore job #{restore.id} ({pre})"
    assert made["copy"] == pre and made["counts"] == {"user": 21, "orders": 20}
    assert made["database"] == data_target.url.rsplit("/", 1)[1] or data_target.engine == "sqlite"
    assert made["job_id"] == job.id and made["verified"]["ok"] is True
    # not a backup of live as it is: the newest verified backup of the target is still the one restored
    assert freshness(Catalog(data_target.backup_dir).backups(), None).newest_verified.id == name
    assert copies(data_target) == [pre]  # the copy stays until the cleanup drops it
    # listed newest first from the command line too, and not to be taken for a backup of live
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", data_target.name]).output.splitlines()
    row = next(i for i, line in enumerate(listed) if line.endswith(f" {new.name}"))
    assert listed[row + 1] == f"{'':17}(the pre-restore copy of restore job #{restore.id} ({pre}))", listed

    dropped, _ = run(app, "cleanup_restores", data_target.name, older_than_hours=0)
    assert dropped.state == "succeeded" and copies(data_target) == []
    back, view = run(app, "restore_backup", data_target.name, backup=made["file"])
    assert back.state == "succeeded", (back.result, log_text(view))
    assert data_target.snapshot() == changed  # the rows written after the first backup, back from the copy's backup


@pytest.fixture(params=[37, 63])
def long_named_target(request, app, tmp_path, gpg_homes, pg_server):
    """A running app whose PostgreSQL database name leaves no room for `_pre_restore_<time>` within 63 bytes."""
    code = make_code_target(tmp_path / "t")
    head = f"customer_portal_{uuid.uuid4().hex[:8]}_production_"
    name = (head + "x" * 63)[: request.param]
    url = pg_server.create_database(name)
    target = DataTarget(code, "postgresql", url, tmp_path / "backups", gpg_homes[0], pg_url=pg_server.url())
    _fill(target)
    with serving(app, target):
        yield target


def test_a_long_database_name_restores_undoes_and_cleans_up_under_shortened_copy_names(app, runner, long_named_target):
    """Copy names keep the live name's first bytes and a short hash: within 63 bytes, found again by every runbook."""
    target = long_named_target
    live = target.url.rsplit("/", 1)[1]
    ours = [d for d in target.databases() if d.startswith(live[:27]) and d != live]
    before = target.snapshot()
    name = backup_now(app, target)
    target.execute('INSERT INTO "user" VALUES (?, ?, ?)', (100, "late", "2099-01-01 00:00:00+00"))
    changed = target.snapshot()

    tested, view = run(app, "verify_backup", target.name, backup=name, level="restore-test")
    assert tested.state == "succeeded", (tested.result, log_text(view))
    assert [d for d in target.databases() if d.startswith(live[:27]) and d != live] == ours  # the test copy dropped

    job, view = run(app, "restore_backup", target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert "stands for it" in log_text(view)
    assert target.snapshot() == before and health(target.code)[0] == 200
    (pre,) = [d for d in target.databases() if d.startswith(live[:27]) and d != live]
    assert len(pre.encode()) <= 63 and re.fullmatch(re.escape(live[:27]) + r"_[0-9a-f]{8}_pre_restore_\d{14}", pre)
    assert pre in job.result and target.snapshot(copy_url(target, pre)) == changed

    undo, view = run(app, "undo_restore", target.name, pre_restore=pre)
    assert undo.state == "succeeded", (undo.result, log_text(view))
    assert target.snapshot() == changed and health(target.code)[0] == 200
    (undone,) = [d for d in target.databases() if d.startswith(live[:27]) and d != live]
    assert "_undone_" in undone and len(undone.encode()) <= 63

    dropped, view = run(app, "cleanup_restores", target.name, older_than_hours=0, spare_unsaved="no")
    assert dropped.state == "succeeded" and f"dropped {undone}" in log_text(view), log_text(view)
    assert [d for d in target.databases() if d.startswith(live[:27]) and d != live] == []
    assert target.snapshot() == changed


@pytest.mark.parametrize("data_target", ["sqlite"], indirect=True)
def test_the_restored_sqlite_file_gets_the_live_file_s_mode_and_owner(app, runner, data_target):
    """The scratch file is made 0600 by Rewind's user; after the swap the app's user must still open its database."""
    live = Path(data_target.url.removeprefix("sqlite:///"))
    name = backup_now(app, data_target)
    live.chmod(0o664)
    if os.geteuid() == 0:  # run as root, Rewind also hands the file to the application's user
        os.chown(live, 4321, 4321)
    before = live.stat()
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    after = live.stat()
    assert after.st_ino != before.st_ino  # the restored file, swapped in
    assert oct(after.st_mode & 0o7777) == "0o664"
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


def test_flags_moved_by_a_restore_and_its_undo_are_not_called_changed_outside_rewind(app, runner, as_role, data_target):
    """Flags live in the swapped database. Rewind turns one off, a restore brings it back on, the undo off again:
    each time the flags tab must know the swap was Rewind's (a checkpoint after it), not flag it as done outside."""
    from app.auth.roles import Role
    from app.flags import history, store
    from app.flags import restore as flags_restore
    from tests.flags.conftest import TABLE

    data_target.execute(TABLE[data_target.engine])
    data_target.execute("INSERT INTO feature_flags (name, enabled) VALUES (?, ?)", ("dark_mode", True))
    toml = data_target.toml().replace("key_tables =", 'flags_table = "feature_flags"\nkey_tables =', 1)
    write_targets_file(app, toml)
    name = backup_now(app, data_target)
    client = as_role(Role.ADMIN)

    def shown() -> tuple[bool, bool]:
        """(on, called changed outside Rewind), as the flags tab shows dark_mode and as history decides it."""
        with app.app_context():
            target = current_targets().open(data_target.name)
            flag = store.table_of(target).get("dark_mode")
            last = history.last_change(data_target.name, "dark_mode")
            outside = history.changed_outside(flag, last, flags_restore.newest_seen_of(data_target.name))
        page = client.get(f"/targets/{data_target.name}/flags").get_data(as_text=True)
        row = page[page.index('id="flag-dark_mode"') :].split("</tr>", 1)[0]
        assert ("changed outside Rewind" in row) == outside, row
        return flag.enabled, outside

    with app.app_context():
        target = current_targets().open(data_target.name)
        store.toggle(target, "dark_mode", False, seen=True, actor=Actor(None, "test"), reason="incident")
    assert shown() == (False, False)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert (view.steps[-1].title, view.steps[-1].state) == ("Record what is live now", "succeeded")
    assert shown() == (True, False)
    with app.app_context():
        before, after = db.session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job.id).order_by(Checkpoint.id)
        ).all()
        assert after.reason == "after: Restore a backup"
        assert after.captures["flags"]["states"] == {"dark_mode": True}
        assert before.captures["flags"]["states"] == {"dark_mode": False}
    (pre,) = copies(data_target)

    job, view = run(app, "undo_restore", data_target.name, pre_restore=pre)
    assert job.state == "succeeded", (job.result, log_text(view))
    assert shown() == (False, False)

    data_target.execute("UPDATE feature_flags SET enabled = ? WHERE name = ?", (True, "dark_mode"))
    assert shown() == (True, True)  # a change nobody made through Rewind is still called one


def test_a_restore_and_undo_with_nothing_written_since_say_no_rows(app, runner, data_target):
    """QA: "rolls back at least 0 row(s) … (none); they stay readable in …" for a restore that takes nothing out."""
    name = backup_now(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", job.result
    text = log_text(view)
    said = "the restore rolls back no rows written to the key tables after the backup (unknown in orders: nothing"
    assert said in text and "at least 0" not in text, text
    (pre,) = copies(data_target)
    job, view = run(app, "undo_restore", data_target.name, pre_restore=pre)
    assert job.state == "succeeded", job.result
    text = log_text(view)
    assert "the undo takes no rows written to the key tables since the restore" in text and "0 row(s)" not in text


def test_a_restore_of_a_backup_dated_in_the_future_does_not_say_it_rolls_back_no_rows(app, runner, data_target):
    """QA: a dump named by a host whose clock ran 61 min ahead, restored over a row changed since it was made, read
    "the restore rolls back no rows written to the key tables after the backup": every row of live is stamped before
    a time in the future. Its time tells nothing, and the log says so."""
    stamp = "text" if data_target.engine == "sqlite" else "timestamptz"
    data_target.execute(f'ALTER TABLE "user" ADD COLUMN updated_at {stamp}')
    made = backup_now(app, data_target)
    ahead = datetime.now(UTC) + timedelta(minutes=61)
    name = f"backup_{ahead:%Y%m%d_%H%M%S}.{made.split('.', 1)[1]}"  # a file Rewind did not make: named for its time
    (data_target.backup_dir / made).rename(data_target.backup_dir / name)
    manifest_path(data_target.backup_dir / made).unlink()
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}+00"
    data_target.execute('UPDATE "user" SET name = ?, updated_at = ? WHERE id = 6', ("renamed", now))

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert "rolls back no rows" not in text, text
    assert re.search(r"^user +20 +20 +unknown$", text, re.M), text
    assert (
        f"{name} is dated 61 min in the future: check the clocks of this host and the one that made it; its time "
        "cannot tell which of live's rows were written after it: unknown above, unless live holds more rows than the "
        "copy"
    ) in text, text


def test_a_backup_that_does_not_decrypt_is_blamed_on_its_bytes_once_its_key_is_known_to_decrypt(
    app, runner, data_target
):
    """QA: a truncated backup read "does not decrypt: gpg: … — the file is damaged or truncated, or its secret key is
    not in <home>", though the check had just found it encrypted to the target's key and that key decrypting: a
    person under stress went looking for a missing key. The key is said to be there, and what to do."""
    good = (data_target.backup_dir / backup_now(app, data_target)).read_bytes()
    name = f"backup_20200101_000000.{'dump' if data_target.engine == 'postgresql' else 'sqlite'}.gpg"
    (data_target.backup_dir / name).write_bytes(good[: len(good) // 2])  # a copy cut short

    job, view = run(app, "verify_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert f"{name} does not decrypt: gpg: " in job.result, job.result
    home = data_target.home.home
    assert f"the file is damaged or truncated (its secret key is in {home} and decrypts): choose another backup" in (
        job.result
    ), job.result
    assert "or its secret key is not in" not in job.result, job.result


def test_a_backup_for_a_rotated_out_key_is_not_blamed_on_its_bytes(app, runner, data_target):
    """Review: after a key rotation (the old key expired, kept for its name; a new key of the same name with its
    secret), a backup made for the old key passed the envelope check (by name) and the unlock check (the new key),
    then failed in gpg: it read "its secret key is in <home> and decrypts: choose another backup", though every
    backup older than the rotation fails the same way. The file's key ids are read against the home's secret keys."""
    root = Path(tempfile.mkdtemp(prefix="rwr-", dir="/tmp"))  # short: gpg-agent's socket path
    old, new = GpgHome.create(root / "o"), GpgHome.create(root / "n")
    name = f"backup_20200101_000000.{'dump' if data_target.engine == 'postgresql' else 'sqlite'}.gpg"
    data_target.backup_dir.mkdir(exist_ok=True)
    try:
        key = old.generate_key("Ops", RECIPIENT)
        with open(data_target.backup_dir / name, "wb") as out:
            old.encrypt(b"-- made before the rotation\n", out, [RECIPIENT])
        gpg = ["gpg", "--homedir", str(old.home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
        for which in ((), ("*",)):  # the primary key, then its subkeys: expired, gpg encrypts to the new key
            subprocess.run([*gpg, "--quick-set-expire", key.fingerprint, "seconds=1", *which], check=True)

        def expired() -> bool:  # a second after it was set, as gpg's listing says ("pub:e:")
            listed = subprocess.run([*gpg, "--with-colons", "--list-keys", RECIPIENT], capture_output=True, text=True)
            return "\npub:e:" in "\n" + listed.stdout

        wait_for(expired, timeout=10)
        exported = subprocess.run([*gpg, "--export", RECIPIENT], capture_output=True, check=True).stdout
        new.generate_key("Ops", RECIPIENT)
        subprocess.run(["gpg", "--homedir", str(new.home), "--batch", "--import"], input=exported, check=True)
        write_targets_file(app, replace(data_target, home=new).toml())

        job, view = run(app, "verify_backup", data_target.name, backup=name)
        assert job.state == "failed", log_text(view)
        assert "encrypted to ops@example.invalid" in log_text(view)  # by name, the old key's id among the name's
        said = f"whose secret key is not in {new.home} (a key rotated out keeps its name): import that secret key"
        assert said in job.result and "and decrypts: choose another backup" not in job.result, job.result
        assert re.search(r"it is for key id\(s\) [0-9A-F]{16}, whose", job.result), job.result
    finally:
        old.stop_agent()
        new.stop_agent()
        shutil.rmtree(root, ignore_errors=True)
