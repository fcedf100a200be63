"""Retention on a folder whose files Rewind may not all delete: each refusal named, the others deleted, never half.

The refusals are the kernel's own (tests/support/privileges.py drops root's overrides for the deleting thread):
a folder without write access, and a sticky folder (mode 1777) where only a file's owner may delete it, with
some files owned by another user.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.backups import retention
from app.backups.catalog import Catalog, NoAccess, manifest_path
from app.jobs.engine import engine
from tests.backups.test_views import OLD, shop  # noqa: F401 - shop: the fixture
from tests.deployments.test_runbooks import log_text, run
from tests.support.privileges import permissions_apply
from tests.support.targets import write_targets_file

FIX = "give the user Rewind runs as"
STRANGER = 65534  # another user's uid (nobody's): files of it, in a sticky folder, are not Rewind's to delete
# Every test: a SQLite target "shop" whose backup folder holds OLD, verified, not made by Rewind.
pytestmark = pytest.mark.usefixtures("shop")


def folder_of(tmp_path) -> Path:
    return tmp_path / "backups"


def own(folder: Path, day: int, *, verified: bool = True) -> str:
    """A backup Rewind made on 2024-01-<day>, with its manifest."""
    name = f"shop_202401{day:02d}_000000.sqlite.gpg"
    (folder / name).write_bytes(b"\x85x")
    manifest = {"file": name, "time": f"2024-01-{day:02d}T00:00:00+00:00", "format": "sqlite", "made_by": "rewind"}
    if verified:
        manifest["verified"] = {"ok": True, "how": "quick", "at": f"2024-01-{day:02d}T00:05:00+00:00"}
    manifest_path(folder / name).write_text(json.dumps(manifest))
    return name


@contextmanager
def sticky(folder: Path) -> Iterator[Path]:
    """The folder another user's, open to all with the sticky bit: Rewind deletes only the files it owns."""
    info = folder.stat()
    os.chown(folder, STRANGER, STRANGER)
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        folder.chmod(info.st_mode & 0o7777)
        os.chown(folder, info.st_uid, info.st_gid)


def strangers(*paths: Path) -> None:
    for path in paths:
        os.chown(path, STRANGER, STRANGER)


@contextmanager
def runner_as_ordinary_user(app) -> Iterator[None]:
    """A job runner whose threads have root's overrides of modes and owners dropped."""
    with permissions_apply(ownership=True):
        running = engine(app).start_runner()
        try:
            yield
        finally:
            running.stop(wait=True)


def keep_last(app, tmp_path, count: int) -> None:
    path = app.config["REWIND_SETTINGS"].config_path
    write_targets_file(app, path.read_text().replace("rpo_minutes = 60", f"rpo_minutes = 60\nkeep_last = {count}"))


def test_a_backup_in_a_folder_rewind_may_not_change_is_kept_whole_with_the_fix(tmp_path):
    folder = folder_of(tmp_path)
    name = own(folder, 1)
    catalog = Catalog(folder)
    backup = catalog.get(name)
    folder.chmod(0o500)
    try:
        with permissions_apply(), pytest.raises(NoAccess) as refused:
            retention.delete(catalog, backup)
    finally:
        folder.chmod(0o700)
    assert refused.value.path == folder / name and refused.value.doing == "delete"
    said = f"{refused.value.message} {refused.value.fix}"
    assert f"Rewind cannot delete the backup file {folder / name}: Permission denied" in said
    assert FIX in said and f"`ls -ld {folder}`" in said and "chmod or chown" in said
    assert (folder / name).exists() and manifest_path(folder / name).exists()  # nothing deleted, neither half
    assert catalog.get(name).state == "verified"


