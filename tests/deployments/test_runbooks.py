"""Code rollback runbooks on a real git repository and a real managed process."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.audit.store import Actor
from app.auth.roles import Role
from app.checkpoints.models import Checkpoint, KnownGood
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.engine import current_targets
from app.jobs.models import JobEvent
from app.jobs.runbook import ParamError
from app.targets.sockets import listeners
from tests.conftest import wait_for
from tests.deployments.conftest import write_targets
from tests.support.jobs import finished
from tests.support.processes import cmdline, running
from tests.support.targets import SERVER, commit, git, write_targets_file

ADMIN = Actor(None, "oncall")


def run(app, name, target="staging", **params):
    with app.app_context():
        book = runbooks.get(name)
        parsed = book.parse_params({k: str(v) for k, v in params.items()}, target)
        job_id = service.enqueue(book, target, parsed, ADMIN).id
    return finished(app, job_id)


def health(target) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(target.url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def log_text(view) -> str:
    return "\n".join(line for _, _, line in view.lines)


def test_revert_restarts_verifies_and_marks_known_good(app, runner, code_target, as_role):
    before = code_target.head()
    job, view = run(app, "revert", commits=code_target.commits[2][:8])  # "Greet in French"
    assert job.state == "succeeded", job.result
    assert job.verification == "passed"
    assert health(code_target) == (200, {"status": "healthy", "greeting": "hello"})
    assert git(code_target.repo, "log", "-1", "--format=%s").startswith('Revert "Greet in French"')
    with app.app_context():
        (checkpoint,) = db.session.scalars(select(Checkpoint)).all()
        assert (checkpoint.target, checkpoint.commit, checkpoint.job_id) == ("staging", before, job.id)
        marked = db.session.scalars(select(KnownGood.commit)).all()
        assert marked == [code_target.head()]
        # audited, so the target's timeline lists it among checkpoints and known-good marks
        (mark,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "checkpoints.known_good")).all()
        assert (mark.target, mark.actor_name) == ("staging", "oncall")
    page = as_role(Role.VIEWER).get("/targets/staging/timeline?kind=checkpoints").get_data(as_text=True)
    assert f"{code_target.head()[:12]} marked known good: verified by job #{job.id}" in page
    # No migrations (no gate, nothing to upgrade), no release commands, no remote: skipped, saying why.
    # The head is checked first: given no head shown (not from a page), it logs the head it found.
    states = ["succeeded", "skipped", "succeeded", "succeeded", "skipped", "skipped", "succeeded", "succeeded"]
    states.append("skipped")
    assert [s.state for s in view.steps] == states
    assert view.steps[4].message == "no release commands are configured ([targets.staging.release])"
    assert view.steps[8].message == "no remote is configured (repo.remote): nothing to push"


def test_revert_conflict_fails_cleanly_naming_the_file(app, runner, code_target):
    before = code_target.head()
    job, view = run(app, "revert", commits=code_target.commits[1])  # CHANGES.md was edited after it
    assert job.state == "failed"
    assert "CHANGES.md" in job.result
    assert code_target.head() == before
    assert git(code_target.repo, "status", "--porcelain") == ""
    assert view.steps[3].state == "failed" and view.steps[4].state == "not_run"


def test_reset_tags_the_old_head_first(app, runner, code_target):
    before = code_target.head()
    job, _ = run(app, "reset", commit=code_target.commits[0])
    assert job.state == "succeeded", job.result
    assert code_target.head() == code_target.commits[0]
    tags = git(code_target.repo, "tag", "--list", "rewind/pre-reset/*").split()
    assert len(tags) == 1 and git(code_target.repo, "rev-list", "-n1", tags[0]) == before
    assert tags[0] in job.result
    assert health(code_target)[1]["greeting"] == "hello"


def test_reset_on_a_protected_target_needs_the_typed_name(app, code_target):
    write_targets(app, code_target, protected=True)
    with app.app_context():
        book = runbooks.get("reset")
        with pytest.raises(ParamError, match="type its name, staging, to confirm"):
            book.parse_params({"commit": code_target.commits[0], "confirm": "stagin"}, "staging")
        assert book.parse_params({"commit": code_target.commits[0], "confirm": "staging"}, "staging")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"commits": "zzzzzzz"}, "7 to 40 hex characters"),
        ({"commits": "1234567"}, "no commit .1234567. in this repository"),
        ({"commits": "--help"}, "7 to 40 hex characters"),
    ],
)
def test_bad_commit_ids_are_refused_before_queueing(app, code_target, params, message):
    with app.app_context(), pytest.raises(ParamError, match=message):
        runbooks.get("revert").parse_params(params, "staging")


def test_commit_on_another_branch_is_not_revertable(app, code_target):
    bad = git(code_target.repo, "rev-parse", "feature/bad")
    with app.app_context(), pytest.raises(ParamError, match="not in the history"):
        runbooks.get("revert").parse_params({"commits": bad}, "staging")


def test_bad_deploy_without_auto_rollback_fails_then_revert_heals(app, runner, code_target):
    job, _ = run(app, "deploy", ref="feature/bad")
    assert job.state == "failed" and job.verification == "failed"
    assert "did not become healthy" in job.result and "Automatic rollback is off" in job.result
    assert health(code_target)[0] == 500
    bad = code_target.head()
    job, _ = run(app, "revert", commits=bad)
    assert job.state == "succeeded", job.result
    assert health(code_target)[0] == 200


def test_bad_deploy_with_auto_rollback_puts_the_old_commit_back(app, runner, code_target):
    write_targets(app, code_target, auto_rollback=True)
    start = code_target.head()
    job, _ = run(app, "deploy", ref="feature/bad")
    assert job.state == "failed"
    assert "Rolled back automatically" in job.result and "healthy again" in job.result
    assert job.verification == "passed", "the final check is of the rolled-back target"
    assert job.verification_detail.startswith(f"the automatic rollback to {start[:12]}: healthy")
    assert code_target.head() == start
    assert git(code_target.repo, "tag", "--list", "rewind/failed-deploy/*")
    assert health(code_target)[0] == 200


def test_deploy_can_turn_automatic_rollback_off_for_itself(app, runner, code_target):
    write_targets(app, code_target, auto_rollback=True)
    job, _ = run(app, "deploy", ref="feature/bad", auto_rollback="off")
    assert job.state == "failed" and "Automatic rollback is off" in job.result
    assert health(code_target)[0] == 500


def test_good_deploy_fast_forwards(app, runner, code_target):
    git(code_target.repo, "checkout", "-q", "-b", "feature/good")
    new = commit(code_target.repo, "Add a README", **{"README.md": "hello\n"})
    git(code_target.repo, "checkout", "-q", "main")
    job, _ = run(app, "deploy", ref="feature/good")
    assert job.state == "succeeded", job.result
    assert code_target.head() == new


def test_failed_health_check_fails_the_job_with_a_clear_message(app, runner, code_target):
    with app.app_context():
        from app.jobs.engine import current_targets

        current_targets().open("staging").process().stop()
    job, view = run(app, "verify")
    assert job.state == "failed" and job.verification == "failed"
    assert "did not become healthy: the application is not running" in job.result, "at once, not after 5 s"
    # stopped, not broken: the way on is to start it, not to roll back
    assert "Next: start it (Start on the target's overview, which verifies it too)" in job.result
    assert "roll back" not in job.result
    assert "connection refused" in log_text(view).lower()
    logged = log_text(view).splitlines()
    assert any("Rewind stopped pid" in line for line in logged), "the application's own log is in the job's log"
    assert "log lines are in this job's log" in job.result
    assert "Rewind stopped pid" not in job.result


def test_a_failed_verification_says_why_and_what_next_in_short_and_logs_the_apps_log(
    app, runner, code_target, monkeypatch
):
    monkeypatch.setenv("STAGING_DB_URL", "postgresql://app:staging-db-pw-77@db/app")
    write_targets_file(app, code_target.toml() + '\n[targets.staging.database]\nurl = "env:STAGING_DB_URL"\n')
    log_file = code_target.repo.parent / "run" / "app.log"
    git(code_target.repo, "checkout", "-q", "feature/bad")
    talks = 'print("connecting to postgresql://app:staging-db-pw-77@db/app", flush=True)\n' + code_target.file(
        "server.py"
    )
    commit(code_target.repo, "Say where it connects", **{"server.py": talks})
    git(code_target.repo, "checkout", "-q", "main")
    job, view = run(app, "deploy", ref="feature/bad")
    assert job.state == "failed" and job.verification == "failed"
    (failed,) = [s for s in view.steps if s.state == "failed"]
    reason = "staging did not become healthy: answered 500 to 3 probes in a row (status 500, expected 200); "
    reason += 'it answered {"status": "broken", "greeting": "bonjour"}'
    next_step = "Automatic rollback is off for this deploy: roll back by hand (revert or reset)"
    # One short message: the reason, then what to do, then where the app's log went; the same on every page.
    assert failed.error.startswith(f"{reason}. {next_step}; the application's last ")
    assert failed.error.endswith(" log lines are in this job's log.")
    assert job.result.startswith(f"“Verify health” failed: {failed.error}")
    assert job.result.index(next_step) < job.result.index("Already done before that")
    assert job.verification_detail == reason
    for shown in (job.result, failed.error, job.verification_detail):
        assert "\n" not in shown and "\x1b" not in shown and len(shown) < 500, shown
        assert "WARNING" not in shown and "connecting to" not in shown and "staging-db-pw-77" not in shown
    # Everything the message no longer holds is in the job's log: the whole answer and the app's own lines,
    # colour codes stripped, secrets masked.
    logged = log_text(view)
    assert "\x1b" not in logged and "staging-db-pw-77" not in logged
    assert 'last answer: status 500: {"status": "broken", "greeting": "bonjour"}' in logged.splitlines()
    assert "  WARNING: health is broken on purpose" in logged.splitlines()
    assert "  connecting to •••" in logged.splitlines()
    assert "\x1b[31m" in log_file.read_text(), "the app did colour its line: Rewind took the codes out"


CRASH = """import sys
print("Traceback (most recent call last):", file=sys.stderr)
print({error!r}, file=sys.stderr, flush=True)
sys.exit(1)
"""


def test_a_failed_check_quotes_only_what_the_app_wrote_since_this_job_restarted_it(app, runner, code_target):
    """An earlier job's crash is still at the end of the app's log: this job's log must not quote it."""
    old = "KeyError: 'DATABASE_URL' (read from the env file)"
    (code_target.repo / "server.py").write_text(CRASH.format(error=old))
    job, view = run(app, "restart")
    assert job.state == "failed" and "  " + old in log_text(view).splitlines()

    new = 'psycopg.errors.UndefinedColumn: column "signed_up_at" does not exist'
    (code_target.repo / "server.py").write_text(CRASH.format(error=new))
    job, view = run(app, "restart")
    assert job.state == "failed" and "did not become healthy" in job.result
    logged = log_text(view).splitlines()
    assert "  " + new in logged, "this start's error is in the job's log"
    assert not [line for line in logged if "DATABASE_URL" in line], "the earlier crash is not"
    assert "what the application wrote to its log since Rewind started it at " in log_text(view)
    assert old in (code_target.repo.parent / "run" / "app.log").read_text(), "it is still in the app's own log"


