"""`flask db` loads Flask-Migrate (and Alembic) when it runs; a web process never imports them."""

import sqlite3
import subprocess
import sys

from alembic.config import Config
from alembic.script import ScriptDirectory

from app.migrating import MIGRATIONS
from tests.support.apps import build_app

SERVED = """
import sys
from app import create_app
from app.settings import load_settings
app = create_app(load_settings({"REWIND_INSTANCE_DIR": sys.argv[1]}))
app.test_client().get("/healthz")
print(sorted(name for name in ("alembic", "flask_migrate") if name in sys.modules))
"""


def test_a_web_process_never_imports_flask_migrate_or_alembic(tmp_path):
    result = subprocess.run([sys.executable, "-c", SERVED, str(tmp_path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_db_commands_take_flask_migrate_s_options_and_migrate(tmp_path):
    app = build_app(tmp_path, f"sqlite:///{tmp_path / 'ops.db'}")
    cli = app.test_cli_runner()
    mistyped = cli.invoke(args=["db", "upgade"])  # first: the stand-in, not Flask-Migrate's group, reads it
    assert mistyped.exit_code == 2 and "Did you mean 'upgrade'?" in mistyped.output, mistyped.output
    listed = cli.invoke(args=["db", "--help"])
    assert "--directory" in listed.output and "upgrade" in listed.output and "downgrade" in listed.output
    assert cli.invoke(args=["db", "-d", str(MIGRATIONS), "-x", "unused=1", "upgrade"]).exit_code == 0
    with sqlite3.connect(tmp_path / "ops.db") as conn:
        (row,) = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert [row[0]] == ScriptDirectory.from_config(config).get_heads()


def test_downgrading_the_job_table_s_columns_on_sqlite_keeps_every_job_and_its_events(tmp_path):
    """Batch mode rebuilt the job table on SQLite: dropping the old one, foreign keys on, deleted every job's events."""
    app = build_app(tmp_path, f"sqlite:///{tmp_path / 'ops.db'}")
    cli = app.test_cli_runner()
    assert cli.invoke(args=["db", "upgrade"]).exit_code == 0
    with sqlite3.connect(tmp_path / "ops.db") as conn:
        conn.execute(
            "INSERT INTO job (id, runbook, params, mutates, actor_name, state, created_at, verification, "
            "verification_detail, done) VALUES (1, 'test.count', '{}', 0, 'a', 'succeeded', '2026-01-01', 'none', '', "
            "'deployed x')"
        )
        conn.execute("INSERT INTO job_event (job_id, seq, kind, payload, ts) VALUES (1, 1, 'log', '{}', '2026-01-01')")
    # down past every migration that drops a column of job (0014, 0011, 0010, 0007), each in place
    downgraded = cli.invoke(args=["db", "downgrade", "0006_checkpoint_captures"])
    assert downgraded.exit_code == 0, downgraded.output
    with sqlite3.connect(tmp_path / "ops.db") as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(job)")]
        assert not {"done", "swapped_at", "standing", "command_group"} & set(columns), columns
        assert conn.execute("SELECT count(*) FROM job_event").fetchone() == (1,)
    assert cli.invoke(args=["db", "upgrade"]).exit_code == 0, "and back up again"