def test_a_manifest_that_cannot_follow_its_backup_is_left_named_and_removed_by_the_next_retention(tmp_path):
    folder = folder_of(tmp_path)
    name = own(folder, 1)
    catalog = Catalog(folder)
    backup = catalog.get(name)
    strangers(manifest_path(folder / name))  # the backup is Rewind's to delete, its manifest is not
    with sticky(folder), permissions_apply(ownership=True), pytest.raises(retention.HalfDeleted) as half:
        retention.delete(catalog, backup)
    assert not (folder / name).exists() and manifest_path(folder / name).exists()
    assert half.value.refused.path == manifest_path(folder / name)
    assert f"{name} was deleted, but its manifest {name}.json could not be (Operation not permitted)" in str(half.value)
    assert "sticky bit" in half.value.fix
    # an understood state: the tab names it; not listed as a backup; the next retention finishes the deletion
    assert [b.id for b in catalog.backups()] == [OLD]
    (left,) = catalog.unlisted()
    assert left.name == f"{name}.json"
    assert left.reason.startswith(f"a manifest whose backup {name} is not in the folder; if the backup is gone")
    assert catalog.orphan_manifests() == [manifest_path(folder / name)]
    retention.delete_orphan(catalog, manifest_path(folder / name))
    assert catalog.unlisted() == [] and catalog.orphan_manifests() == []


def test_an_orphan_manifest_rewind_did_not_write_is_not_deleted(tmp_path):
    folder = folder_of(tmp_path)
    (folder / "theirs.sql.gpg.json").write_text(json.dumps({"time": "2024-01-01T00:00:00+00:00"}))
    (folder / "broken.sql.gpg.json").write_text("{cut sh")
    assert Catalog(folder).orphan_manifests() == []


def test_retention_deletes_what_it_may_names_what_it_may_not_and_ends_with_warnings(app, tmp_path):
    folder = folder_of(tmp_path)
    deletable = [own(folder, 1), own(folder, 3, verified=False)]
    theirs = own(folder, 2)  # owned by another user: refused
    half = own(folder, 4)  # its manifest owned by another user: the file goes, the manifest stays
    strangers(folder / theirs, manifest_path(folder / theirs), manifest_path(folder / half))
    keep_last(app, tmp_path, 1)
    with sticky(folder), runner_as_ordinary_user(app):
        job, view = run(app, "backup", "shop")
    log = log_text(view)
    assert job.state == "warning", job.result  # "succeeded with warnings": the backup was made and verified
    assert "“Apply retention” failed: 2 files past retention could not be deleted (3 of 4 backups were)" in job.result
    assert f"could not delete {theirs} (kept): Rewind cannot delete the backup file {folder / theirs}" in log
    assert f"{half} was deleted, but its manifest {half}.json could not be" in log
    assert FIX in job.result and "internal error" not in log + job.result
    for name in deletable:
        assert f"deleted {name} (2024-01-" in log and not (folder / name).exists()
        assert not manifest_path(folder / name).exists()
    catalog = Catalog(folder)
    newest = catalog.backups()[0]
    assert newest.id not in (OLD, theirs) and newest.state == "verified"  # the job's own backup: never deleted
    assert {b.id for b in catalog.backups()} == {newest.id, theirs, OLD}  # OLD is not Rewind's: never deleted
    assert catalog.get(theirs).state == "verified"  # kept whole, manifest and all
    assert catalog.orphan_manifests() == [manifest_path(folder / half)]

    strangers()  # access given back (the folder no longer sticky): the next backup's retention finishes the job
    with runner_as_ordinary_user(app):
        job, view = run(app, "backup", "shop")
    assert job.state == "succeeded", job.result
    log = log_text(view)
    assert f"deleted {half}.json, a manifest left without its backup by an earlier deletion" in log
    assert f"deleted {theirs} (2024-01-02" in log and f"deleted {newest.id}" in log
    assert Catalog(folder).orphan_manifests() == [] and Catalog(folder).unlisted() == []
    assert len([b for b in Catalog(folder).backups() if not b.foreign]) == 1