def test_restart_gives_a_new_process(app, runner, code_target):
    with app.app_context():
        from app.jobs.engine import current_targets

        before = current_targets().open("staging").process().status().pid
    job, _ = run(app, "restart")
    assert job.state == "succeeded", job.result
    with app.app_context():
        after = current_targets().open("staging").process().status().pid
    assert after and after != before


def test_a_targets_env_secrets_are_masked_in_its_job_logs(app, runner, code_target, monkeypatch):
    """Secrets come from the targets file as it is when the job runs, not as it was at start-up."""
    monkeypatch.setenv("STAGING_DB_URL", "postgresql://app:staging-db-pw-77@db/app")
    write_targets_file(app, code_target.toml() + '\n[targets.staging.database]\nurl = "env:STAGING_DB_URL"\n')

    job, view = run(app, "test.echo", text="the password is staging-db-pw-77")
    assert job.state == "succeeded"
    assert "staging-db-pw-77" not in log_text(view)
    assert "echo: the password is •••" in log_text(view)


def test_an_exec_style_start_script_is_restarted_and_verified_not_doubled(app, runner, code_target):
    """A start script that migrates, then `exec`s the server: after the exec it is still the application."""
    from app.jobs.engine import current_targets

    script = code_target.repo.parent / "start.sh"
    script.write_text(f'#!/bin/sh\necho "migrations applied"\nexec {shlex.quote(sys.executable)} server.py "$@"\n')
    script.chmod(0o755)
    with app.app_context():
        current_targets().open("staging").process().stop()
    old_command = f'command = ["{sys.executable}", "server.py", "{code_target.port}"]'
    toml = code_target.toml()
    assert old_command in toml
    write_targets_file(app, toml.replace(old_command, f'command = ["{script}", "{code_target.port}"]'))
    job, _ = run(app, "start")
    assert job.state == "succeeded" and job.verification == "passed", job.result
    with app.app_context():
        process = current_targets().open("staging").process()
    first = process.status().pid
    wait_for(lambda: "server.py" in cmdline(first), timeout=20)  # the script has exec'd the server

    job, _ = run(app, "restart")
    assert job.state == "succeeded" and job.verification == "passed", job.result
    second = process.status().pid
    assert second != first and not running(first), "the old copy was stopped, not forgotten"
    log = (code_target.repo.parent / "run" / "app.log").read_text()
    assert log.count("migrations applied") == 2 and "Address already in use" not in log
    assert health(code_target)[0] == 200


