"""A downgrade that destroys data takes a fresh verified backup first, with the backups area's own steps."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from app.backups.catalog import LOCK_FILE, Catalog
from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs.runbook import ParamError
from app.schema.runbooks import CODE_TO_MATCH
from app.targets.dbadmin import open_database
from app.targets.gpg import GpgHome
from tests.deployments.test_runbooks import log_text, run
from tests.schema.apps import Backups
from tests.schema.conftest import RECIPIENT, both_target_databases
from tests.schema.jobs import queue
from tests.schema.test_gate import parse, step
from tests.support.targets import git, write_targets_file

TOKENS = "INSERT INTO \"user\" (name, token) VALUES ('ann', 'tok-ann-7f3'), ('bob', NULL), ('cy', 'tok-cy-9b1')"


def made(backups: Backups) -> list[Path]:
    """Every file in the backup folder (hidden partial files included): what a job left there.

    The catalog's lock file, which every manifest change holds, is not a job's leftover."""
    return sorted(p for p in backups.dir.iterdir() if p.name != LOCK_FILE) if backups.dir.exists() else []


def tokens_in(shop, home: GpgHome, backup: Path, scratch: Path) -> str:
    """Decrypt the backup and read user.token from the dump inside, as a restore would find it."""
    plain = scratch / "plain"
    with backup.open("rb") as source, plain.open("wb") as out:
        home.decrypt(source, out)
    if shop.url.startswith("sqlite:///"):
        conn = sqlite3.connect(plain)
        try:
            return " ".join(str(t) for (t,) in conn.execute('SELECT token FROM "user" ORDER BY id'))
        finally:
            conn.close()
    pg_restore = open_database(shop.url, dict(os.environ)).tool("pg_restore")
    dumped = subprocess.run(
        [pg_restore, "--data-only", "--table=user", "--file=-", str(plain)], capture_output=True, text=True, check=True
    )
    return dumped.stdout


@both_target_databases
def test_a_downgrade_that_destroys_data_takes_a_verified_backup_first(
    app, runner, shop_target, shop_backups, gpg_homes, tmp_path, as_role
):
    shop_target.execute(TOKENS)
    job, view = run(app, "schema_downgrade", "shop", revision="-1")  # no "I have a backup": Rewind takes one
    assert job.state == "warning", job.result
    assert shop_target.versions() == {"a1000001"}
    (backup_file,) = made(shop_backups)[::2]  # the backup and its manifest
    assert [p.name for p in made(shop_backups)] == [backup_file.name, backup_file.name + ".json"]
    backup = Catalog(shop_backups.dir).get(backup_file.name)
    assert backup.manifest["job_id"] == job.id and backup.manifest["revision"] == "b2000002"
    assert backup.manifest["purpose"] == "taken before the downgrade to a1000001"
    assert backup.state == "verified" and backup.verified["how"] == "quick" and backup.verified["job_id"] == job.id
    note = f"backup {backup.id} taken before the downgrade; restore it from the Backups tab"
    assert job.result.startswith(f"shop's database is at a1000001. B{note[1:]}. But: The deployed code has")
    assert job.result.endswith("the schema is behind the code. " + CODE_TO_MATCH)
    log = log_text(view)
    assert log.index("taking a fresh backup first") < log.index(note) < log.index("Running downgrade b2000002")
    assert "NO BACKUP" not in log
    assert [s.state for s in view.steps[:4]] == ["succeeded"] * 4  # losses, backup, its verification, checkpoint
    with app.app_context():
        (checkpoint,) = db.session.scalars(select(Checkpoint)).all()
        assert checkpoint.captures["backup"]["file"] == backup.id  # the checkpoint names the fresh backup
    dumped = tokens_in(shop_target, gpg_homes[0], backup.path, tmp_path)
    assert "tok-ann-7f3" in dumped and "tok-cy-9b1" in dumped
    page = as_role(runbooks.Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    assert "taken before the downgrade to a1000001" in page and f"/jobs/{job.id}" in page


def test_a_backup_that_cannot_be_made_stops_the_downgrade_and_changes_nothing(
    app, runner, shop_target, gpg_homes, tmp_path
):
    backups = Backups(tmp_path / "backups", gpg_homes[0].home, ("nobody@example.invalid",))  # no key for it
    write_targets_file(app, shop_target.toml(backups=backups))
    shop_target.execute(TOKENS)
    job, view = run(app, "schema_downgrade", "shop", revision="-1")
    assert job.state == "failed"
    assert "the backup before the downgrade failed: no key to encrypt to nobody@example.invalid" in job.result
    assert "The downgrade did not run; shop's database is unchanged." in job.result
    assert shop_target.versions() == {"b2000002"}
    assert made(backups) == []
    assert step(view, "Back up before the downgrade").state == "failed"
    assert step(view, "Downgrade").state == "not_run"
    assert "Running downgrade" not in log_text(view)


@pytest.fixture
def public_key_only(gpg_homes):
    """A GnuPG home holding the recipient's public key but not its secret key: it encrypts, it cannot decrypt."""
    root = Path(tempfile.mkdtemp(prefix="rwk-", dir="/tmp"))
    home = GpgHome.create(root / "h")
    key = subprocess.run(
        ["gpg", "--batch", "--homedir", str(gpg_homes[0].home), "--export", RECIPIENT], capture_output=True, check=True
    ).stdout
    importing = ["gpg", "--batch", "--homedir", str(home.home), "--import"]
    subprocess.run(importing, input=key, check=True, capture_output=True)
    yield home
    home.stop_agent()
    shutil.rmtree(root, ignore_errors=True)


