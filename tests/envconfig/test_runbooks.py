"""Restoring env file versions and editing one key on a real app that refuses a bad setting."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from app.envconfig import keys, store
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs.engine import current_targets
from app.jobs.runbook import ParamError
from app.statuses import EnvSource
from tests.deployments.test_runbooks import log_text, run
from tests.envconfig.conftest import GOOD
from tests.support.targets import write_targets_file

BAD = GOOD.replace("MODE=safe", "MODE=reckless")


def answer(target) -> dict:
    with urllib.request.urlopen(target.url, timeout=2) as response:
        return json.loads(response.read())


def shown_digest(app) -> str:
    """The digest the Config tab puts in its restore form: the file as shown."""
    with app.app_context():
        target = current_targets().open("staging")
        return keys.file_digest(target.instance_dir, store.current_state(target).content)


def record_now(app, source=None) -> int:
    with app.app_context():
        version, _ = store.ensure_current(current_targets().open("staging"), source=source)
        return version.id


def test_restore_puts_a_version_back_restarts_and_verifies(app, runner, running_env_target):
    target = running_env_target
    good = record_now(app)
    target.env_path.write_text(GOOD.replace("hello there", "bonjour"))
    target.env_path.chmod(0o604)
    if os.geteuid() == 0:
        os.chown(target.env_path, 65534, 65534)  # another owner, as an env file often has
    owner = target.env_path.stat().st_uid, target.env_path.stat().st_gid
    job, view = run(app, "config_restore", version=good, expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    assert target.env_path.read_text() == GOOD
    assert target.env_path.stat().st_mode & 0o777 == 0o604, "the mode is kept"
    assert (target.env_path.stat().st_uid, target.env_path.stat().st_gid) == owner, "the owner is kept"
    assert answer(target)["greeting"] == "hello there", "the app was restarted with the restored file"
    with app.app_context():
        sources = [(v.source, v.job_id) for v in store.versions("staging")]
    # newest first: Rewind's write, the outside change kept before it, the first version
    assert sources == [(EnvSource.REWIND, job.id), (EnvSource.OUTSIDE, None), (EnvSource.FIRST, None)]
    assert "tok-first-7f3a9c" not in log_text(view)


def test_a_value_that_is_the_target_name_is_not_masked_in_the_job(app, runner, running_env_target):
    # APP_ENV=staging is the commonest setting there is: masking it turned every "staging" of the job into •••
    target = running_env_target
    target.env_path.write_text(GOOD + "APP_ENV=staging\n")
    first = record_now(app)
    target.env_path.write_text(GOOD.replace("hello there", "bonjour") + "APP_ENV=staging-copy\n")
    job, view = run(app, "config_restore", version=first, expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    assert job.result.startswith(f"staging runs with version #{first}"), job.result
    text = log_text(view)
    assert "•••" not in job.result and "known-good on staging" in text
    assert "bonjour" not in text and "staging-copy" not in text, "the other changed values are still masked"
    # the same name under a secret's key is a secret: masked, whatever it does to the name in the job's words
    target.env_path.write_text(GOOD + "APP_ENV=staging\nDB_PASSWORD=staging\n")
    second = record_now(app)
    target.env_path.write_text(GOOD + "APP_ENV=staging\nDB_PASSWORD=hunter22\n")
    job, view = run(app, "config_restore", version=second, expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    text = log_text(view)
    assert f"••• runs with version #{second}" in job.result and "known-good on •••" in text, job.result
    assert "hunter22" not in text


def test_a_restore_the_app_refuses_is_undone_automatically(app, runner, running_env_target):
    target = running_env_target
    target.env_path.write_text(BAD)
    bad = record_now(app, EnvSource.SNAPSHOT)
    target.env_path.write_text(GOOD)
    record_now(app)
    job, view = run(app, "config_restore", version=bad, expect=shown_digest(app))
    assert job.state == "failed"
    assert f"Version #{bad} failed verification" in job.result
    assert "was put back automatically and staging is healthy again" in job.result
    assert job.verification == "passed"
    assert job.verification_detail.startswith(f"the automatic undo (version #{bad + 1} put back): healthy")
    assert target.env_path.read_text() == GOOD
    assert answer(target)["mode"] == "safe"
    text = log_text(view)
    assert "refusing to start" in text, "the app's own words are quoted"
    assert "reckless" not in text and "reckless" not in job.result, "the changed values are masked"
    with app.app_context():
        newest = store.versions("staging")[:2]
        assert [v.source for v in newest] == [EnvSource.REWIND, EnvSource.REWIND]
        assert newest[0].reason.startswith("automatic undo")
        assert newest[0].changes["changed"] == ["MODE"]
        db.session.remove()
        db.engine.dispose()
    ops = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    for path in [ops, *ops.parent.glob(ops.name + "-*"), *Path(app.instance_path).rglob("*")]:
        if path.is_file() and not path.is_socket():
            data = path.read_bytes()
            assert b"reckless" not in data and b"tok-first-7f3a9c" not in data, path


def test_the_tab_marks_the_version_a_failed_restore_wrote_as_not_verified(app, runner, running_env_target, as_role):
    """QA: the version that broke the app read "Rewind, by admin (job #12)" like any good one, a Restore beside it."""
    from app.auth.roles import Role

    target = running_env_target
    target.env_path.write_text(BAD)
    bad = record_now(app, EnvSource.SNAPSHOT)
    target.env_path.write_text(GOOD)
    good = record_now(app)
    job, _ = run(app, "config_restore", version=bad, expect=shown_digest(app))
    assert job.state == "failed"
    written, undone = bad + 2, bad + 3  # the job's write of version #bad, then its automatic undo
    page = as_role(Role.ADMIN).get("/targets/staging/config").get_data(as_text=True)

    def row(version: int) -> str:
        return page.split(f'id="version-{version}"')[1].split("</tr>")[0]

    assert "not verified</span>" in row(written) and f"job #{job.id} failed with it" in row(written)
    for version in (undone, good, bad):
        assert "not verified" not in row(version), version


def test_a_version_that_does_not_parse_is_refused_before_anything_changes(app, runner, env_target):
    env_target.env_path.write_text("MODE=safe\nGREETING='open\n")
    broken = record_now(app, EnvSource.SNAPSHOT)
    env_target.env_path.write_text(GOOD)
    job, _ = run(app, "config_restore", version=broken, expect=shown_digest(app))
    assert job.state == "failed"
    assert f"version #{broken} does not parse: line 2" in job.result and "nothing was changed" in job.result
    assert env_target.env_path.read_text() == GOOD


def test_a_stale_diff_is_refused(app, env_target):
    first = record_now(app)
    seen = shown_digest(app)
    env_target.env_path.write_text(GOOD + "LATE=1\n")
    with app.app_context(), pytest.raises(ParamError, match="changed on disk after the diff was shown"):
        runbooks.get("config_restore").parse_params({"version": str(first), "expect": seen}, "staging")


def test_an_unknown_version_is_refused(app, env_target):
    record_now(app)
    with app.app_context(), pytest.raises(ParamError, match="no env file version '4242'"):
        runbooks.get("config_restore").parse_params({"version": "4242", "expect": shown_digest(app)}, "staging")


def test_a_protected_target_needs_the_typed_name(app, env_target):
    write_targets_file(app, env_target.toml(protected=True))
    first = record_now(app)
    params = {"version": str(first), "expect": shown_digest(app)}
    with app.app_context():
        book = runbooks.get("config_restore")
        with pytest.raises(ParamError, match="type its name, staging"):
            book.parse_params(params, "staging")
        assert book.parse_params({**params, "confirm": "staging"}, "staging")


def test_a_file_rewind_may_not_write_is_refused_and_left_as_it_was(app, runner, env_target):
    first = record_now(app)
    env_target.env_path.write_text(GOOD.replace("safe", "fast"))
    folder = env_target.env_path.parent
    with unwritable(folder):
        job, _ = run(app, "config_restore", version=first, expect=shown_digest(app))
    assert job.state == "failed"
    assert "may not write the env file" in job.result and "nothing was changed" in job.result
    assert env_target.env_path.read_text() == GOOD.replace("safe", "fast")
    assert [p.name for p in folder.iterdir() if p.name.endswith(".rewind")] == []


@contextlib.contextmanager
def unwritable(folder):
    """A folder nobody may create files in: immutable for root (who ignores modes), read-only otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_a_symlinked_env_file_has_its_target_written_and_the_link_kept(app, runner, running_env_target):
    target = running_env_target
    link = target.env_path.with_name("current.env")
    link.symlink_to(target.env_path.name)
    write_targets_file(app, target.toml(env_path=link))
    good = record_now(app)
    target.env_path.write_text(GOOD.replace("hello there", "changed"))
    job, _ = run(app, "config_restore", version=good, expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    assert link.is_symlink() and link.readlink().name == target.env_path.name
    assert target.env_path.read_text() == GOOD


def test_edit_one_key_never_shows_the_value(app, runner, running_env_target):
    target = running_env_target
    record_now(app)
    with app.app_context():
        sealed = keys.seal(current_targets().open("staging").instance_dir, b"a brand new greeting")
    job, view = run(
        app, "config_edit", key="GREETING", sealed=base64.b64encode(sealed).decode(), expect=shown_digest(app)
    )
    assert job.state == "succeeded", job.result
    assert answer(target)["greeting"] == "a brand new greeting"
    assert 'GREETING="a brand new greeting"' in target.env_path.read_text()
    assert "a brand new greeting" not in log_text(view) + job.result + job.params_json


def test_an_edit_the_app_refuses_is_undone_and_the_result_names_the_key_as_written(app, runner, running_env_target):
    target = running_env_target
    record_now(app)
    with app.app_context():
        sealed = keys.seal(current_targets().open("staging").instance_dir, b"reckless")
    job, _ = run(app, "config_edit", key="MODE", sealed=base64.b64encode(sealed).decode(), expect=shown_digest(app))
    assert job.state == "failed"
    assert "failed: The new value of MODE failed verification" in job.result, job.result  # not "mode"
    assert target.env_path.read_text() == GOOD and answer(target)["mode"] == "safe"


def test_a_protected_target_refuses_a_job_started_by_a_non_admin_whatever_the_door(app, runner, env_target, users):
    from app.audit.store import Actor
    from app.auth.roles import Role
    from app.extensions import db
    from app.jobs import service
    from app.jobs.models import Job
    from tests.conftest import wait_for

    write_targets_file(app, env_target.toml(protected=True))
    first = record_now(app)
    env_target.env_path.write_text(GOOD.replace("safe", "fast"))
    with app.app_context():
        book = runbooks.get("config_restore")
        params = book.parse_params(
            {"version": str(first), "expect": shown_digest(app), "confirm": "staging"}, "staging"
        )
        job_id = service.enqueue(book, "staging", params, Actor(users[Role.OPERATOR], "operator")).id
    wait_for(lambda: _final(app, job_id), timeout=60)
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job.state == "failed" and "only an admin may change its env file" in job.result
    assert env_target.env_path.read_text() == GOOD.replace("safe", "fast")


def _final(app, job_id):
    from app.extensions import db
    from app.jobs.models import Job

    with app.app_context():
        return db.session.get(Job, job_id).job_state.is_final


def test_two_restores_at_once_are_refused_by_the_target_lock(app, env_target):
    from app.audit.store import Actor
    from app.jobs import service

    first = record_now(app)
    env_target.env_path.write_text(GOOD.replace("safe", "fast"))
    with app.app_context():
        book = runbooks.get("config_restore")
        params = book.parse_params({"version": str(first), "expect": shown_digest(app)}, "staging")
        queued = service.enqueue(book, "staging", params, Actor(None, "first-admin"))
        with pytest.raises(service.BusyTarget, match=f"job #{queued.id}"):
            service.enqueue(book, "staging", params, Actor(None, "second-admin"))


def with_release(toml: str, *commands: list[str]) -> str:
    listed = ", ".join("[" + ", ".join(json.dumps(a) for a in argv) + "]" for argv in commands)
    return toml + f"\n[targets.staging.release]\ncommands = [{listed}]\n"


def test_a_restore_runs_the_release_commands_after_the_new_file_and_before_the_restart(
    app, runner, running_env_target, tmp_path
):
    target = running_env_target
    good = record_now(app)
    target.env_path.write_text(GOOD.replace("hello there", "bonjour"))
    seen = tmp_path / "release.txt"
    # The release command reads the env file as it is when it runs: the restored one.
    script = (
        f"import pathlib; pathlib.Path({str(seen)!r}).write_text(pathlib.Path({str(target.env_path)!r}).read_text())"
    )
    write_targets_file(app, with_release(target.toml(), [sys.executable, "-c", script]))
    job, view = run(app, "config_restore", version=good, expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    assert seen.read_text() == GOOD
    assert [s.title for s in view.steps][3:5] == ["Run the release commands", "Restart the application"]


def test_a_failing_release_command_puts_the_previous_env_file_back_and_restarts_nothing(
    app, runner, running_env_target
):
    target = running_env_target
    good = record_now(app)
    changed = GOOD.replace("hello there", "bonjour")
    target.env_path.write_text(changed)
    failing = [sys.executable, "-c", "import sys; print('compile failed', file=sys.stderr); sys.exit(4)"]
    write_targets_file(app, with_release(target.toml(), failing))
    before = answer(target)["greeting"]
    job, view = run(app, "config_restore", version=good, expect=shown_digest(app))
    assert job.state == "failed"
    assert "exited with status 4; it said: compile failed" in job.result
    assert "was put back" in job.result and "nothing was restarted" in job.result
    assert target.env_path.read_text() == changed
    assert [s.state for s in view.steps][3:] == ["failed", "not_run", "not_run"]
    assert answer(target)["greeting"] == before


def test_a_failed_verification_names_a_hand_edit_of_the_env_file(app, runner, running_env_target):
    """QA: a restart after a hand edit failed with "roll back to a known-good commit": the env file Rewind had
    seen changed outside it, the usual suspect, went unsaid."""
    target = running_env_target
    first = record_now(app)
    target.env_path.write_text(BAD)  # by hand, between two looks of the health monitor
    job, view = run(app, "restart")
    assert job.state == "failed", log_text(view)
    # as found at the failure, or, if the health monitor recorded the edit first, as that version says
    said = (f"Look first: staging's env file differs from its version #{first}: it was changed outside Rewind (",)
    said += (f"Look first: staging's env file was changed outside Rewind (version #{first + 1}, noticed ",)
    assert any(s in job.result for s in said) and "the Config tab shows what changed" in job.result, job.result
    assert job.result.index("Look first:") < job.result.index("Next: roll back"), job.result  # the cause first

    record_now(app, source=EnvSource.SNAPSHOT)  # the same file, taken as it is by a person: known, not a suspect
    job, view = run(app, "restart")
    assert job.state == "failed" and "env file" not in job.result, job.result
