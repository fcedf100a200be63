"""Backup files, manifests and folders Rewind's process may not read: every path names the file and the fix.

The refusals are the kernel's own: a chmod 000 file, read with root's override of file modes dropped for the
reading thread when the tests run as root (tests/support/privileges.py). Nothing is recorded, moved or half-written.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.auth.roles import Role
from app.backups.catalog import Catalog, NoAccess, manifest_path, partial_path, sha256_of
from app.backups.restore import copies
from app.backups.setup import setup_of
from app.jobs.engine import current_targets, engine
from tests.backups.conftest import RECIPIENT
from tests.backups.test_views import OLD, shop  # noqa: F401 - shop: the fixture
from tests.conftest import wait_for
from tests.deployments.test_runbooks import log_text, run
from tests.support.privileges import LeakedDrop, dropped_threads, permissions_apply
from tests.support.targets import write_targets_file

FIX = "give the user Rewind runs as"
# Every test: a SQLite target "shop" whose backup folder holds OLD, verified (tests/backups/test_views).
pytestmark = pytest.mark.usefixtures("shop")


@contextmanager
def unreadable(path: Path) -> Iterator[Path]:
    """`path` made mode 000 for the block, and read as an ordinary user would (root's override dropped)."""
    mode = path.stat().st_mode & 0o7777
    path.chmod(0)
    try:
        with permissions_apply():
            yield path
    finally:
        path.chmod(mode)


def folder_of(tmp_path) -> Path:
    return tmp_path / "backups"


def test_the_override_is_really_gone_for_the_block_and_back_after(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x")
    with unreadable(secret), pytest.raises(PermissionError):
        secret.read_bytes()
    assert secret.read_text() == "x"


def test_a_thread_that_outlives_the_block_fails_it_by_name_rather_than_leak_the_drop():
    release = threading.Event()
    lingering = threading.Thread(target=release.wait, name="lingering-reader")
    try:
        with pytest.raises(LeakedDrop, match="lingering-reader"), permissions_apply(threads_end_s=0.2):
            lingering.start()
    finally:
        release.set()
        lingering.join(timeout=10)
    assert not lingering.is_alive()
    # join() returns as Python lets go of the thread, a moment before the kernel's task goes from /proc
    wait_for(lambda: dropped_threads() == {})


def test_a_thread_the_block_starts_and_ends_leaves_nothing_dropped():
    with permissions_apply():
        inside = threading.Thread(target=lambda: None, name="short-reader")
        inside.start()
        inside.join(timeout=10)
    assert dropped_threads() == {}


def test_blocks_nest_and_the_outer_one_gives_the_override_back(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0)
    try:
        with permissions_apply(threads_end_s=0.2):
            with permissions_apply(threads_end_s=0.2), pytest.raises(PermissionError):
                secret.read_bytes()
            with pytest.raises(PermissionError):
                secret.read_bytes()  # still the outer block's
        assert secret.read_text() == "x" and dropped_threads() == {}
    finally:
        secret.chmod(0o600)


def test_a_backup_file_rewind_may_not_read_is_named_with_the_fix(tmp_path):
    catalog = Catalog(folder_of(tmp_path))
    path = folder_of(tmp_path) / OLD
    assert catalog.backups()[0].file_unreadable is None
    with unreadable(path):
        (listed,) = catalog.backups()  # listed: its size and time need no read
        assert listed.id == OLD and listed.file_unreadable.path == path
        with pytest.raises(NoAccess) as refused:
            sha256_of(path)
    assert refused.value.path == path and refused.value.what == "backup file" and refused.value.doing == "read"
    assert str(path) in refused.value.message and FIX in refused.value.fix and "chmod" in refused.value.fix


def test_a_manifest_rewind_may_not_read_is_neither_trusted_nor_set_aside_nor_overwritten(tmp_path):
    catalog = Catalog(folder_of(tmp_path))
    manifest = manifest_path(folder_of(tmp_path) / OLD)
    before = manifest.read_bytes()
    listed = catalog.backups()[0]
    with unreadable(manifest):
        (shown,) = catalog.backups()
        assert shown.manifest_unreadable is not None and shown.state == "unverified"
        with pytest.raises(NoAccess) as refused:
            catalog.get(OLD)
        with pytest.raises(NoAccess):
            catalog.record_verification(listed, how="quick", ok=False, detail="x", job_id=None)
    assert refused.value.path == manifest and f"manifest of {OLD}" in refused.value.message
    assert manifest.read_bytes() == before and json.loads(before)["verified"]["ok"] is True
    assert sorted(p.name for p in folder_of(tmp_path).iterdir() if not p.name.startswith(".")) == [
        OLD,
        manifest.name,
    ]


def test_a_backup_folder_rewind_may_not_read_is_named_by_the_catalog(tmp_path):
    folder = folder_of(tmp_path)
    catalog = Catalog(folder)
    with unreadable(folder):
        for call in (catalog.backups, catalog.unlisted, catalog.stale_partials, lambda: catalog.get(OLD)):
            with pytest.raises(NoAccess) as refused:
                call()
            assert refused.value.path == folder and refused.value.what == "backup folder"


def test_the_tab_the_index_the_overview_and_the_cli_say_the_folder_cannot_be_read(app, as_role, tmp_path):
    client = as_role(Role.VIEWER)
    folder = folder_of(tmp_path)
    assert engine(app).health  # started as at boot, not by the overview in the block: it would keep the drop for life
    with unreadable(folder):
        tab = client.get("/targets/shop/backups")
        index = client.get("/backups").get_data(as_text=True)
        overview = client.get("/targets/shop").get_data(as_text=True)
        listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    said = f"Rewind cannot read the backup folder {folder}: Permission denied"
    assert tab.status_code == 200 and said in tab.get_data(as_text=True) and FIX in tab.get_data(as_text=True)
    assert said in index and FIX in index
    assert f"could not be read: {said}" in overview
    (line,) = listed.stderr.splitlines()
    assert listed.exit_code == 1 and line.startswith(f"rewind: {said}") and FIX in line, listed.output


def test_the_tab_and_the_cli_name_a_manifest_they_may_not_read(app, as_role, tmp_path):
    manifest = manifest_path(folder_of(tmp_path) / OLD)
    with unreadable(manifest):
        page = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
        listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert "manifest unreadable" in page and f"Rewind cannot read the manifest of {OLD} {manifest}" in page
    # listed in full, then exit 1: the fixture's only backup is years old, the RPO late
    assert listed.exit_code == 1 and f"manifest unreadable: Rewind cannot read the manifest of {OLD}" in listed.output


def test_the_tab_and_the_cli_mark_a_backup_file_they_may_not_read(app, as_role, tmp_path):
    path = folder_of(tmp_path) / OLD
    with unreadable(path):
        page = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
        listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    said = f"Rewind cannot read the backup file {path}: Permission denied"
    assert 'badge-bad">unreadable</span>' in page and said in page and FIX in page
    assert listed.exit_code == 1 and f"(unreadable: {said}" in listed.output, listed.output  # the RPO is late
    assert "unreadable" not in as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)


def test_a_missing_backup_folder_is_said_on_the_tab(app, as_role, tmp_path):
    folder = folder_of(tmp_path)
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    page = as_role(Role.VIEWER).get("/targets/shop/backups")
    assert page.status_code == 200
    assert "The folder does not exist: the first backup makes it" in page.get_data(as_text=True)
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert listed.exit_code == 1 and listed.stdout.splitlines()[:2] == [
        f"no backups in {folder} (the folder does not exist: the first backup makes it; check backups.dir)",
        "newest verified: none; RPO 60 min: LATE",
    ], listed.output


@contextmanager
def runner_without_override(app) -> Iterator[None]:
    """A job runner whose threads are started with root's override dropped: jobs read as an ordinary user."""
    with permissions_apply():
        running = engine(app).start_runner()
        try:
            yield
        finally:
            running.stop(wait=True)


@pytest.mark.parametrize("level", ["quick", "restore-test"])
def test_verifying_a_backup_rewind_may_not_read_names_it_and_records_nothing(app, tmp_path, level):
    path = folder_of(tmp_path) / OLD
    manifest = manifest_path(path)
    before = manifest.read_bytes()
    path.chmod(0)
    try:
        with runner_without_override(app):
            job, view = run(app, "verify_backup", "shop", backup=OLD, level=level)
    finally:
        path.chmod(0o600)
    assert job.state == "failed", job.result
    assert f"Rewind cannot read the backup file {path}: Permission denied" in job.result, job.result
    assert FIX in job.result and "internal error" not in log_text(view) + job.result
    assert manifest.read_bytes() == before  # still verified as it was: an unreadable file says nothing of itself


def test_restoring_a_backup_rewind_may_not_read_is_refused_before_anything_is_made(app, tmp_path):
    path = folder_of(tmp_path) / OLD
    live = tmp_path / "data" / "shop.db"
    before, files = live.read_bytes(), sorted(p.name for p in live.parent.iterdir())
    path.chmod(0)
    try:
        with runner_without_override(app):
            job, view = run(app, "restore_backup", "shop", backup=OLD)
    finally:
        path.chmod(0o600)
    assert job.state == "failed", job.result
    assert f"Rewind cannot read the backup file {path}" in job.result and FIX in job.result, job.result
    assert "internal error" not in log_text(view)
    assert live.read_bytes() == before and sorted(p.name for p in live.parent.iterdir()) == files
    with app.app_context():
        assert [c.name for c in copies(setup_of(current_targets().open("shop")))] == [
            "shop.db.pre_restore_20240101000000"
        ]


def test_the_clean_up_names_a_folder_it_may_not_change_instead_of_an_internal_error(app, tmp_path):
    folder = folder_of(tmp_path)
    left = partial_path(folder / "shop_20240101_000000.db.gpg")
    left.write_bytes(b"x" * 4096)
    an_hour_ago = left.stat().st_mtime - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    folder.chmod(0o500)  # readable, not writable: the half-written file cannot be removed
    try:
        with runner_without_override(app):
            job, view = run(app, "cleanup_restores", "shop", older_than_hours=1000)
    finally:
        folder.chmod(0o700)
    assert job.state == "failed", job.result
    assert f"Rewind cannot write the backup folder {folder}: Permission denied" in job.result, job.result
    assert FIX in job.result and "internal error" not in log_text(view) + job.result
    assert left.exists()


def test_the_schedule_says_which_folder_it_cannot_read_and_still_decides_for_the_others(app, tmp_path, gpg_homes):
    from app.backups import schedule

    spare = tmp_path / "spare-backups"
    spare.mkdir()
    toml = ""
    for name, folder in (("shop", folder_of(tmp_path)), ("spare", spare)):
        toml += f"""
[targets.{name}]
[targets.{name}.repo]
path = "{tmp_path}"
[targets.{name}.database]
url = "sqlite:///{tmp_path / "data" / "shop.db"}"
[targets.{name}.backups]
dir = "{folder}"
gpg_home = "{gpg_homes[0].home}"
recipients = ["{RECIPIENT}"]
interval_minutes = 60
"""
    write_targets_file(app, toml)
    with app.app_context(), unreadable(folder_of(tmp_path)):
        decisions = {d.target: d for d in schedule.queue_due(dry_run=True)}
        due = app.test_cli_runner().invoke(args=["rewind", "backups", "due", "--dry-run"])
    assert decisions["shop"].action == schedule.UNKNOWN
    assert f"Rewind cannot read the backup folder {folder_of(tmp_path)}" in decisions["shop"].why
    assert decisions["spare"].action == schedule.DUE  # one target's folder does not stop the others
    assert due.exit_code == 0 and "shop: cannot tell — Rewind cannot read the backup folder" in due.output, due.output
    assert "spare: due" in due.output
