"""Tools that fail without a word, or by a signal: the job's result names the command, how it ended, that it said
nothing, and what to run by hand — in the job, on its page and on the `flask rewind run` line alike."""

from __future__ import annotations

import json
import shlex
import sys

from app.targets.git import GitRepo
from tests.deployments.test_release import with_release
from tests.deployments.test_runbooks import log_text, run
from tests.jobs.test_cli import rewind
from tests.support.targets import write_targets_file


def script(folder, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_release_command_that_exits_1_silently_is_named_with_what_to_run(app, runner, code_target):
    write_targets_file(app, with_release(code_target.toml(), ["false"]))
    before = code_target.head()
    job, view = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "failed"
    said = (
        "release command 1 of 1 (`false`) exited with status 1 and it printed nothing — run it by hand in "
        f"{code_target.repo} as Rewind's user, with the target's environment, to see why: `false`"
    )
    assert said in job.result, job.result
    assert said in log_text(view)
    assert "status 1: " not in job.result and "failed: ." not in job.result
    assert code_target.head() == before


def test_a_release_script_exiting_3_or_killed_says_so_on_the_cli_line(app, users, code_target, tmp_path):
    exits = script(tmp_path, "migrate and build.sh", "exit 3")
    write_targets_file(app, with_release(code_target.toml(), [exits, "--all"]))
    result = rewind(app, "run", "staging", "revert", f"commits={code_target.commits[2][:8]}", "--as", "operator")
    quoted = shlex.join([exits, "--all"])
    assert f"release command 1 of 1 (`{quoted}`) exited with status 3 and it printed nothing" in result.output
    assert f"to see why: `{quoted}`" in result.output, result.output
    killed = script(tmp_path, "oom.sh", "kill -KILL $$")
    write_targets_file(app, with_release(code_target.toml(), [killed]))
    result = rewind(app, "run", "staging", "revert", f"commits={code_target.commits[2][:8]}", "--as", "operator")
    assert f"(`{killed}`) was killed by SIGKILL and it printed nothing" in result.output, result.output
    assert "status -9" not in result.output


def managed_by(code_target, command: list[str]) -> str:
    old = f'command = ["{sys.executable}", "server.py", "{code_target.port}"]'
    return code_target.toml().replace(old, f"command = {json.dumps(command)}")


def test_a_start_command_that_exits_silently_says_the_app_wrote_nothing(app, runner, code_target, tmp_path):
    start = script(tmp_path, "start app.sh", "exit 1")
    write_targets_file(app, managed_by(code_target, [start, "--port", str(code_target.port)]))
    job, view = run(app, "restart")
    assert job.state == "failed"
    log = code_target.repo.parent / "run" / "app.log"
    said = (
        f"having written nothing to its log {log} since Rewind started it (run "
        f"`{shlex.join([start, '--port', str(code_target.port)])}` by hand in {code_target.repo} as Rewind's user "
        "to see why) while it was being verified"
    )
    assert said in job.result, job.result
    assert "the application wrote nothing to its log since Rewind started it at " in log_text(view)  # not old lines


def test_a_start_script_that_migrates_then_execs_a_server_that_dies_points_at_its_log(
    app, runner, code_target, tmp_path
):
    """The script's pid becomes the server's (exec): its death is seen, and what the script wrote is quoted."""
    server = [sys.executable, "-c", "import sys; sys.exit(3)"]
    start = script(tmp_path, "start.sh", f"echo 'INFO  [alembic] upgraded to head'\nexec {shlex.join(server)}")
    write_targets_file(app, managed_by(code_target, [start]))
    job, view = run(app, "restart")
    assert job.state == "failed"
    assert "the application" in job.result and "while it was being verified" in job.result, job.result
    assert "written nothing" not in job.result  # it did write: the log's last lines are in the job's log
    assert "log lines are in this job's log" in job.result, job.result
    assert "INFO  [alembic] upgraded to head" in log_text(view)


def test_a_smoke_test_that_fails_without_a_word_is_named_with_what_to_run(app, runner, code_target, tmp_path):
    smoke = script(tmp_path, "smoke.sh", "exit 2")
    toml = code_target.toml().replace("timeout = 5\n", f'timeout = 5\nsmoke = [{json.dumps(smoke)}, "--quick"]\n')
    write_targets_file(app, toml)
    job, _ = run(app, "restart")
    assert job.state == "failed"
    said = (
        f"the smoke test exited with status 2 and it printed nothing — run it by hand in {code_target.repo} as "
        f"Rewind's user, with the target's environment, to see why: `{smoke} --quick`"
    )
    assert said in job.result, job.result


def test_a_mute_git_hook_during_a_revert_is_named_on_the_job_and_the_cli_line(app, users, code_target):
    """A post-checkout hook exits 1 silently while the revert puts back what the release wrote."""
    (code_target.repo / "CHANGES.md").write_text("built by the release\n")
    GitRepo(code_target.repo, "main").record_release_writes()
    hooks = code_target.repo / ".git" / "hooks"
    script(hooks, "post-checkout", "exit 1")
    before = code_target.head()
    result = rewind(app, "run", "staging", "revert", f"commits={code_target.commits[2][:8]}", "--as", "operator")
    assert "git checkout failed (exit status 1) and it printed nothing — run it by hand" in result.output
    assert f"`git -C {code_target.repo} checkout HEAD -- ':(top,literal)CHANGES.md'`" in result.output
    assert f"the post-checkout hook in {hooks.resolve()} runs on git checkout" in result.output, result.output
    assert code_target.head() == before


def test_a_secret_with_a_quote_in_a_silent_commands_line_to_run_by_hand_is_masked(
    app, runner, code_target, monkeypatch
):
    """The command to run by hand is shell-quoted: a secret holding ' is written there as '"'"' and still masked."""
    monkeypatch.setenv("RELEASE_TOKEN", "rel'tok-9931")
    command = ["sh", "-c", "exit 1", "sh", "--token", "env:RELEASE_TOKEN"]
    write_targets_file(app, with_release(code_target.toml(), command))
    job, view = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "failed"
    assert "it printed nothing — run it by hand" in job.result and "--token '•••'" in job.result, job.result
    for shown in (job.result, log_text(view)):
        assert "tok-9931" not in shown, shown
