"""Several writers of one manifest at once (threads, processes): every writer's change survives."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.backups import retention
from app.backups.catalog import Backup, Catalog, CatalogError, manifest_path

ROUNDS = 60
REPO = Path(__file__).resolve().parents[2]


def _a_backup(folder: Path) -> str:
    path = folder / "shop_20260101_000000.dump.gpg"
    path.write_bytes(b"\x85backup")
    manifest_path(path).write_text(
        json.dumps({"file": path.name, "time": "2026-01-01T00:00:00+00:00", "format": "custom", "made_by": "rewind"})
    )
    return path.name


def test_a_quick_verify_and_a_restore_test_that_both_read_first_both_keep_their_record(tmp_path):
    """Each job read the backup when it started; the one that records last must not undo the other's record."""
    catalog = Catalog(tmp_path)
    backup_id = _a_backup(tmp_path)
    read_by_quick = catalog.get(backup_id)
    read_by_restore_test = catalog.get(backup_id)

    catalog.record_verification(read_by_restore_test, how="restore-test", ok=True, detail="restores", job_id=1)
    catalog.record_verification(read_by_quick, how="quick", ok=True, detail="decrypts", job_id=2)

    after = catalog.get(backup_id)
    assert after.restore_tested is not None and after.restore_tested["job_id"] == 1
    assert after.verified["job_id"] == 2 and after.verified["how"] == "quick"
    assert after.manifest["format"] == "custom" and after.manifest["made_by"] == "rewind"


def _write_keys(folder: Path, backup_id: str, prefix: str, start: threading.Barrier | None = None) -> None:
    catalog = Catalog(folder)
    if start is not None:
        start.wait(timeout=30)
    for i in range(ROUNDS):
        catalog.save(catalog.get(backup_id), **{f"{prefix}{i}": i})


def test_threads_writing_one_manifest_at_once_lose_nothing(tmp_path):
    backup_id = _a_backup(tmp_path)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            _write_keys(tmp_path, backup_id, prefix, start)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and errors == []

    manifest = Catalog(tmp_path).get(backup_id).manifest
    for prefix in ("a", "b", "c"):
        assert [manifest.get(f"{prefix}{i}") for i in range(ROUNDS)] == list(range(ROUNDS)), prefix
    assert manifest["made_by"] == "rewind"


WRITER = """
import sys
from pathlib import Path
from app.backups.catalog import Catalog

folder, backup_id, prefix, rounds = sys.argv[1:]
catalog = Catalog(Path(folder))
print("ready", flush=True)
sys.stdin.readline()  # the go: both writers start together
for i in range(int(rounds)):
    catalog.save(catalog.get(backup_id), **{f"{prefix}{i}": i})
"""


def test_processes_writing_one_manifest_at_once_lose_nothing(tmp_path):
    backup_id = _a_backup(tmp_path)
    procs = []
    for prefix in ("p", "q"):
        args = [sys.executable, "-c", WRITER, str(tmp_path), backup_id, prefix, str(ROUNDS)]
        procs.append(
            subprocess.Popen(
                args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert outcomes == [(0, ""), (0, "")]

    manifest = Catalog(tmp_path).get(backup_id).manifest
    for prefix in ("p", "q"):
        assert [manifest.get(f"{prefix}{i}") for i in range(ROUNDS)] == list(range(ROUNDS)), prefix


def test_a_record_on_a_backup_deleted_meanwhile_is_refused_and_leaves_no_manifest(tmp_path):
    catalog = Catalog(tmp_path)
    backup = catalog.get(_a_backup(tmp_path))
    retention.delete(catalog, backup)
    with pytest.raises(CatalogError, match=r"deleted .* meanwhile"):
        catalog.record_verification(backup, how="quick", ok=True, detail="decrypts", job_id=3)
    assert not manifest_path(backup.path).exists() and catalog.backups() == []


def test_a_new_backup_s_manifest_replaces_a_stray_one_left_by_a_file_once_of_that_name(tmp_path):
    catalog = Catalog(tmp_path)
    old = catalog.get(_a_backup(tmp_path))
    catalog.record_verification(old, how="quick", ok=True, detail="decrypts", job_id=1)
    old.path.unlink()  # removed by hand, its manifest left behind
    old.path.write_bytes(b"\x85new")
    fresh = {"file": old.id, "time": "2026-01-01T00:00:00+00:00", "format": "custom", "made_by": "rewind", "job_id": 9}

    added = catalog.add(Backup(old.path, fresh))
    again = catalog.get(old.id)
    assert again.manifest == added.manifest and again.manifest["job_id"] == 9
    assert again.state == "unverified" and again.size == 4
