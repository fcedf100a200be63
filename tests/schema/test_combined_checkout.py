"""Downgrade-then-reset on a checkout that cannot take the reset: refused before the schema goes down."""

import pytest

from tests.deployments.test_runbooks import run
from tests.support.targets import git


@pytest.mark.parametrize("shape", ["lock", "hotfix"])
def test_a_checkout_that_cannot_take_the_reset_stops_the_job_before_the_downgrade(app, runner, shop_target, shape):
    the_app = shop_target.commits["the app"]
    before = git(shop_target.repo, "rev-parse", "HEAD")
    versions = shop_target.versions()
    if shape == "lock":
        lock = shop_target.repo / ".git" / "index.lock"
        lock.write_text("")
        expected = f"git's lock file {lock} exists"
    else:
        tracked = git(shop_target.repo, "ls-files").split()[0]
        (shop_target.repo / tracked).write_text("# hot-fix made on the server\n")
        expected = f"uncommitted changes to {tracked}"
    job, view = run(app, "downgrade_then_reset", "shop", commit=the_app, backup_confirmed="yes")
    assert job.state == "failed"
    assert expected in job.result, job.result
    plan = next(s for s in view.steps if s.title == "What the downgrade destroys")
    assert plan.state == "failed" and [s.state for s in view.steps[: plan.index]] == ["succeeded"]
    assert shop_target.versions() == versions, "the schema must not go down when the code cannot follow"
    assert git(shop_target.repo, "rev-parse", "HEAD") == before
