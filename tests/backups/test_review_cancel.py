"""Review: a cancel clicked while the restore stops the application."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from app.audit.store import Actor
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.models import Job
from tests.backups.controlled import back_to_managed, ctl_argv, use_commands
from tests.backups.test_runbooks import backup_now, copies
from tests.conftest import wait_for
from tests.deployments.test_runbooks import ADMIN, health


import pytest


@pytest.mark.parametrize("data_target", ["postgresql"], indirect=True)
def test_cancel_during_the_start_leaves_the_app_stopped_on_the_unverified_restore(app, runner, data_target):
    from tests.backups import controlled
    from tests.support.targets import write_targets_file

    use_commands(app, data_target)
    slow_start = [sys.executable, "-c", "import time; time.sleep(30)"]
    text = re.sub(r'start = \[.*?\]\n', "start = " + controlled._toml(slow_start) + "\n", _current_toml(app, data_target), count=1)
    write_targets_file(app, text)
    _cancel_at(app, data_target, "Start and verify")


def _current_toml(app, target):
    return app.config["REWIND_SETTINGS"].config_path.read_text()


def _cancel_at(app, data_target, step):
    try:
        name = backup_now(app, data_target)
        with app.app_context():
            book = runbooks.get("restore_backup")
            job_id = service.enqueue(book, data_target.name, book.parse_params({"backup": name}, data_target.name), ADMIN).id

        def there():
            with app.app_context():
                return db.session.get(Job, job_id).current_step == step

        wait_for(there, timeout=60)
        time.sleep(2)
        with app.app_context():
            service.cancel(db.session.get(Job, job_id), Actor(None, "reviewer"))

        def final():
            with app.app_context():
                return db.session.get(Job, job_id).job_state.is_final

        wait_for(final, timeout=60)
        with app.app_context():
            job = db.session.get(Job, job_id)
            state, result = job.state, job.result
        print(state, result)
        print("copies left:", copies(data_target))
        try:
            status = health(data_target.code)[0]
        except OSError as exc:
            status = f"no answer ({exc})"
        assert status == 200, f"the app was left stopped after a cancel: {state}: {result}"
    finally:
        back_to_managed(app, data_target)


def test_cancel_during_the_stop_leaves_the_app_stopped(app, runner, data_target):
    slow_stop = [
        sys.executable,
        "-c",
        f"import subprocess, time; subprocess.run({ctl_argv(data_target, 'stop')!r}, check=True); time.sleep(20)",
    ]
    use_commands(app, data_target, stop=slow_stop)
    try:
        name = backup_now(app, data_target)
        with app.app_context():
            book = runbooks.get("restore_backup")
            job_id = service.enqueue(book, data_target.name, book.parse_params({"backup": name}, data_target.name), ADMIN).id

        def stopping():
            with app.app_context():
                return db.session.get(Job, job_id).current_step == "Stop the application"

        wait_for(stopping, timeout=60)
        time.sleep(2)  # the app is down by now; the stop command still runs
        with app.app_context():
            service.cancel(db.session.get(Job, job_id), Actor(None, "reviewer"))

        def final():
            with app.app_context():
                return db.session.get(Job, job_id).job_state.is_final

        wait_for(final, timeout=60)
        with app.app_context():
            job = db.session.get(Job, job_id)
            state, result = job.state, job.result
        print(state, result)
        print("copies left:", copies(data_target))
        try:
            status = health(data_target.code)[0]
        except OSError as exc:
            status = f"no answer ({exc})"
        print("health:", status)
        assert status == 200, f"the app was left stopped after a cancel: {state}: {result}"
    finally:
        back_to_managed(app, data_target)