def test_a_failed_restart_command_says_what_failed_and_what_to_do_its_output_only_in_the_log(
    app, runner, code_target, tmp_path
):
    """A service manager's restart fails: the message names the command and the fix; what it printed is logged."""
    script = tmp_path / "restart.py"
    script.write_text(
        "import sys\n"
        'print("\\x1b[31m\\x1b[1mJob for myapp.service failed\\x1b[0m", flush=True)\n'
        'print("See \\x1b[1mjournalctl -xeu myapp.service\\x1b[0m for details.", file=sys.stderr)\n'
        "sys.exit(1)\n"
    )
    service_target = f"""
[targets.svc]
[targets.svc.repo]
path = "{code_target.repo}"
[targets.svc.process]
restart = ["{sys.executable}", "{script}"]
"""
    write_targets_file(app, code_target.toml() + service_target)
    job, view = run(app, "restart", target="svc")
    assert job.state == "failed"
    (failed,) = [s for s in view.steps if s.state == "failed"]
    assert failed.error == (
        f"restart: `{shlex.join([sys.executable, str(script)])}` exited with status 1 — run the same command by hand"
        " as Rewind's user to see why (systemctl may need polkit or sudo rules for that user; check the unit or"
        " program name)"
    )
    assert job.result == f"“Restart the application” failed: {failed.error}"
    logged = log_text(view).splitlines()
    assert "\x1b" not in log_text(view)
    assert "Job for myapp.service failed" in logged
    assert "See journalctl -xeu myapp.service for details." in logged


