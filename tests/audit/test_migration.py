"""Migration 0004: rows written before the job_id column get it from their details, and it can be undone."""

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from app.audit import chain, store
from app.extensions import db
from app.migrating import enable
from tests.support.apps import build_app


def test_upgrade_fills_job_id_of_existing_rows_and_the_chain_still_verifies(tmp_path):
    app = build_app(tmp_path / "instance", f"sqlite:///{tmp_path / 'ops.db'}")
    key = app.config["REWIND_AUDIT_KEY"]
    enable(app)
    with app.app_context():
        upgrade(revision="0003_deployments")
        prev = chain.GENESIS
        for row_id, details in enumerate(['{"job_id":12,"runbook":"x"}', '{"note":"no job"}', '{"job_id":"7"}'], 1):
            ts = "2026-11-25T12:00:00.000000Z"
            values = (row_id, ts, None, "system", "job.queued", None, details, "ok", None, None, prev)
            digest = chain.row_hash(key, values)
            db.session.execute(
                text(
                    "INSERT INTO audit_event (id, ts, actor_name, action, details, outcome, prev_hash, hash) "
                    "VALUES (:id, '2026-11-25 12:00:00.000000', 'system', 'job.queued', :d, 'ok', :p, :h)"
                ),
                {"id": row_id, "d": details, "p": prev, "h": digest},
            )
            prev = digest
        db.session.execute(text("UPDATE audit_head SET last_id = 3, last_hash = :h"), {"h": prev})
        db.session.commit()
        upgrade()
        job_ids = db.session.execute(text("SELECT id, job_id FROM audit_event ORDER BY id")).all()
        assert [tuple(r) for r in job_ids] == [(1, 12), (2, None), (3, None)]
        assert [e.id for e in store.job_rows(12)] == [1]
        assert store.verify().intact
        assert store.read_mark().head.id == 3
        downgrade(revision="0003_deployments")
        columns = {c["name"] for c in inspect(db.engine).get_columns("audit_event")}
        assert "job_id" not in columns and not inspect(db.engine).has_table("audit_mark")
        db.session.remove()
        db.engine.dispose()
