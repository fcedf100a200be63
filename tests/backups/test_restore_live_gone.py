"""The incident a restore is most needed for: the live database dropped, its file deleted or damaged. The restore
makes live again as it was (empty), fills its copy and swaps as ever; what it cannot make as it was, it refuses,
leaving nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from app.backups.catalog import manifest_path
from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import health, log_text, run

pytestmark = pytest.mark.usefixtures("runner")


def live_name(target) -> str:
    return target.url.rsplit("/", 1)[1]


def drop_live(target) -> None:
    if target.engine == "sqlite":
        Path(target.url.removeprefix("sqlite:///")).unlink()
        return
    with psycopg.connect(target.pg_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{live_name(target)}" WITH (FORCE)')


def made_of(target, name: str) -> tuple:
    """Owner, encoding, collation and the database's own settings, as the server's catalogs hold them."""
    with psycopg.connect(target.pg_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, "
            "(SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0) "
            "FROM pg_database d WHERE d.datname = %s",
            (name,),
        ).fetchone()


def assert_left_as_found(target, text: str) -> None:
    """A restore that made live again and stopped before its swap: live is gone again, no copy left."""
    assert "made again, empty" in text and "the empty live database made for this restore was dropped again" in text
    if target.engine == "postgresql":
        assert live_name(target) not in target.databases()
    else:
        assert not Path(target.url.removeprefix("sqlite:///")).exists()
    assert copies(target) == []


def test_what_a_restore_rolls_back_when_live_is_gone_says_it_is_made_again(app, as_role, data_target):
    from app.auth.roles import Role

    name = backup_now(app, data_target)
    drop_live(data_target)
    page = as_role(Role.ADMIN).get(f"/targets/{data_target.name}/backups/{name}/rolls-back").get_data(as_text=True)
    assert "<strong>The live database is not there</strong>" in page and "makes it again, empty, as it was" in page
    assert "Could not count" not in page
    said = app.test_cli_runner().invoke(args=["rewind", "backups", "rolls-back", data_target.name, name])
    assert said.exit_code == 0 and f"restoring {name} makes it again; nothing can be lost" in said.output


def test_a_dropped_live_database_is_made_again_as_it_was_then_restored(app, data_target):
    if data_target.engine == "postgresql":
        data_target.execute(f"ALTER DATABASE \"{live_name(data_target)}\" SET work_mem = '8MB'")
        made = made_of(data_target, live_name(data_target))
    before = data_target.snapshot()
    name = backup_now(app, data_target)
    drop_live(data_target)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert "was not there (deleted?)" in text or "was not there (dropped?)" in text, text
    assert "made again, empty" in text and "the restore goes on into its place" in text
    assert data_target.snapshot() == before  # row for row
    assert health(data_target.code)[0] == 200
    assert "the empty one made in place of the missing live database, is " in text
    assert "nothing was in it" in text and "so there is no undo (there was nothing to keep)" in job.result
    assert copies(data_target) == []  # the empty database is dropped once the restored one is verified
    if data_target.engine == "postgresql":
        assert made_of(data_target, live_name(data_target)) == made  # its owner, encoding, locale and settings
        assert made[3] == ["work_mem=8MB"]


def test_a_missing_live_database_with_a_copy_newer_than_the_backup_is_not_made_again(app, data_target):
    """Live gone and a pre-restore copy newer than the backup there: a swap half done looks so, and that copy may
    hold live's newest rows. Refused, naming it; nothing is made."""
    name = backup_now(app, data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", log_text(view)
    (pre,) = copies(data_target)
    drop_live(data_target)  # as if the swap had renamed live away and stopped before renaming the copy in

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert f"is not there, but {pre} (" in job.result and "a swap may have been left half done" in job.result
    assert "rename it back to" in job.result
    assert copies(data_target) == [pre]
    if data_target.engine == "postgresql":
        assert live_name(data_target) not in data_target.databases()
    else:
        assert not Path(data_target.url.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize("data_target", ["sqlite"], indirect=True)
def test_a_damaged_sqlite_file_is_said_replaced_and_kept(app, data_target):
    before = data_target.snapshot()
    name = backup_now(app, data_target)
    live = Path(data_target.url.removeprefix("sqlite:///"))
    damaged = b"not a database, " * 64
    live.write_bytes(damaged)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "succeeded", (job.result, text)
    assert f"! live cannot be read: cannot read {live}: file is not a database" in text, text
    assert "user    unreadable          20" in text, text
    assert data_target.snapshot() == before
    (pre,) = copies(data_target)
    assert f"the restore replaces it; the unreadable file is kept as {pre}" in text
    assert live.with_name(pre).read_bytes() == damaged  # kept as it was


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_dropped_database_whose_backup_does_not_say_how_it_was_made_is_refused(app, data_target):
    """A backup of an older Rewind, or a file it did not make: nothing is made, the fix says how to make it."""
    name = backup_now(app, data_target)
    path = manifest_path(data_target.backup_dir / name)
    manifest = json.loads(path.read_text())
    del manifest["made"]
    path.write_text(json.dumps(manifest))
    drop_live(data_target)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert f"the live database {live_name(data_target)} is not on" in job.result
    assert (
        "does not record how it was made (its owner, encoding and locale) — create it empty as it was, with its "
        in (job.result)
    )
    assert "(createdb --host 127.0.0.1 --port " in job.result
    assert f" --template template0 --owner OWNER {live_name(data_target)}), then restore again" in job.result
    assert live_name(data_target) not in data_target.databases() and copies(data_target) == []


def test_a_check_that_fails_after_live_was_made_again_drops_it_again(app, data_target):
    """The backup's file changed since it was verified: refused in the check, and the empty live made for the
    restore goes again, so nothing is left as it was not."""
    name = backup_now(app, data_target)
    drop_live(data_target)
    path = data_target.backup_dir / name
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "failed", text
    assert_left_as_found(data_target, text)


def test_a_fill_that_fails_after_live_was_made_again_drops_it_again(app, data_target, gpg_homes):
    """The backup checks out (its checksum is its manifest's) but does not restore: the scratch goes, and so does
    the empty live database made for it, so the target is as the restore found it."""
    import hashlib
    import io

    from tests.backups.conftest import RECIPIENT

    name = backup_now(app, data_target)
    path = data_target.backup_dir / name
    out = io.BytesIO()
    gpg_homes[0].encrypt(b"not an archive, not a database " * 100, out, [RECIPIENT])
    path.write_bytes(out.getvalue())
    manifest = json.loads(manifest_path(path).read_text())
    manifest |= {"sha256": hashlib.sha256(out.getvalue()).hexdigest(), "size": len(out.getvalue())}
    manifest_path(path).write_text(json.dumps(manifest))
    drop_live(data_target)

    job, view = run(app, "restore_backup", data_target.name, backup=name)
    text = log_text(view)
    assert job.state == "failed", text
    assert [s.state for s in view.steps[:3]] == ["succeeded", "succeeded", "failed"], text
    assert_left_as_found(data_target, text)


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
@pytest.mark.parametrize("broken", [{"owner": ["x"]}, {"settings": [["x"]]}, {"acl": [[None, "CONNECT", "yes"]]}])
def test_a_record_of_how_live_was_made_that_is_not_as_rewind_writes_it_is_refused(app, data_target, broken):
    name = backup_now(app, data_target)
    path = manifest_path(data_target.backup_dir / name)
    manifest = json.loads(path.read_text())
    manifest["made"] |= broken
    path.write_text(json.dumps(manifest))
    drop_live(data_target)
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "failed", log_text(view)
    assert f"the backup's record of how {live_name(data_target)} was made is not as Rewind writes it" in job.result
    assert "internal error" not in job.result
    assert live_name(data_target) not in data_target.databases() and copies(data_target) == []


def test_a_cancel_during_the_check_drops_the_live_database_it_made_again(app, data_target):
    """A cancel that came while the check waited (here, on a health endpoint that never answers) was seen by the
    runner between steps: the job ended "Cancelled … during “Record a checkpoint”." and the empty live database the
    check had made stayed in place of the missing one, unsaid. It goes again, and the job says so."""
    import socket

    from app.audit.store import Actor
    from app.extensions import db
    from app.jobs import runbook as runbooks
    from app.jobs import service
    from app.jobs.models import Job
    from tests.deployments.test_runbooks import ADMIN
    from tests.support.jobs import finished
    from tests.support.targets import write_targets_file

    name = backup_now(app, data_target)
    drop_live(data_target)
    with socket.create_server(("127.0.0.1", 0)) as mute:  # takes the probe's connection, answers nothing
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/health"
        toml = data_target.toml()
        assert data_target.code.url in toml
        write_targets_file(
            app, toml.replace(data_target.code.url, url).replace("timeout = 5", "timeout = 5\nprobe_timeout = 3")
        )
        with app.app_context():
            book = runbooks.get("restore_backup")
            job_id = service.enqueue(
                book, data_target.name, book.parse_params({"backup": name}, data_target.name), ADMIN
            ).id
        mute.settimeout(120)
        probe, _ = mute.accept()  # the check step waits on it now, live made again
        with probe, app.app_context():
            service.cancel(db.session.get(Job, job_id), Actor(None, "the on-call engineer"))
            job, view = finished(app, job_id, timeout=120)
    text = log_text(view)
    assert job.state == "cancelled", text
    assert job.result == (
        "Cancelled by the on-call engineer during “Record a checkpoint”. The empty live database made for this "
        f"restore was dropped again and {data_target.name} was not stopped; no pre-restore copy was made."
    ), job.result
    assert_left_as_found(data_target, text)
