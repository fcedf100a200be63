"""Review: a database name of 37-40 bytes fits the scratch name but not the pre-restore name."""

from __future__ import annotations

import uuid

import pytest

from app.targets import registry
from tests.backups.conftest import DataTarget, _fill
from tests.backups.test_runbooks import app_pid, backup_now
from tests.deployments.test_runbooks import health, log_text, run
from tests.support.targets import make_code_target, write_targets_file


@pytest.fixture
def long_target(app, tmp_path, gpg_homes, pg_server):
    code = make_code_target(tmp_path / "t")
    name = f"customer_portal_prod__x{uuid.uuid4().hex[:8]}_db_v2"  # 37 bytes
    assert len(name) == 37
    url = pg_server.create_database(name)
    target = DataTarget(code, "postgresql", url, tmp_path / "backups", gpg_homes[0], pg_url=pg_server.url())
    _fill(target)
    write_targets_file(app, target.toml())
    with app.app_context():
        registry.current().open(target.name).process().start()
        assert registry.current().open(target.name).health().wait_healthy().ok
    yield target
    with app.app_context():
        registry.current().open(target.name).process().stop()


def test_a_37_byte_database_name_leaves_the_app_stopped(app, runner, long_target):
    name = backup_now(app, long_target)
    job, view = run(app, "restore_backup", long_target.name, backup=name)
    text = log_text(view)
    print(job.state, job.result)
    print([s.state for s in view.steps])
    print("app pid after:", app_pid(app, long_target))
    print("databases:", [d for d in long_target.databases() if d.startswith("customer_portal")])
    assert job.state != "succeeded"
    # The bug: the job failed *after* the stop, and nothing started the app again.
    assert app_pid(app, long_target) is not None, "the application was left stopped: " + job.result
