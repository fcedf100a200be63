"""Versions sealed with Rewind's own key, digests per key, outside changes noticed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.dashboard.monitor import HealthMonitor
from app.envconfig import store, watch
from app.envconfig.models import EnvVersion
from app.extensions import db
from app.jobs.engine import current_targets
from app.statuses import EnvSource
from tests.conftest import both_databases
from tests.envconfig.conftest import GOOD

SECRET = "tok-first-7f3a9c"


def open_target(name="staging"):
    return current_targets().open(name)


def test_a_version_is_sealed_and_no_value_lies_in_clear_in_the_ops_database_or_instance_folder(app, env_target):
    with app.app_context():
        target = open_target()
        version, recorded = store.ensure_current(target)
        assert recorded and version.source == EnvSource.FIRST
        assert SECRET.encode() not in version.sealed
        assert store.content_of(target, version) == GOOD.encode()
        assert set(version.digests) == {"MODE", "GREETING", "API_TOKEN"}
        db.session.remove()
        db.engine.dispose()
    instance = Path(app.instance_path)
    found = [
        path
        for path in instance.rglob("*")
        if path.is_file() and not path.is_socket() and SECRET.encode() in path.read_bytes()
    ]
    assert found == []
    assert (instance / "envconfig-key").stat().st_mode & 0o777 == 0o600
    assert (instance / "gpg").stat().st_mode & 0o777 == 0o700
    ops = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    for path in [ops, *ops.parent.glob(ops.name + "-*")]:
        assert SECRET.encode() not in path.read_bytes(), path


def test_the_same_file_is_not_recorded_twice_and_changed_keys_are_known_without_decrypting(app, env_target):
    with app.app_context():
        target = open_target()
        first, _ = store.ensure_current(target)
        again, recorded = store.ensure_current(target)
        assert (again.id, recorded) == (first.id, False)
        env_target.env_path.write_text(GOOD.replace("tok-first-7f3a9c", "tok-second") + "NEW=1\n")
        second, recorded = store.ensure_current(target)
        assert recorded and second.source == EnvSource.OUTSIDE
        assert second.changes == {"added": ["NEW"], "removed": [], "changed": ["API_TOKEN"]}
        assert second.digests["MODE"] == first.digests["MODE"]


def test_an_outside_change_is_noticed_by_the_monitor_pass_with_mtime_and_owner(app, env_target):
    with app.app_context():
        store.ensure_current(open_target())
    env_target.env_path.write_text(GOOD.replace("safe", "fast"))
    os.utime(env_target.env_path, (1_700_000_000, 1_700_000_000))
    monitor = HealthMonitor(app, registry_of(app))
    with app.app_context():
        monitor.probe_all()
        newest = store.newest("staging")
        assert newest.source == EnvSource.OUTSIDE and newest.changes["changed"] == ["MODE"]
        assert newest.file_mtime == 1_700_000_000
        assert newest.file_owner and "2023-11-14" in newest.reason and newest.file_owner in newest.reason
        assert watch.check("staging") is None, "an unchanged file records nothing"
        assert db.session.query(EnvVersion).count() == 2


def test_an_unparsable_file_is_still_kept_with_its_problem(app, env_target):
    env_target.env_path.write_text("MODE=safe\nBROKEN='open\n")
    with app.app_context():
        version, _ = store.ensure_current(open_target())
        assert "line 2" in version.parse_error and "never closed" in version.parse_error
        assert version.digests == {}


def test_an_unparsable_version_changes_no_keys_and_the_fixed_file_is_compared_with_the_last_that_parsed(
    app, env_target
):
    """A syntax error in the env file is not every key removed, nor its fix every key added (QA: the Config tab and
    the timeline read "removed: DATABASE_URL, SECRET_KEY, …" for a broken quote)."""
    with app.app_context():
        first = store.ensure_current(open_target())[0].id
    env_target.env_path.write_text(GOOD + "BROKEN='open\n")
    with app.app_context():
        broken, _ = store.ensure_current(open_target())
        assert broken.parse_error and not any(broken.changes.values()), broken.changes
    env_target.env_path.write_text(GOOD.replace("safe", "fast"))
    with app.app_context():
        fixed, _ = store.ensure_current(open_target())
        assert fixed.changes == {"added": [], "removed": [], "changed": ["MODE"], "since": first}, fixed.changes
        assert fixed.compared_since == f"since version #{first}, the newest before it that parses"


def test_an_unknown_version_is_refused_by_name(app, env_target):
    with app.app_context():
        with pytest.raises(store.UnknownVersion, match="staging has no env file version '999'"):
            store.get("staging", "999")
        with pytest.raises(store.UnknownVersion):
            store.get("staging", "abc")


def registry_of(app):
    return app.extensions["rewind"].targets


@both_databases
def test_versions_round_trip_on_either_ops_database(app, env_target):
    with app.app_context():
        target = open_target()
        version, _ = store.ensure_current(target)
        db.session.expire_all()
        again = store.get("staging", version.id)
        assert store.content_of(target, again) == GOOD.encode()
        assert store.versions("staging")[0].id == version.id


@both_databases
def test_one_hand_edit_seen_by_several_processes_at_once_is_kept_once_with_one_audit_row(app, env_target):
    """Every web worker's monitor watches the file, their passes in step: the in-process lock cannot keep two
    processes from both recording the edit (two versions, two 'changed outside' rows on the timeline). Two threads
    going past that lock stand for two processes here; the ops database's own lock keeps one of them."""
    from app.audit.models import AuditEvent
    from tests.support.threads import all_at_once

    with app.app_context():
        store.ensure_current(open_target())
    env_target.env_path.write_text(GOOD.replace("safe", "fast"))

    def one_process(_: int) -> None:
        with app.app_context():
            try:
                store._ensure_current(open_target(), source=None, actor=None, job_id=None)  # past _recording
            finally:
                db.session.remove()

    assert all_at_once(one_process, 3) == []
    with app.app_context():
        assert [v.source for v in db.session.query(EnvVersion).order_by(EnvVersion.id)] == ["first", "outside"]
        assert db.session.query(AuditEvent).filter_by(action="envconfig.outside").count() == 1
