"""Review: the Backups tab's "Drop copies older than N h" button drops a pre-restore copy no backup holds."""

from __future__ import annotations

import pytest

from tests.backups.test_runbooks import backup_now, copies
from tests.deployments.test_runbooks import log_text, run


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_manual_cleanup_keeps_the_only_copy_of_rows_written_after_the_backup(app, runner, data_target):
    name = backup_now(app, data_target)
    data_target.execute('INSERT INTO "user" VALUES (?, ?, ?)', (100, "late", "2099-01-01 00:00:00+00"))
    job, view = run(app, "restore_backup", data_target.name, backup=name)
    assert job.state == "succeeded", log_text(view)
    (pre,) = copies(data_target)
    # the button posts only older_than_hours (spare_unsaved defaults to "no"); 0 h stands for "a day later"
    job, view = run(app, "cleanup_restores", data_target.name, older_than_hours=0)
    print(job.state, job.result)
    backups = sorted(p.name for p in data_target.backup_dir.iterdir() if p.name.endswith(".gpg"))
    assert pre in copies(data_target) or len(backups) > 1, (
        f"{pre}, the only place the row written after the backup lived, was dropped without a backup: {job.result}"
    )
