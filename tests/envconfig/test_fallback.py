"""An env file the targets file reads values from (envfile:), broken: Rewind still starts, says so, and restores it."""

from __future__ import annotations

import sqlite3

from app import preflight
from app.auth.roles import Role
from app.envconfig import store
from app.jobs.engine import current_targets
from tests.deployments.test_runbooks import run
from tests.envconfig.conftest import GOOD
from tests.envconfig.test_runbooks import shown_digest
from tests.support.apps import build_app
from tests.support.targets import write_targets_file

BROKEN = GOOD.replace('GREETING="hello there"', 'GREETING="hello there')  # a closing quote gone


def test_a_broken_env_file_leaves_rewind_starting_on_its_last_version_that_parses_and_restoring_it(
    app, users, as_role, runner, running_env_target, tmp_path, monkeypatch
):
    """QA: with database.url = "envfile:DATABASE_URL", a syntax error in the app's env file stopped Rewind from
    starting, and every `flask rewind` command with it: restoring a good version of the file, the fix, included."""
    target = running_env_target
    data = tmp_path / "appdata.db"
    sqlite3.connect(data).close()
    url = f"sqlite:///{data}"
    target.env_path.write_text(GOOD + f"DATABASE_URL={url}\n")
    write_targets_file(app, target.toml(extra='[targets.staging.database]\nurl = "envfile:DATABASE_URL"\n'))
    with app.app_context():
        good, _ = store.ensure_current(current_targets().open("staging"))
        good_id = good.id
    settings = app.config["REWIND_SETTINGS"]

    def restarted():  # Rewind started again, as after a deploy of its own or a crash: the targets file read anew
        fresh = build_app(settings.instance_dir, settings.database_url, REWIND_RUNBOOKS="tests.support.runbooks")
        with fresh.app_context():
            return fresh, current_targets().config("staging")

    # Another line broken: DATABASE_URL's own line is what the application reads, so Rewind reads it too (review:
    # a stored version's older value would have sent backups and restores to a database the app no longer uses).
    moved = f"sqlite:///{tmp_path / 'moved.db'}"
    target.env_path.write_text(BROKEN + f"DATABASE_URL={moved}\n")
    _, config = restarted()
    assert config.database.url == moved and config.env_stale is None

    # Its own line broken: the value comes from the newest version that parses, and every page says so.
    target.env_path.write_text(GOOD + f'DATABASE_URL="{url}\n')
    fresh, config = restarted()
    assert config.database.url == url
    stale = f"DATABASE_URL is read from version #{good_id} (recorded "
    assert config.env_stale.startswith(stale), config.env_stale
    assert f"the env file {target.env_path} does not parse (line 4)" in config.env_stale
    monkeypatch.setenv("REWIND_INSTANCE_DIR", str(settings.instance_dir))
    monkeypatch.setenv("REWIND_DATABASE_URL", settings.database_url)
    preflight()  # gunicorn's master checks the targets file the same way before it binds
    checked = fresh.test_cli_runner().invoke(args=["rewind", "targets", "check"])
    assert checked.exit_code == 1 and f"staging: env file: WRONG — {stale}" in checked.output, checked.output
    listed = fresh.test_cli_runner().invoke(args=["rewind", "config", "versions", "staging"])
    assert listed.exit_code == 0 and f"#{good_id}" in listed.output, listed.output
    overview = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    assert f"DATABASE_URL is read from version #{good_id}" in overview and "does not parse (line 4)" in overview

    job, _ = run(app, "config_restore", version=good_id, expect=shown_digest(app))  # the fix, from the Config tab
    assert job.state == "succeeded", job.result
    assert target.env_path.read_text() == GOOD + f"DATABASE_URL={url}\n"
    with app.app_context():
        assert current_targets().config("staging").env_stale is None  # the file again, its note gone


def test_with_no_ops_database_yet_the_fallback_makes_none_and_stands_in_for_nothing(tmp_path):
    """Review: gunicorn's preflight, before `flask db upgrade`, created an empty rewind.db looking for a version."""
    from app.envconfig.fallback import newest_that_parses
    from app.settings import load_settings
    from tests.support.apps import TEST_KEYS

    database = tmp_path / "instance" / "rewind.db"
    settings = load_settings({**TEST_KEYS, "REWIND_INSTANCE_DIR": str(tmp_path / "instance")})
    assert settings.database_url == f"sqlite:///{database}"
    assert newest_that_parses(settings)("staging", tmp_path / "app.env") is None
    assert not database.exists()
