"""Env files as real targets have them: a byte-order mark, CRLF, `export`, not UTF-8, missing, a folder."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.audit.store import Actor
from app.auth.roles import Role
from app.envconfig import keys, store, watch
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.engine import current_targets
from app.statuses import EnvSource
from app.targets.envfile import MAX_BYTES, parse, set_key
from tests.deployments.test_runbooks import log_text, run
from tests.envconfig.conftest import GOOD
from tests.envconfig.test_runbooks import answer, record_now, shown_digest
from tests.support.apps import post
from tests.support.jobs import finished
from tests.support.targets import write_targets_file

# Saved by an editor on Windows: a byte-order mark, CRLF line ends, `export`, a quoted value holding `#` and `=`,
# a key twice, an empty value, a key with no `=`, a value over two lines.
WINDOWS = (
    "\ufeffexport MODE=safe\r\nGREETING='a # b = c'\r\nDUP=1\r\nDUP=2\r\nEMPTY=\r\nBARE\r\nML=\"x\r\ny\"\r\n"
).encode()


def test_a_key_of_a_file_with_a_byte_order_mark_is_set_in_place_and_the_rest_kept_byte_for_byte():
    text = WINDOWS.decode()
    edited = set_key(text, "GREETING", "hello again")
    assert edited == text.replace("GREETING='a # b = c'", 'GREETING="hello again"')
    assert set_key(text, "MODE", "fast") == text.replace("export MODE=safe", "export MODE=fast")
    assert parse(edited).values() == {**parse(text).values(), "GREETING": "hello again"}


def test_spans_are_indexes_into_the_text_as_given_even_after_a_byte_order_mark():
    text = "\ufeffA=1\nB=2\n"
    first, second = parse(text).bindings
    assert text[first.start : first.end] == "A=1" and text[second.start : second.end] == "B=2"


def test_editing_a_windows_env_file_keeps_it_a_windows_env_file(app, runner, running_env_target):
    target = running_env_target
    target.env_path.write_bytes(WINDOWS)
    record_now(app)
    with app.app_context():
        sealed = base64.b64encode(keys.seal(current_targets().open("staging").instance_dir, b"hello again"))
    job, _ = run(app, "config_edit", key="GREETING", sealed=sealed.decode(), expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    assert target.env_path.read_bytes() == WINDOWS.replace(b"GREETING='a # b = c'", b'GREETING="hello again"')
    assert answer(target)["greeting"] == "hello again"


def test_a_version_is_put_back_over_a_file_that_is_not_utf8(app, runner, running_env_target):
    target = running_env_target
    good = record_now(app)
    target.env_path.write_bytes(b"MODE=safe\nGREETING=caf\xe9\n")  # saved as Latin-1
    job, _ = run(app, "config_restore", version=good, expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    assert target.env_path.read_text() == GOOD
    assert answer(target)["greeting"] == "hello there"


BROKEN = {
    "missing": lambda path: path.unlink(),
    "a folder": lambda path: (path.unlink(), path.mkdir()),
    "not UTF-8": lambda path: path.write_bytes(b"MODE=caf\xe9\n"),
    "does not parse": lambda path: path.write_text("MODE='never closed\n"),
    "too large": lambda path: path.write_text("MODE=safe\n" + "#" * MAX_BYTES),
}
SAID = {
    "missing": "does not exist",
    "a folder": "is a folder",
    "not UTF-8": "is not UTF-8 text (line 1)",
    "does not parse": "does not parse: line 1",
    "too large": "bytes; Rewind keeps env files up to",
}
FIX = {
    "missing": "create it with the owner and mode the application needs",
    "a folder": "point env_file at the file itself",
    "not UTF-8": "save it as UTF-8",
    "does not parse": "write each setting as KEY=value",
    "too large": "check env_file names the right file",
}


@pytest.mark.parametrize("shape", BROKEN)
def test_a_missing_or_broken_env_file_leaves_every_page_readable_and_says_why(app, as_role, env_target, shape):
    # process.env_file = true: the app's environment is read from the file, and the file is the incident
    record_now(app)
    BROKEN[shape](env_target.env_path)
    client = as_role(Role.VIEWER)
    for url in ("/", "/dashboard/cards", "/targets/staging/deployments", "/targets/staging/config"):
        got = client.get(url)
        assert got.status_code == 200, (url, got.status_code)
    overview = client.get("/targets/staging")
    assert overview.status_code == 200
    page = overview.get_data(as_text=True)
    assert SAID[shape] in page and str(env_target.env_path) in page
    assert FIX[shape] in page, "and what to do about it"
    assert "Serve from the env file" in page, "the deployed commit is still shown"


@pytest.mark.parametrize("shape", BROKEN)
def test_a_restart_with_a_missing_or_broken_env_file_fails_saying_why(app, runner, env_target, shape):
    BROKEN[shape](env_target.env_path)
    job, _ = run(app, "restart")
    assert job.state == "failed"
    assert SAID[shape] in job.result and str(env_target.env_path) in job.result
    assert "internal error" not in job.result


@pytest.mark.parametrize("shape", BROKEN)
def test_a_managed_app_stops_whatever_its_env_file_has_become(app, runner, running_env_target, shape):
    # Stopping signals the process: it needs none of the file's settings, and the file may be the incident.
    with app.app_context():
        pid = current_targets().open("staging").process().status().pid
    BROKEN[shape](running_env_target.env_path)
    job, _ = run(app, "stop")
    assert job.state == "succeeded", job.result
    assert job.result == "staging is stopped."
    assert not pid_alive(pid)


@pytest.mark.parametrize("shape", BROKEN)
def test_a_stop_command_that_runs_with_a_broken_env_file_is_refused_before_it_runs(app, runner, env_target, shape):
    ran = env_target.env_path.with_name("stop-command-ran")
    stop = [sys.executable, "-c", f"open({str(ran)!r}, 'w').close()"]
    start = [sys.executable, "-c", "pass"]
    process = f"[targets.staging.process]\nstart = {json.dumps(start)}\nstop = {json.dumps(stop)}\nenv_file = true\n"
    text = env_target.toml().split("[targets.staging.process]")[0] + process
    write_targets_file(app, text)
    with app.app_context():
        current_targets().open("staging").process(stopping=True).stop()  # the command works with a sound file
    assert ran.exists()
    ran.unlink()

    BROKEN[shape](env_target.env_path)
    job, _ = run(app, "stop")
    assert job.state == "failed"
    assert not ran.exists(), "nothing was stopped"
    assert job.result.startswith("“Stop the application” failed: staging was not stopped: its stop command runs with")
    assert SAID[shape] in job.result and str(env_target.env_path) in job.result
    assert FIX[shape] in job.result and "then stop again" in job.result


def pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_dangling_symlink_names_the_link_and_where_it_leads(app, as_role, env_target):
    link = env_target.env_path.with_name("current.env")
    link.symlink_to("released.env")  # a deploy tool's link, left pointing at a file it removed
    write_targets_file(app, env_target.toml(env_path=link))
    page = as_role(Role.VIEWER).get("/targets/staging/config").get_data(as_text=True)
    assert f"the env file {link} (a link to {link.with_name('released.env')}) does not exist" in page
    said = app.test_cli_runner().invoke(args=["rewind", "config", "diff", "staging", "now", "now"])
    assert said.exit_code == 1 and "(a link to" in said.output
    assert "then restore a version from the Config tab" in said.output


def test_the_monitor_pass_leaves_a_file_it_cannot_read_alone(app, env_target):
    first = record_now(app)
    BROKEN["too large"](env_target.env_path)
    with app.app_context():
        assert watch.check("staging") is None  # it raised on every pass, a traceback in the log each time
        assert [v.id for v in store.versions("staging")] == [first]


def test_a_deleted_env_file_is_put_back_by_creating_it_then_restoring_a_version(
    app, runner, as_role, running_env_target
):
    target = running_env_target
    good = record_now(app)
    target.env_path.unlink()
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/staging/config").get_data(as_text=True)
    assert f"the env file {target.env_path} does not exist — create it with the owner and mode" in page
    assert "then restore a version from the Config tab" in page
    target.env_path.touch(mode=0o640)  # as the fix says, by the person who knows its owner and mode
    page = client.get("/targets/staging/config").get_data(as_text=True)
    assert f'name="version" value="{good}"' in page, "the version can be restored onto the empty file"
    job, _ = run(app, "config_restore", version=good, expect=shown_digest(app))
    assert job.state == "succeeded", job.result
    assert target.env_path.read_text() == GOOD and target.env_path.stat().st_mode & 0o777 == 0o640


def test_versions_of_a_target_without_an_env_file_is_an_error_not_an_empty_list(app):
    said = app.test_cli_runner().invoke(args=["rewind", "config", "versions", "staging"])
    assert said.exit_code == 6, said.output  # refused, as an unknown target is
    assert "staging has no env file" in said.output and "add env_file = " in said.output
    assert "no env file versions yet" not in said.output


# A service manager's restart that refuses a bad setting itself (as a unit's ExecStartPre check does).
REFUSING_RESTART = (
    "import os, sys\n"
    "mode = os.environ.get('MODE', '')\n"
    "if mode not in ('safe', 'fast'):\n"
    "    sys.exit(f'the service manager refuses MODE={mode}')\n"
)


@pytest.fixture
def service_target(app, env_target):
    """The env target restarted by a command (a service manager's), its server started here and left running."""
    server = env_target.code.repo / "envserver.py"
    text = env_target.toml().replace(
        f'command = ["{sys.executable}", "envserver.py", "{env_target.code.port}"]',
        f'restart = ["{sys.executable}", "-c", {json.dumps(REFUSING_RESTART)}]',
    )
    managed_only = ("pid_file", "log_file")
    write_targets_file(app, "\n".join(line for line in text.splitlines() if not line.startswith(managed_only)))
    env = {**os.environ, **{k: v for k, v in parse(GOOD).values().items() if v is not None}}
    proc = subprocess.Popen([sys.executable, str(server), str(env_target.code.port)], env=env)
    try:
        with app.app_context():
            assert current_targets().open("staging").health().wait_healthy().ok, "the test app did not come up"
        yield env_target
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_restart_that_fails_on_the_new_file_puts_the_previous_one_back(app, runner, service_target):
    target = service_target
    target.env_path.write_text(GOOD.replace("MODE=safe", "MODE=reckless"))
    bad = record_now(app, EnvSource.SNAPSHOT)
    target.env_path.write_text(GOOD)
    job, view = run(app, "config_restore", version=bad, expect=shown_digest(app))
    assert job.state == "failed"
    assert f"Version #{bad} failed to restart (restart: `" in job.result
    assert "exited with status 1" in job.result
    assert "was put back automatically and staging is healthy again" in job.result
    assert target.env_path.read_text() == GOOD, "the new file never stays behind a restart that did not happen"
    assert "reckless" not in job.result and "reckless" not in log_text(view)
    assert job.verification == "passed"


def test_a_snapshot_of_a_folder_says_what_to_do_and_keeps_nothing(app, as_role, env_target):
    first = record_now(app)
    BROKEN["a folder"](env_target.env_path)
    client = as_role(Role.OPERATOR)
    answer_ = post(client, "/targets/staging/config/snapshot", {})
    page = client.get(answer_.headers["Location"]).get_data(as_text=True)
    assert f"No snapshot: the env file {env_target.env_path} is a folder — point env_file at the file itself" in page
    with app.app_context():
        assert [v.id for v in store.versions("staging")] == [first]


def test_a_file_changed_while_the_restore_waited_in_the_queue_is_kept_and_not_overwritten(app, runner, env_target):
    first = record_now(app)
    env_target.env_path.write_text(GOOD.replace("safe", "fast"))
    with app.app_context():
        params = runbooks.get("config_restore").parse_params(
            {"version": str(first), "expect": shown_digest(app)}, "staging"
        )
    late = GOOD.replace("safe", "fast") + "LATE=hand-edited\n"
    env_target.env_path.write_text(late)  # someone edits it by hand before the job starts
    with app.app_context():
        job_id = service.enqueue(runbooks.get("config_restore"), "staging", params, Actor(None, "rewind")).id
    job, _ = finished(app, job_id)
    assert job.state == "failed" and "changed on disk after the diff was shown: nothing was changed" in job.result
    assert env_target.env_path.read_text() == late
    with app.app_context():
        newest = store.versions("staging")[0]
        assert newest.source == EnvSource.OUTSIDE and newest.changes["added"] == ["LATE"], "the hand edit is kept"
