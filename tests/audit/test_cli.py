"""`flask rewind audit head|verify`, in-process and as the real command."""

import json
import os
import sqlite3
import subprocess
import sys

from app.audit import store
from app.auth.roles import Role
from app.extensions import db
from app.statuses import ExitStatus, Outcome
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


def test_export_writes_what_the_page_s_export_links_give_for_the_same_filters(app, users, as_role, tmp_path):
    """The page's CSV and JSON-lines downloads had no command beside them: a shell on the server could not take the
    incident's rows for a report without a browser session."""
    from tests.audit.test_views import seed

    seed(app, 1205)  # more than one export batch
    page = as_role(Role.VIEWER)
    for form in ("csv", "jsonl"):
        wanted = f"/audit/export.{form}?action=flag&target=production&outcome=ok"
        downloaded = page.get(wanted).get_data(as_text=True)
        out = tmp_path / f"rows.{form}"
        args = ("export", "--format", form, "--action", "flag", "--target", "production", "--outcome", "ok")
        written = run(app, *args, "-o", str(out))
        assert written.exit_code == 0 and written.output == "", written.output
        assert out.read_bytes().decode() == downloaded  # byte for byte
        assert run(app, *args).stdout_bytes.decode() == downloaded  # or to standard output
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(rows) > 1 and {(r["action"], r["target"], r["outcome"]) for r in rows} == {
        ("flag.toggle", "production", "ok")
    }


def test_export_with_a_filter_it_cannot_read_says_which_and_writes_nothing(app, tmp_path):
    out = tmp_path / "rows.csv"
    result = run(app, "export", "--from", "garbage", "--outcome", "maybe", "-o", str(out))
    assert result.exit_code == ExitStatus.REFUSED and result.stdout == ""
    assert result.stderr == (
        f"rewind: bad filter: outcome: 'maybe' is not an outcome; choose one of {', '.join(Outcome)} · "
        "since: 'garbage' is not a time; use 2026-11-26 14:05 or an ISO 8601 time\n"
    )
    assert not out.exists()
