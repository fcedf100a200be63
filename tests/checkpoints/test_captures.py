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


def test_the_code_part_records_a_checkout_that_is_not_the_branch_head(app, code_target):
    """QA: with a detached HEAD on the server, a checkpoint said only the branch's head, while the application ran
    the older commit checked out: the part records what the checkout is, and why."""
    from app.jobs.engine import current_targets
    from tests.support.targets import git

    tip, older = code_target.commits[-1], code_target.commits[2]
    git(code_target.repo, "checkout", "-q", "--detach", older)
    with app.app_context():
        value = captures.take_all(current_targets().open("staging"))["code"]
    assert (value["commit"], value["checkout"]) == (tip, older)
    assert captures.line("code", value) == (
        f"code: {tip[:12]} on main (the checkout differs: {code_target.repo} has a detached HEAD at {older[:12]} "
        "checked out, not 'main')"
    )
    git(code_target.repo, "checkout", "-q", "main")
    with app.app_context():
        assert "checkout" not in captures.take_all(current_targets().open("staging"))["code"]