def test_the_edge_of_a_shallow_clone_is_refused_before_queueing(app, code_target):
    # A server checkout cloned with --depth: its oldest commit looks parentless to git.
    edge = code_target.commits[2]
    (code_target.repo / ".git" / "shallow").write_text(edge + "\n")
    with app.app_context(), pytest.raises(ParamError, match="shallow clone") as err:
        runbooks.get("revert").parse_params({"commits": f"{code_target.commits[3]} {edge}"}, "staging")
    assert err.value.param == "commits"


def test_the_repository_s_first_commit_is_refused_before_queueing_with_the_fix(app, code_target):
    """It has no parent: git would revert it by deleting every file it added, the whole application."""
    root = code_target.commits[0]
    with app.app_context(), pytest.raises(ParamError, match=r"first commit \(it has no parent\)") as err:
        runbooks.get("revert").parse_params({"commits": f"{code_target.commits[3]} {root}"}, "staging")
    assert err.value.param == "commits" and "reset to a later commit or deploy" in err.value.problem
    with app.app_context(), pytest.raises(ParamError, match="no parent"):  # the combined runbook takes commits too
        runbooks.get("downgrade_then_revert").parse_params({"commits": root}, "staging")


@pytest.mark.parametrize("shape", ["detached", "hotfix"])
def test_a_checkout_that_is_not_the_branch_tip_is_verified_but_not_marked_known_good(app, runner, code_target, shape):
    # What answers the health check is the working copy: a detached HEAD or a hot-fix edited on the
    # server is not the branch's commit, so that commit must not be called known good.
    tip = code_target.head()
    if shape == "detached":
        git(code_target.repo, "checkout", "-q", "--detach", code_target.commits[2])
        why = f"a detached HEAD at {code_target.commits[2][:12]}"
    else:
        server = code_target.repo / "server.py"
        server.write_text(server.read_text() + "# hot-fix made on the server\n")
        why = "uncommitted changes to server.py"
    job, view = run(app, "verify")
    assert job.state == "succeeded" and job.verification == "passed", job.result
    assert f"{tip[:12]} not marked known-good: " in log_text(view) and why in log_text(view)
    with app.app_context():
        assert db.session.scalars(select(KnownGood.commit)).all() == []
    if shape == "hotfix":
        assert "# hot-fix made on the server" in (code_target.repo / "server.py").read_text(), "nothing is lost"