def test_a_verification_a_manifest_claims_with_anything_but_true_is_no_pass_and_protects_nothing(tmp_path):
    """A hand-edited manifest saying "ok": "false" counted as verified, and so as the newest verified to keep."""
    from datetime import UTC, datetime

    folder = folder_of(tmp_path)
    names = [own(folder, day) for day in (1, 2, 3)]
    newest = manifest_path(folder / names[2])
    claimed = json.loads(newest.read_text())
    claimed["verified"]["ok"] = "false"
    claimed["restore_tested"] = claimed["verified"]
    newest.write_text(json.dumps(claimed))
    backups = Catalog(folder).backups()
    assert [b.state for b in backups[:3]] == ["failed", "verified", "verified"]  # newest first
    doomed = retention.plan(backups, 1, 0, datetime(2024, 2, 1, tzinfo=UTC))
    assert [b.id for b in doomed] == [names[0]]  # the newest verified is the one truly verified, names[1]


def test_a_backup_dated_in_the_future_does_not_let_retention_delete_the_real_newest_verified(tmp_path):
    """Review: a verified backup dated ahead (a clock skew) counted as the newest verified, so with keep_last = 1
    the real newest verified one, a day older and not among the last one kept, was deleted."""
    from datetime import UTC, datetime

    folder = folder_of(tmp_path)
    real = own(folder, 10)  # verified, the real newest
    unverified = own(folder, 11, verified=False)
    ahead = own(folder, 20)  # verified, but dated ahead of "now" below
    now = datetime(2024, 1, 12, tzinfo=UTC)
    doomed = {b.id for b in retention.plan(Catalog(folder).backups(), 1, 0, now)}
    assert real not in doomed and ahead not in doomed, doomed  # the last one kept, and the real newest verified
    assert unverified in doomed


def test_a_backup_of_another_database_in_the_folder_is_not_this_target_s_to_delete_count_or_offer(
    app, runner, as_role, tmp_path
):
    """QA: a staging backup in production's folder (a folder two targets share, or a file copied across) was listed
    as production's, counted as its newest verified backup for the RPO, and production's retention (keep_last = 1)
    deleted it: "deleted staging_….dump.gpg, past retention". Its manifest names its database: it is named apart."""
    from datetime import UTC, datetime

    from app.auth.roles import Role

    folder = folder_of(tmp_path)
    other = own(folder, 1)
    manifest = json.loads(manifest_path(folder / other).read_text())
    manifest["database"] = "staging.db"
    manifest["time"] = datetime.now(UTC).isoformat()  # verified, and newer than anything of shop's
    manifest_path(folder / other).write_text(json.dumps(manifest))
    ours = own(folder, 2)
    keep_last(app, tmp_path, 1)
    words = f"{other}: a backup of database staging.db, not of shop.db (its manifest says): not offered, counted"

    tab = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    assert words in tab.replace("<code>", "").replace("</code>", ""), tab
    rpo = tab[tab.index('<p id="rpo">') :].split("</p>")[0]
    assert other not in rpo and "older than the RPO" in rpo, rpo  # shop's own newest is years old
    assert f"backup={other}" not in tab and f'value="{other}"' not in tab  # no button names it
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert listed.exit_code == 1 and f"not listed: {words}" in listed.output, listed.output

    job, view = run(app, "backup", "shop")
    assert job.state == "succeeded", (job.result, log_text(view))
    assert f"deleted {ours} (2024-01-02" in log_text(view)
    assert other not in log_text(view) and (folder / other).exists() and manifest_path(folder / other).exists()


@pytest.mark.parametrize("named", ["", 5, None])
def test_a_manifest_naming_no_database_keeps_its_backup_this_target_s_to_list_and_restore(tmp_path, named):
    """Review: the listing hid a backup whose manifest said "database": "" that the restore would take, and listed
    one naming 5 that the restore refused. One rule (Backup.made_of): only a name is another database."""
    folder = folder_of(tmp_path)
    mine = own(folder, 1)
    manifest = json.loads(manifest_path(folder / mine).read_text())
    manifest["database"] = named
    manifest_path(folder / mine).write_text(json.dumps(manifest))
    catalog = Catalog(folder, database="shop.db")
    assert mine in [b.id for b in catalog.listing().backups] and not catalog.listing().unlisted
    assert catalog.get(mine).made_of is None  # what the restore's check_kind goes by: it takes it
