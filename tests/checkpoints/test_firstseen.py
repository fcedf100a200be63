"""A target seen healthy before Rewind ever verified it gets its deployed commit as the first known-good mark."""

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.audit.store import Actor
from app.checkpoints import store
from app.checkpoints.models import KnownGood
from app.extensions import db
from app.jobs import runbook, service
from app.jobs.engine import current_targets, engine


def marks(app) -> list[tuple[str, str, int | None]]:
    with app.app_context():
        return [(k.target, k.commit, k.job_id) for k in db.session.scalars(select(KnownGood))]


def test_first_healthy_check_marks_the_deployed_commit(app, code_target):
    with app.app_context():
        engine(app).health.probe_all()
        audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "checkpoints.known_good")).all()
        assert [(a.target, a.actor_name) for a in audit] == [("staging", "system")]
    assert marks(app) == [("staging", code_target.head(), None)]
    with app.app_context():
        engine(app).health.probe_all()  # seen again: nothing more
        assert (
            db.session.scalar(
                select(db.func.count()).select_from(AuditEvent).where(AuditEvent.action == "checkpoints.known_good")
            )
            == 1
        )


def test_an_unhealthy_target_is_not_marked(app, code_target):
    with app.app_context():
        current_targets().open("staging").process().stop()
        engine(app).health.probe_all()
    assert marks(app) == []


def test_a_target_with_a_mark_keeps_it(app, code_target):
    with app.app_context():
        store.mark_known_good("staging", code_target.commits[0], None)
        engine(app).health.probe_all()
    assert marks(app) == [("staging", code_target.commits[0], None)]


def test_a_busy_target_is_not_marked(app, code_target):
    with app.app_context():
        service.enqueue(runbook.get("restart"), "staging", {}, Actor(None, "oncall"))  # no runner: stays queued
        engine(app).health.probe_all()
    assert marks(app) == []


def test_a_checkout_with_a_server_side_hot_fix_is_not_marked(app, code_target):
    # What answered is the edited working copy, not the branch's commit.
    (code_target.repo / "CHANGES.md").write_text("edited on the server\n")
    with app.app_context():
        engine(app).health.probe_all()
    assert marks(app) == []