def _start_through(app, code_target, wrapper: str, extra: str = ""):
    """Staging stopped, then started again through `wrapper` (Python run with -c in place of server.py); the Start
    job. `extra`: more lines of its [process] table."""
    with app.app_context():
        current_targets().open("staging").process().stop()
    toml = code_target.toml().replace(
        f'command = ["{sys.executable}", "server.py", "{code_target.port}"]',
        f'command = ["{sys.executable}", "-c", {json.dumps(wrapper)}]{extra}',
    )
    write_targets_file(app, toml)
    job, _ = run(app, "start")
    return job


def test_stopping_an_app_that_ignores_sigterm_kills_it_and_says_so(app, runner, code_target):
    # The app is started through a wrapper that ignores SIGTERM, with a short stop_timeout for the test.
    ignores = (
        "import runpy, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"sys.argv = ['server.py', '{code_target.port}']; runpy.run_path('server.py', run_name='__main__')"
    )
    job = _start_through(app, code_target, ignores, "\nstop_timeout = 2.5")
    assert job.state == "succeeded", job.result
    with app.app_context():
        pid = current_targets().open("staging").process().status().pid
    job, view = run(app, "stop")
    assert job.state == "succeeded", job.result
    assert job.result.startswith(f"staging is stopped, by force: pid {pid} ignored SIGTERM for 2.5 s")
    assert "raise process.stop_timeout" in job.result
    assert "still running after 2.5 s; sent SIGKILL" in log_text(view)
    assert not running(pid)
    # Each line reached the job's page as it happened: "sent SIGTERM" did not wait for the stop to end.
    with app.app_context():
        events = db.session.scalars(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.kind == "log")).all()
        at = {text: e.ts for e in events for _, text in e.payload["lines"]}
    sent = next(ts for text, ts in at.items() if text.startswith("sent SIGTERM"))
    killed = next(ts for text, ts in at.items() if text.startswith("still running after"))
    assert (killed - sent).total_seconds() >= 1.5, at


def test_an_app_slow_to_start_is_told_to_wait_or_raise_the_timeout_not_to_roll_back(app, runner, code_target):
    """QA: an app warming up for longer than health.timeout was told "Next: roll back to a known-good commit": its
    code was fine. Still running and not yet listening, it is told to be verified again once started."""
    slow = SERVER.format(status="healthy", greeting="hello").replace(
        "import http.server", "import time\ntime.sleep(30)\nimport http.server", 1
    )
    commit(code_target.repo, "Warm up for 30 s before serving", **{"server.py": slow})
    write_targets_file(app, code_target.toml(health_timeout=1))
    job, _ = run(app, "restart")
    assert job.state == "failed", job.result
    assert "still runs but accepted no connection on port" in job.result, job.result
    assert "Next: verify again once it has started (and raise health.timeout" in job.result, job.result
    assert "roll back to a known-good commit" not in job.result, job.result


def test_a_stop_that_leaves_the_app_serving_fails_saying_who_still_listens(app, runner, code_target):
    # A start command that puts itself in the background (double fork) leaves a copy Rewind did not start: a stop
    # of the process Rewind knows must not say "staging is stopped" while that copy still answers healthy.
    daemonizes = (
        "import os, runpy, sys\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\n"
        f"sys.argv = ['server.py', '{code_target.port}']; runpy.run_path('server.py', run_name='__main__')"
    )
    job = _start_through(app, code_target, daemonizes)
    assert job.state == "failed", job.result
    daemon = wait_for(lambda: listeners(code_target.port), timeout=10)
    try:
        job, view = run(app, "stop")
        assert job.state == "failed", job.result
        assert "staging still serves after the stop: " in job.result and "answers healthy" in job.result
        assert f"pid {daemon[0]} listens on port {code_target.port}" in job.result
        assert "daemonizes" in job.result and "is stopped" not in job.result
        assert f"after the stop, {code_target.url} still answers: healthy" in log_text(view)
    finally:
        for pid in daemon:
            os.kill(pid, signal.SIGKILL)


