"""`flask rewind audit head|verify`, in-process and as the real command."""

import os
import sqlite3
import subprocess
import sys

from app.audit import store
from app.extensions import db
from tests.support.apps import build_app, migrate


def run(app, *args):
    return app.test_cli_runner().invoke(args=["rewind", "audit", *args])


def fill(app, n):
    with app.app_context():
        for i in range(n):
            store.record("test.event", details={"i": i})
        db.session.commit()


def test_head_then_verify_against_it(app):
    empty = run(app, "head")
    assert empty.exit_code == 1 and empty.stdout == ""  # empty log: nothing to anchor yet
    assert empty.stderr == "rewind: the audit log is empty: there is no row to anchor yet\n"
    fill(app, 4)
    head = run(app, "head").output.strip()
    assert head.startswith("4:") and len(head) == 2 + 64
    result = run(app, "verify", "--head", head)
    assert result.exit_code == 0 and "intact: 4 rows" in result.output


def test_verify_names_the_cut_tail(app):
    fill(app, 4)
    head = run(app, "head").output.strip()
    with app.app_context():
        db.session.execute(db.text("DELETE FROM audit_event WHERE id = 4"))
        db.session.commit()
    result = run(app, "verify", "--head", head)
    assert result.exit_code == 1 and "the tail was cut" in result.output


def test_malformed_head_is_a_usage_error(app):
    result = run(app, "verify", "--head", "12:nothex")
    assert result.exit_code == 2 and "ID:HASH" in result.output


def test_real_command_on_a_fresh_database_then_after_a_hand_edit(tmp_path):
    """What the issue promises, with the real `flask` executable: 0 when fresh, non-zero after tampering."""
    instance = tmp_path / "instance"
    database = tmp_path / "ops.db"
    migrate(build_app(instance, f"sqlite:///{database}"))
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "REWIND_INSTANCE_DIR": str(instance),
        "REWIND_DATABASE_URL": f"sqlite:///{database}",
    }
    flask = [sys.executable, "-m", "flask"]
    fresh = subprocess.run([*flask, "rewind", "audit", "verify"], env=env, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert "intact: 0 rows" in fresh.stdout
    created = subprocess.run([*flask, "rewind", "init-admin"], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE audit_event SET actor_name = 'someone-else' WHERE id = 1")
    broken = subprocess.run([*flask, "rewind", "audit", "verify"], env=env, capture_output=True, text=True)
    assert broken.returncode == 1
    assert "row 1 was changed" in broken.stderr
