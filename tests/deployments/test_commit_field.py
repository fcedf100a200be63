"""health.commit_field: a verification passes only when the app says it runs the checkout's commit."""

from __future__ import annotations

import os
import subprocess
import sys

from app.jobs.engine import current_targets
from tests.deployments.test_runbooks import log_text, run
from tests.support.targets import git, write_targets_file


def reporting(toml: str) -> str:
    """The target's settings with its app saying which commit it runs, and Rewind looking at it."""
    toml = toml.replace(
        "[targets.staging.health]\n",
        '[targets.staging.process.env]\nSERVE_COMMIT = "1"\n\n[targets.staging.health]\n',
        1,
    )
    return toml + 'commit_field = "commit"\n'


def test_a_revert_is_verified_running_the_reverted_commit(app, runner, code_target):
    write_targets_file(app, reporting(code_target.toml()))  # the revert's restart starts it saying so
    job, _ = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "succeeded", job.result
    assert f"runs {code_target.head()[:12]}" in job.verification_detail


def test_a_restart_command_that_exits_0_without_restarting_fails_the_verification(app, runner, code_target, tmp_path):
    """The app started by hand keeps serving the old code: healthy, but not what the checkout now holds."""
    with app.app_context():
        current_targets().open(code_target.name).process().stop()  # the fixture's managed copy
    before = code_target.head()
    serving = subprocess.Popen(
        [sys.executable, "server.py", str(code_target.port)],
        cwd=code_target.repo,
        env={**os.environ, "SERVE_COMMIT": "1"},
    )
    try:
        managed = code_target.toml(health_timeout=2).split("[targets.staging.process]")[0]
        unmanaged = f"""[targets.staging.process]
restart = ["true"]

[targets.staging.health]
url = "{code_target.url}"
timeout = 2
commit_field = "commit"
"""
        write_targets_file(app, managed + unmanaged)
        job, view = run(app, "revert", commits=code_target.commits[2][:8])
        assert job.state == "failed"
        assert code_target.head() != before  # the revert is in; the process that answers predates it
        said = (
            f"JSON field commit says it runs {before[:12]}, where the checkout is at {code_target.head()[:12]}: "
            "the app still runs other code (a restart that did not restart it?)"
        )
        assert said in job.result, job.result
        assert said in log_text(view)
    finally:
        serving.terminate()
        serving.wait(timeout=10)
        write_targets_file(app, code_target.toml())  # managed again, for the fixture's stop


def test_the_commit_expected_is_what_the_working_copy_has_checked_out_not_the_branch_tip(app, runner, code_target):
    """A hot-fix checkout (a detached HEAD) runs what it has checked out: that is the commit to answer with."""
    write_targets_file(app, reporting(code_target.toml()))
    git(code_target.repo, "checkout", "-q", "--detach", code_target.commits[1])
    job, _ = run(app, "restart")
    assert job.state == "succeeded", job.result
    assert f"runs {code_target.commits[1][:12]}" in job.verification_detail