HEALTHY = (
    "import http.server, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    '        body = b\'{"status": "healthy"}\'\n'
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args): pass\n"
    "http.server.HTTPServer(('0.0.0.0', int(sys.argv[1])), H).serve_forever()\n"
)


@contextlib.contextmanager
def another_host(port: int):
    """A healthy server on another host: a network namespace of its own, reached through a veth pair."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        pytest.skip("needs root and ip/unshare, to make a second network namespace")
    here, there = f"rw{os.getpid() % 100000}a", f"rw{os.getpid() % 100000}b"
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    server = None
    try:
        inside = ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
        wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"))
        for argv in (
            ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
            ["ip", "link", "set", there, "netns", str(holder.pid)],
            ["ip", "addr", "add", "10.213.77.1/30", "dev", here],
            ["ip", "link", "set", here, "up"],
            [*inside, "ip", "addr", "add", "10.213.77.2/30", "dev", there],
            [*inside, "ip", "link", "set", there, "up"],
        ):
            subprocess.run(argv, check=True)
        server = subprocess.Popen([*inside, sys.executable, "-c", HEALTHY, str(port)])
        url = f"http://10.213.77.2:{port}/health"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(answers, timeout=10)
        yield url
    finally:
        for process in (server, holder):
            if process is not None:
                process.kill()
                process.wait()
        subprocess.run(["ip", "link", "del", here], check=False, capture_output=True)


def test_a_stop_whose_health_url_another_host_answers_warns_and_does_not_fail(app, runner, code_target):
    # The health URL goes through a load balancer that another instance still answers after this one stopped:
    # nothing on this machine serves it, so the stop did what it was asked. Failing it ("may still serve") made
    # every Stop of such a target fail; the way on (point health.url at this instance) is said as a warning.
    with another_host(code_target.port) as url:
        write_targets_file(app, code_target.toml().replace(code_target.url, url))
        job, _ = run(app, "stop")
        assert job.state == "warning", job.result
        assert not listeners(code_target.port), "this instance is stopped"
        assert (
            f"{url} still answers healthy after the stop (status 200, JSON matches), but nothing on this machine "
            f"listens on port {code_target.port}: another instance answers that URL (a load balancer, maybe)"
        ) in job.result, job.result


def test_a_reset_of_a_checkout_with_a_hot_fix_refuses_keeps_it_and_leaves_no_tag(app, runner, code_target):
    server = code_target.repo / "server.py"
    hot_fixed = server.read_text() + "# hot-fix made on the server\n"
    server.write_text(hot_fixed)
    before = code_target.head()
    job, _ = run(app, "reset", commit=code_target.commits[0])
    assert job.state == "failed"
    assert "uncommitted changes to server.py — commit or discard them first, so nothing is lost" in job.result
    assert server.read_text() == hot_fixed and code_target.head() == before
    assert git(code_target.repo, "tag", "--list", "rewind/pre-reset/*") == "", "no safety tag for a reset not made"


def test_a_running_app_that_fails_its_check_is_still_advised_a_rollback(app, runner, code_target):
    """Only an app that was not running is told to start: one that runs and answers badly needs other code."""
    git(code_target.repo, "reset", "--hard", "feature/bad")  # by hand, as a deploy gone wrong leaves it
    with app.app_context():
        from app.jobs.engine import current_targets

        current_targets().open("staging").process().restart()
    job, _ = run(app, "verify")
    assert job.state == "failed" and "answered 500" in job.result
    assert "Next: roll back to a known-good commit (revert or reset)" in job.result and "start it" not in job.result


def test_verify_with_the_env_file_gone_fails_saying_so_not_with_an_internal_error(app, runner, code_target, tmp_path):
    """Reading whether the app runs needs its environment: a missing env file (often the incident itself) is the
    verification's failure to report, as it reports it, not a crash of the step."""
    missing = tmp_path / "gone.env"
    text = code_target.toml().replace("[targets.staging.repo]", f'env_file = "{missing}"\n\n[targets.staging.repo]', 1)
    write_targets_file(app, text.replace("[targets.staging.health]", "env_file = true\n\n[targets.staging.health]", 1))
    try:
        job, _ = run(app, "verify")
    finally:
        write_targets(app, code_target)  # the fixture stops the app through its own environment
    assert job.state == "failed", job.result
    assert f"{missing} does not exist" in job.result and "internal error" not in job.result, job.result