def test_a_backup_that_fails_its_verification_stops_the_downgrade(app, runner, shop_target, public_key_only, tmp_path):
    backups = Backups(tmp_path / "backups", public_key_only.home, (RECIPIENT,))
    write_targets_file(app, shop_target.toml(backups=backups))
    shop_target.execute(TOKENS)
    job, view = run(app, "schema_downgrade", "shop", revision="-1")
    assert job.state == "failed"
    (backup,) = Catalog(backups.dir).backups()
    assert f"the backup {backup.id} taken before the downgrade failed its verification" in job.result
    # the home holds no secret key: the key, not the backup, is what fails, and it is said so
    assert "no secret key" in job.result and "could not be checked" in job.result, job.result
    assert "The downgrade did not run; shop's database is unchanged." in job.result
    # kept, and nothing recorded against it: once the key is imported it verifies
    assert backup.state == "unverified" and backup.manifest["job_id"] == job.id
    assert shop_target.versions() == {"b2000002"}
    assert step(view, "Verify the backup").state == "failed" and step(view, "Downgrade").state == "not_run"


def test_a_protected_target_without_backups_is_refused_and_cannot_skip_the_backup(app, shop_target, as_role):
    write_targets_file(app, shop_target.toml(protected=True))
    shop_target.execute(TOKENS)
    refusal = (
        r"this downgrade destroys data \(drops user.token, holding 2 non-null values\) and shop is protected, "
        r"so a fresh backup must be taken first, but shop has no backups configured: add \[targets.shop.backups\]"
    )
    with pytest.raises(ParamError, match=refusal) as caught:
        parse(app, "schema_downgrade", revision="-1", confirm="shop", backup_confirmed="yes")
    assert caught.value.param == "backup_confirmed"
    with pytest.raises(ParamError, match=r"downgrade before the reset destroys data .* shop is protected"):
        the_app = shop_target.commits["the app"]
        parse(app, "downgrade_then_reset", commit=the_app, confirm="shop", backup_confirmed="yes")
    page = as_role(runbooks.Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
    assert "has no backups configured" in page and "[targets.shop.backups]" in page
    assert 'name="backup_confirmed"' not in page and ">Downgrade</button>" not in page  # nothing to press
    assert shop_target.versions() == {"b2000002"}


def test_a_protected_target_with_backups_cannot_skip_the_backup(app, shop_target, shop_backups, as_role):
    write_targets_file(app, shop_target.toml(protected=True, backups=shop_backups))
    shop_target.execute(TOKENS)
    with pytest.raises(ParamError, match="shop is protected: the backup before a downgrade that destroys data cannot"):
        parse(app, "schema_downgrade", revision="-1", confirm="shop", skip_backup="yes")
    assert parse(app, "schema_downgrade", revision="-1", confirm="shop")["skip_backup"] is False
    page = as_role(runbooks.Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
    assert "A fresh backup of shop\N{RIGHT SINGLE QUOTATION MARK}s database is taken and verified first" in page
    assert "Back up, then downgrade" in page and 'name="skip_backup"' not in page
    tab = as_role(runbooks.Role.ADMIN).get("/targets/shop/migrations").get_data(as_text=True)
    assert "a verified backup is taken first if the downgrade destroys data" in tab and "skip_backup" not in tab
    form = as_role(runbooks.Role.ADMIN).get("/jobs/new?runbook=schema_downgrade&target=shop").get_data(as_text=True)
    assert "take a verified backup first when it destroys data" in form
    assert "elsewhere Rewind takes a fresh backup first" in form


def test_data_written_after_queueing_is_backed_up_or_refused_when_the_job_runs(app, runner, shop_target):
    """The column was empty when queued (nothing destroyed); by the time the job runs it holds data."""
    write_targets_file(app, shop_target.toml(protected=True))
    params = parse(app, "schema_downgrade", revision="-1", confirm="shop")
    shop_target.execute(TOKENS)
    job, view = queue(app, "schema_downgrade", params)
    assert job.state == "failed"
    assert "shop is protected, so a fresh backup must be taken first" in job.result
    assert "Nothing was changed." in job.result
    assert shop_target.versions() == {"b2000002"}
    assert step(view, "Downgrade").state == "not_run"


def test_a_downgrade_that_destroys_nothing_takes_no_backup(app, runner, shop_target, shop_backups, as_role):
    shop_target.execute("INSERT INTO \"user\" (name) VALUES ('ann')")  # user.token holds nothing
    page = as_role(runbooks.Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
    assert "backup-first" not in page and "Back up, then downgrade" not in page
    job, view = run(app, "schema_downgrade", "shop", revision="-1")
    assert job.state == "warning", job.result
    assert shop_target.versions() == {"a1000001"}
    assert made(shop_backups) == []
    backup_step = step(view, "Back up before the downgrade")
    assert backup_step.state == "skipped"
    assert backup_step.message == "this downgrade destroys no data: no backup is needed"
    assert step(view, "Verify the backup").state == "skipped"
    assert "Backup" not in job.result


def test_an_unprotected_target_may_skip_the_backup_explicitly(app, runner, shop_target, shop_backups, as_role):
    shop_target.execute(TOKENS)
    page = as_role(runbooks.Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
    assert 'name="skip_backup"' in page and 'name="backup_confirmed"' not in page
    job, view = run(app, "schema_downgrade", "shop", revision="-1", skip_backup="yes")
    assert job.state == "warning", job.result
    assert shop_target.versions() == {"a1000001"}
    assert made(shop_backups) == []
    assert (
        "destroys data (drops user.token, holding 2 non-null values); NO BACKUP was taken: oncall chose to skip it"
        in (log_text(view))
    )
    assert step(view, "Back up before the downgrade").state == "skipped"


@both_target_databases
def test_downgrade_then_reset_takes_the_backup_before_the_downgrade(
    app, runner, shop_target, shop_backups, gpg_homes, tmp_path
):
    shop_target.execute(TOKENS)
    the_app = shop_target.commits["the app"]
    job, view = run(app, "downgrade_then_reset", "shop", commit=the_app)
    assert job.state == "succeeded", job.result
    assert shop_target.versions() == {"a1000001"}
    assert git(shop_target.repo, "rev-parse", "HEAD") == the_app
    (backup,) = Catalog(shop_backups.dir).backups()
    assert backup.state == "verified" and backup.manifest["job_id"] == job.id
    assert job.result.endswith(f" Backup {backup.id} taken before the downgrade; restore it from the Backups tab.")
    log = log_text(view)
    note = f"backup {backup.id} taken before the downgrade"
    assert log.index(note) < log.index("Running downgrade b2000002 -> a1000001") < log.index("HEAD is now at")
    dumped = tokens_in(shop_target, gpg_homes[0], backup.path, tmp_path)
    assert "tok-ann-7f3" in dumped and "tok-cy-9b1" in dumped


def test_downgrade_then_reset_stops_when_its_backup_fails(app, runner, shop_target, gpg_homes, tmp_path):
    backups = Backups(tmp_path / "backups", gpg_homes[0].home, ("nobody@example.invalid",))
    write_targets_file(app, shop_target.toml(backups=backups))
    shop_target.execute(TOKENS)
    head = git(shop_target.repo, "rev-parse", "HEAD")
    job, view = run(app, "downgrade_then_reset", "shop", commit=shop_target.commits["the app"])
    assert job.state == "failed"
    assert step(view, "Downgrade the schema").state == "not_run"
    assert "The downgrade did not run; shop's database is unchanged." in job.result
    assert shop_target.versions() == {"b2000002"}
    assert git(shop_target.repo, "rev-parse", "HEAD") == head


def test_backups_that_cannot_work_are_refused_before_queueing(app, shop_target, gpg_homes, tmp_path):
    backups = Backups(tmp_path / "backups", gpg_homes[0].home, ())  # a folder, but nobody to encrypt to
    write_targets_file(app, shop_target.toml(backups=backups))
    shop_target.execute(TOKENS)
    with pytest.raises(ParamError, match="shop's backups are not usable: shop names no backup recipients") as caught:
        parse(app, "schema_downgrade", revision="-1")
    assert 'set recipients = ["ops@example.org"] in [targets.shop.backups]' in caught.value.problem
    assert parse(app, "schema_downgrade", revision="-1", skip_backup="yes")["skip_backup"] is True  # unprotected
    assert shop_target.versions() == {"b2000002"}
