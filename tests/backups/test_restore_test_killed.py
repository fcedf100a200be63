"""A restore test killed midway (kill -9, as the OOM killer would): its job says where its test copy is."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs.engine import engine
from app.jobs.models import Job
from tests.backups.test_runbooks import copies
from tests.backups.test_sqlguard import store_plain_backup
from tests.conftest import wait_for
from tests.jobs.test_cli import flask_env
from tests.support.server import REPO


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_a_restore_test_killed_while_it_fills_its_copy_is_interrupted_naming_the_copy(
    app, users, data_target, pg_server
):
    # The fill holds in psql until the test ends it: the kill comes while the copy is there, whatever the timing.
    name = store_plain_backup(data_target, pg_server, b"SELECT pg_sleep(600);\n")
    before = data_target.snapshot()
    args = ["run", data_target.name, "verify_backup", f"backup={name}", "level=restore-test", "--as", "admin"]
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "rewind", *args, "--follow"],
        cwd=REPO,
        env=flask_env(app),
        stdout=subprocess.DEVNULL,
    )
    left: list[str] = []
    try:
        wait_for(lambda: copies(data_target), timeout=120)  # the test copy is being filled
        (left,) = [copies(data_target)]
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        with psycopg.connect(data_target.pg_url, autocommit=True) as conn:  # psql, orphaned, waits on the server
            for copy in left:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (copy,))
    runner = engine(app).start_runner()  # a runner starting up finds the job orphaned
    try:
        with app.app_context():
            job_id = db.session.scalar(select(Job.id).where(Job.runbook == "verify_backup"))
            wait_for(lambda: db.session.get(Job, job_id).state == "interrupted" or db.session.commit(), timeout=30)
            result = db.session.get(Job, job_id).result
    finally:
        runner.stop(wait=True)
    assert len(left) == 1 and "_test_" in left[0], left
    assert "Where things stood: " in result, result
    assert "the live database is untouched" in result and left[0] in result, result
    assert "the cleanup runbook drops it" in result, result
    assert data_target.snapshot() == before
