"""A restore test holds its target as a change does: never beside a restore's stop, swap and start."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.audit.store import Actor
from app.auth.roles import Role
from app.backups.catalog import manifest_path
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.models import Job
from tests.backups.controlled import back_to_managed, ctl_argv, then_hold, use_commands
from tests.backups.test_runbooks import backup_now, copies
from tests.conftest import wait_for
from tests.deployments.test_runbooks import ADMIN, log_text, run
from tests.support.apps import post
from tests.support.jobs import finished


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_restore_test_while_a_restore_holds_the_target_is_refused_and_marks_nothing(
    app, runner, as_role, data_target
):
    name = backup_now(app, data_target)
    manifest = manifest_path(data_target.backup_dir / name)
    recorded = manifest.read_bytes()
    reached = data_target.code.repo.parent / "stopped"
    use_commands(app, data_target, stop=then_hold(data_target, ctl_argv(data_target, "stop"), reached))
    try:
        with app.app_context():
            book = runbooks.get("restore_backup")
            params = book.parse_params({"backup": name}, data_target.name)
            restore_id = service.enqueue(book, data_target.name, params, ADMIN).id
        wait_for(reached.exists, timeout=120)  # the restore has stopped the app: its swap comes next

        fields = {"runbook": "verify_backup", "target": data_target.name, "backup": name, "level": "restore-test"}
        response = post(as_role(Role.OPERATOR), "/jobs", fields)
        said = response.get_data(as_text=True)
        assert response.status_code == 409, said
        assert f"{data_target.name} is busy: job #{restore_id} (Restore a backup, started by" in said, said
        assert "Wait for it to finish or cancel it first." in said
        with app.app_context():
            assert db.session.scalars(select(Job).where(Job.runbook == "verify_backup")).all() == []
            refusal = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
            assert refusal.action == "job.queued" and refusal.outcome == "denied"
            details = json.loads(refusal.details)
            assert details["reason"] == "target busy" and details["busy_job"] == restore_id
        assert manifest.read_bytes() == recorded  # the good backup is not marked failed, nor anything else

        with app.app_context():  # the quick check reads only the file: it still runs beside the restore
            verify = runbooks.get("verify_backup")
            params = verify.parse_params({"backup": name}, data_target.name)
            quick = service.enqueue(verify, data_target.name, params, ADMIN)
            quick_id, quick_holds = quick.id, quick.mutates
            service.cancel(db.session.get(Job, restore_id), Actor(None, "the on-call engineer"))
        assert quick_holds is False and finished(app, quick_id, timeout=120)[0].state == "succeeded"
        restore, view = finished(app, restore_id, timeout=120)
        assert restore.state == "cancelled", log_text(view)
    finally:
        back_to_managed(app, data_target)

    # the target free again, the restore test runs, holding the target while it does
    job, view = run(app, "verify_backup", data_target.name, backup=name, level="restore-test")
    assert job.state == "succeeded" and job.mutates is True, log_text(view)
    assert copies(data_target) == []
