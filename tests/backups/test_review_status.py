"""Review: a backup whose latest restore test failed still shows as the last restore-tested backup."""

from __future__ import annotations

from app.backups.catalog import Backup, Catalog
from app.backups.status import freshness


def test_a_failed_restore_test_is_not_shown_as_restore_tested(tmp_path):
    (tmp_path / "shop_20260101_000000.dump.gpg").write_bytes(b"\x85x")
    catalog = Catalog(tmp_path)
    backup = catalog.get("shop_20260101_000000.dump.gpg")
    backup = catalog.save(Backup(backup.path, {**backup.manifest, "made_by": "rewind"}))
    backup = catalog.record_verification(backup, how="restore-test", ok=True, detail="restores", job_id=1)
    catalog.record_verification(backup, how="restore-test", ok=False, detail="lacks table user", job_id=2)
    fresh = freshness(catalog, None)
    assert fresh.newest_verified is None
    assert fresh.last_restore_tested is None, (
        "the page says 'last restore-tested backup: … ago' for a backup whose last restore test failed"
    )
