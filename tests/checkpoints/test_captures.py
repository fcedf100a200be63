"""How a checkpoint's parts are said in a job log: each by a label that cannot be misread."""

from app.backups import captures as _backups  # noqa: F401 - registers the backup part
from app.checkpoints import captures
from app.deployments import captures as _deployments  # noqa: F401 - registers the code part


def test_the_backup_part_is_said_as_the_newest_verified_backup_not_as_what_is_live():
    value = {"file": "production_20261127_001658.sql.gpg", "time": "2026-11-27T00:16:58+00:00", "sha256": "ab"}
    assert captures.line("backup", value) == (
        "newest verified backup: production_20261127_001658.sql.gpg (taken 2026-11-27 00:16 UTC)"
    )
    assert captures.line("backup", {"file": None}) == "newest verified backup: none"
    assert captures.line("code", {"commit": "0123456789abcdef", "branch": "main"}) == "code: 0123456789ab on main"
    assert captures.line("backup", {"error": "folder gone"}) == "newest verified backup: not captured: folder gone"
