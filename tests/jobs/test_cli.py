"""`flask rewind run` and `flask rewind jobs …` against real targets, with and without a runner up."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from queue import Empty, Queue

import pytest
from sqlalchemy import select as sql_select

from app.audit.models import AuditEvent
from app.audit.store import Actor, record_and_commit
from app.auth import accounts
from app.auth.roles import Role
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.events import load_view
from app.jobs.models import Job
from app.jobs.runner import Runner, runners_alive
from app.statuses import ExitStatus
from tests.conftest import both_databases, wait_for
from tests.deployments.conftest import write_targets
from tests.support.apps import TEST_KEYS
from tests.support.server import REPO
from tests.support.targets import git, write_targets_file


@pytest.fixture
def code_target(users, code_target):
    """The deployments area's running code target, with the role accounts the CLI acts as."""
    return code_target


def rewind(app, *args):
    return app.test_cli_runner().invoke(args=["rewind", *args])


def jobs(app) -> list[Job]:
    with app.app_context():
        rows = db.session.scalars(sql_select(Job).order_by(Job.id)).all()
        db.session.expunge_all()
        return rows


def audit_rows(app, action: str) -> list[tuple[str, int | None, dict]]:
    with app.app_context():
        rows = db.session.scalars(sql_select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return [(r.actor_name, r.actor_id, json.loads(r.details or "{}")) for r in rows]


def queue(app, name: str, target: str | None, actor: Actor, **params) -> int:
    with app.app_context():
        book = runbooks.get(name)
        parsed = book.parse_params({k: str(v) for k, v in params.items()}, target)
        return service.enqueue(book, target, parsed, actor).id


def refused(result, status: ExitStatus, *needles: str) -> None:
    assert result.exit_code == status, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rewind: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- run ---------------------------------------------------------------------------------


def test_run_follow_prints_steps_and_lines_as_the_job_runs_here(app, code_target):
    result = rewind(
        app, "run", "staging", "revert", f"commits={code_target.commits[2][:8]}", "--as", "operator", "--follow"
    )
    assert result.exit_code == ExitStatus.SUCCEEDED, result.output
    out = result.stdout
    (job,) = jobs(app)
    assert job.state == "succeeded" and job.worker.endswith("/cli")
    assert f"queued job #{job.id}: revert on staging as operator" in out
    assert "no runner is up: running it in this process" in out
    order = [
        "[1/9] Check the head is the one shown ...",
        f"staging's head is {code_target.commits[3][:12]}: no head shown was given",  # the head it starts from
        "[3/9] Record a checkpoint ...",
        "[4/9] Revert ...",
        "[4/9] Revert: succeeded",
        "[5/9] Run the release commands: skipped",
    ]
    order += ["[8/9] Verify health: succeeded", f"job #{job.id} succeeded: ", "verification: passed"]
    positions = [out.index(part) for part in order]
    assert positions == sorted(positions), out
    assert git(code_target.repo, "log", "-1", "--format=%s").startswith('Revert "Greet in French"')


def test_a_failing_job_exits_with_the_failed_status_and_shows_why(app, code_target):
    before = code_target.head()
    result = rewind(
        app, "run", "staging", "revert", f"commits={code_target.commits[1]}", "--as", "operator", "--follow"
    )
    assert result.exit_code == ExitStatus.FAILED, result.output
    assert "[4/9] Revert: failed" in result.stdout and "CHANGES.md" in result.stdout
    assert "[5/9]" not in result.stdout  # the steps after a failure never ran
    assert jobs(app)[0].state == "failed"
    assert code_target.head() == before


def test_without_follow_and_no_runner_it_still_runs_the_job_and_exits_with_its_outcome(app, users):
    result = rewind(app, "run", "-", "test.fail", "--as", "operator")
    assert result.exit_code == ExitStatus.FAILED, result.output
    (job,) = jobs(app)
    assert result.stdout.splitlines()[-1] == f"job #{job.id} failed: {job.result}"
    # lines only with --follow (the result names the command's last words)
    assert "about to fail" not in "\n".join(result.stdout.splitlines()[:-1])
    shown = rewind(app, "jobs", "show", str(job.id)).stdout
    command = shown.index(f"    $ {sys.executable} -c ")
    assert command < shown.index("    ! about to fail") < shown.index("[1/2] Exit 3: failed")


def test_the_audit_rows_carry_the_user_and_via_cli(app, users):
    result = rewind(app, "run", "staging", "test.echo", "text=hello", "--as", "operator", "--follow")
    assert result.exit_code == 0, result.output
    assert "    | echo: hello" in result.stdout
    (job,) = jobs(app)
    ((name, actor_id, details),) = audit_rows(app, "job.queued")
    assert (name, actor_id) == ("operator", users[Role.OPERATOR])
    assert details == {"job_id": job.id, "runbook": "test.echo", "params": {"text": "hello"}, "via": "cli"}
    assert [(n, d["job_id"]) for n, _, d in audit_rows(app, "job.succeeded")] == [("operator", job.id)]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["nowhere", "test.echo", "text=x", "--as", "operator"], ["there is no target 'nowhere'", "staging"]),
        (["staging", "nothing", "--as", "operator"], ["there is no runbook 'nothing'", "test.echo"]),
        (["staging", "test.echo", "text=x", "colour=red", "--as", "operator"], ["'colour' is not a parameter", "text"]),
        (["staging", "test.echo", "text", "--as", "operator"], ["parameters are KEY=VALUE, got 'text'"]),
        (["staging", "test.echo", "--as", "operator"], ["Text is required: text=…"]),
        (["staging", "test.echo", "text=a", "text=b", "--as", "operator"], ["text is given twice"]),
        (["staging", "test.echo", "text=x", "--as", "nobody"], ["there is no user 'nobody'", "users list"]),
        (["staging", "test.echo", "text=x", "--as", "viewer"], ["viewer (viewer) may not", "needs the operator role"]),
        (
            ["staging", "test.admin", "--as", "operator"],
            ["needs the admin role to run “Admins only” (test.admin)", "--as"],
        ),
        (["-", "test.echo", "text=x", "--as", "operator"], ["test.echo runs on a target"]),
        (["staging", "test.count", "--as", "operator"], ["runs on Rewind itself", "pass - as TARGET"]),
    ],
)
def test_bad_input_is_refused_before_queueing(app, users, args, needles):
    refused(rewind(app, "run", *args), ExitStatus.REFUSED, *needles)
    assert jobs(app) == []


def test_the_commands_a_refusal_points_to_exist(app, users):
    """`users list` and `targets list`, named by the refusals above, answer with the names to use."""
    listed = rewind(app, "users", "list")
    assert listed.exit_code == 0 and "operator  operator  active" in listed.stdout, listed.output
    targets = rewind(app, "targets", "list")
    assert targets.exit_code == 0 and [line.split()[0] for line in targets.stdout.splitlines()] == [
        "production",
        "staging",
    ], targets.output


def test_a_bad_commit_on_a_real_target_is_refused_and_audited(app, code_target):
    result = rewind(app, "run", "staging", "revert", "commits=1234567", "--as", "operator", "--follow")
    refused(result, ExitStatus.REFUSED, "rewind: there is no commit '1234567' in this repository")
    assert jobs(app) == []
    ((name, _, details),) = audit_rows(app, "job.queued")
    assert name == "operator" and details["via"] == "cli" and "1234567" in details["reason"]


def test_a_disabled_account_may_not_run_jobs(app, users):
    with app.app_context():
        accounts.set_disabled(accounts.find_user("operator"), True, Actor.system())
    result = rewind(app, "run", "staging", "test.echo", "text=x", "--as", "operator")
    refused(result, ExitStatus.REFUSED, "operator (operator) may not", "disabled account", "users enable operator")
    assert jobs(app) == []
    assert [d["reason"] for _, _, d in audit_rows(app, "auth.denied")] == ["comes from a disabled account"]


def test_role_refusals_are_audited_as_the_user(app, users):
    refused(rewind(app, "run", "staging", "test.admin", "--as", "operator"), ExitStatus.REFUSED)
    ((name, actor_id, details),) = audit_rows(app, "auth.denied")
    assert (name, actor_id, details["via"], details["role"]) == ("operator", users[Role.OPERATOR], "cli", "operator")


def test_a_busy_target_is_refused_with_its_own_status(app, users):
    running = queue(app, "test.sleep", "staging", Actor(users[Role.ADMIN], "admin"))
    result = rewind(app, "run", "staging", "test.sleep", "--as", "operator", "--follow")
    refused(result, ExitStatus.BUSY, "staging is busy", f"job #{running}", "Wait for it to finish or cancel it")
    assert [j.id for j in jobs(app)] == [running]
    ((_, _, details),) = audit_rows(app, "job.queued")[1:]
    assert details["reason"] == "target busy" and details["via"] == "cli"


# --- protected targets ---------------------------------------------------------------------


def test_reset_on_a_protected_target_without_a_terminal_needs_yes(app, code_target):
    write_targets(app, code_target, protected=True)
    before = code_target.head()
    result = rewind(app, "run", "staging", "reset", f"commit={code_target.commits[0]}", "--as", "admin", "--follow")
    refused(result, ExitStatus.REFUSED, "staging is protected", "pass --yes or confirm=staging")
    assert "takes:" not in result.stderr, "review: the way on is said; the runbook's parameter list is no help here"
    assert jobs(app) == [] and code_target.head() == before


def test_reset_on_a_protected_target_with_yes_runs(app, code_target):
    write_targets(app, code_target, protected=True)
    args = ["staging", "reset", f"commit={code_target.commits[0]}", "--as", "admin", "--follow", "--yes"]
    result = rewind(app, "run", *args)
    assert result.exit_code == ExitStatus.SUCCEEDED, result.output
    assert code_target.head() == code_target.commits[0]
    assert jobs(app)[0].params["confirm"] == "staging"


def test_an_unknown_parameter_is_refused_before_the_confirmation_is_asked(app, code_target):
    write_targets(app, code_target, protected=True)
    result = rewind(app, "run", "staging", "reset", f"commit={code_target.commits[0]}", "comit=x", "--as", "admin")
    takes = "reset takes: seen_head, commit, confirm"
    refused(result, ExitStatus.REFUSED, "'comit' is not a parameter of reset", takes)
    assert "protected" not in result.stderr and jobs(app) == []
    ((_, _, details),) = audit_rows(app, "job.queued")
    assert "'comit' is not a parameter" in details["reason"]


def test_a_bad_value_is_refused_before_the_confirmation_is_asked(app, code_target):
    write_targets(app, code_target, protected=True)
    result = rewind(app, "run", "staging", "reset", "commit=0000000", "--as", "admin")
    refused(result, ExitStatus.REFUSED, "0000000")
    assert "protected" not in result.stderr and jobs(app) == [], "no name to type for a commit that is not there"
    assert "takes:" not in result.stderr, "commit= was given and is a parameter: only its value is wrong"
    missing = rewind(app, "run", "staging", "reset", "--as", "admin")
    refused(missing, ExitStatus.REFUSED, "Commit is required: commit=… (reset takes: seen_head, commit")


def test_a_wrong_typed_confirmation_is_refused(app, code_target):
    write_targets(app, code_target, protected=True)
    result = rewind(
        app, "run", "staging", "reset", f"commit={code_target.commits[0]}", "confirm=stagin", "--as", "admin"
    )
    refused(result, ExitStatus.REFUSED, "type its name, staging, to confirm")
    assert jobs(app) == []


def test_an_unprotected_target_asks_nothing(app, code_target):
    result = rewind(app, "run", "staging", "reset", f"commit={code_target.commits[0]}", "--as", "admin")
    assert result.exit_code == ExitStatus.SUCCEEDED, result.output
    assert code_target.head() == code_target.commits[0]


def flask_env(app) -> dict[str, str]:
    """What the real `flask rewind …` needs to open this test app's instance and ops database."""
    settings = app.config["REWIND_SETTINGS"]
    env = {**os.environ, **TEST_KEYS, "FLASK_APP": "wsgi", "REWIND_RUNBOOKS": "tests.support.runbooks"}
    return env | {"REWIND_INSTANCE_DIR": str(settings.instance_dir), "REWIND_DATABASE_URL": settings.database_url}


def flask_on_a_terminal(app, *args: str, answer: str) -> tuple[int, str]:
    """The real `flask rewind …` on a pseudo-terminal: answer the prompt, read to the end."""
    env = flask_env(app)
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "rewind", *args], cwd=REPO, env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    seen, answered = b"", False
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            assert ready, f"no output for 60 s: {seen.decode()}"
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal closes when the command ends
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"Type staging to go on" in seen:
                os.write(main, answer.encode() + b"\n")
                answered = True
    finally:
        os.close(main)
    assert answered, seen.decode()
    return process.wait(timeout=60), seen.decode()


@pytest.mark.parametrize("answer, status", [("staging", ExitStatus.SUCCEEDED), ("production", ExitStatus.REFUSED)])
def test_on_a_terminal_a_protected_reset_asks_for_the_target_name(app, code_target, answer, status):
    write_targets(app, code_target, protected=True)
    code, output = flask_on_a_terminal(
        app, "run", "staging", "reset", f"commit={code_target.commits[0]}", "--as", "admin", "--follow", answer=answer
    )
    assert code == status, output
    if status == ExitStatus.SUCCEEDED:
        assert code_target.head() == code_target.commits[0] and "succeeded" in output
    else:
        assert "type its name, staging, to confirm" in output and jobs(app) == []


def sleeping_job_in_its_own_process(
    app, seconds: int, runbook: str = "test.sleep", *params: str
) -> tuple[subprocess.Popen, Queue, int]:
    """The real `flask rewind run … test.sleep --follow`, read until its command says it is up (and its pid).

    Lines are read on a thread: select() on a buffered pipe misses lines already in the buffer.
    """
    args = ["run", "staging", runbook, f"seconds={seconds}", *params, "--as", "operator", "--follow"]
    argv = [sys.executable, "-m", "flask", "rewind", *args]
    process = subprocess.Popen(argv, cwd=REPO, env=flask_env(app), stdout=subprocess.PIPE, text=True)
    lines: Queue = Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)  # the end

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=60)
        except Empty:
            pytest.fail(f"no output for 60 s: {seen}")
        assert line is not None, f"the command ended early: {seen}"
        seen.append(line)
        if found := re.search(r"child up (\d+)$", line.strip()):
            return process, lines, int(found[1])


def rest_of(lines: Queue) -> str:
    return "".join(iter(lambda: lines.get(timeout=60), None))


def test_ctrl_c_is_noted_while_the_main_thread_holds_the_lock_that_waking_it_takes():
    """A signal handler runs between any two bytecodes of the main thread, also inside news.wait() or news.clear()
    while that thread holds the Event's own lock: a handler that set the Event itself waited there for ever."""
    script = (
        "import os, signal\n"
        "from app.jobs.cli import _ctrl_c_noted\n"
        "with _ctrl_c_noted() as (pressed, news):\n"
        "    with news._cond:\n"  # the lock news.wait() and news.clear() hold for a few bytecodes
        "        os.kill(os.getpid(), signal.SIGINT)\n"  # the handler runs as this call returns
        "        os.getpid()\n"
        "    assert pressed.wait(60) and news.wait(60)\n"
        "print('noted')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "noted\n"), done.stderr


def test_ctrl_c_cancels_a_job_the_cli_runs_itself(app, users):
    process, lines, _ = sleeping_job_in_its_own_process(app, 60)
    process.send_signal(signal.SIGINT)
    rest = rest_of(lines)
    assert process.wait(timeout=60) == ExitStatus.CANCELLED, rest
    assert "job #1 cancelled: Cancelled by operator" in rest
    assert jobs(app)[0].state == "cancelled"
    # following again after the cancel goes on from where it was: nothing already shown is printed twice
    assert "job #1 started" not in rest and "child up" not in rest and "[1/1] Sleep ..." not in rest, rest
    ((_, _, details),) = audit_rows(app, "job.cancel_requested")
    assert details["via"] == "cli"


# `flask rewind run`, with Ctrl-C pressed the moment a line is printed (the handler runs as echo returns).
PRESSED_AT_A_LINE = """
import os, signal, click
from flask.cli import FlaskGroup
printed = click.echo
def echo(message=None, *args, **kwargs):
    printed(message, *args, **kwargs)
    if str(message).startswith(%r):
        os.kill(os.getpid(), signal.SIGINT)
click.echo = echo
FlaskGroup().main(["rewind", "run", "staging", "test.sleep", "seconds=60", "--as", "operator", "--follow"])
"""


def pressed_at_a_line(app, line: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRESSED_AT_A_LINE % line],
        cwd=REPO,
        env=flask_env(app),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("line", "said"),
    [
        # the press reaches the command a moment later (through its signal relay): before or after the claim
        pytest.param("queued job #", r"cancelled job #1 before it started|job #1 cancelled: Cancelled by", id="queued"),
        pytest.param("no runner is up", r"job #1 cancelled: Cancelled by operator", id="claimed"),
    ],
)
def test_ctrl_c_between_queueing_and_following_cancels_the_job(app, users, line, said):
    """Between its handlers a press was raised wherever the command stood: the job stayed queued for the next
    runner, or stayed running here until the process died."""
    done = pressed_at_a_line(app, line)
    assert done.returncode == ExitStatus.CANCELLED, done.stdout + done.stderr
    assert re.search(said, done.stdout + done.stderr), done.stdout + done.stderr
    assert jobs(app)[0].state == "cancelled"


def test_ctrl_c_as_a_job_is_queued_with_a_runner_up_is_answered_saying_what_became_of_the_job(app, users, runner):
    """Raised wherever the command stood, the press was an "Aborted!" that said nothing of the job, which ran on.
    Heard in time it is a cancel; heard once the command follows the runner's job, it stops following."""
    assert runners_alive(app)
    done = pressed_at_a_line(app, "queued job #")
    said = done.stdout + done.stderr
    answers = {
        ExitStatus.CANCELLED: "cancelled job #1 before it started",
        ExitStatus.DETACHED: r"asked job #1 to stop|stopped following; job #1 goes on",
    }
    assert done.returncode in answers and re.search(answers[done.returncode], said), said
    if "goes on" in said:
        assert rewind(app, "jobs", "cancel", "1", "--as", "operator").exit_code == 0  # not 60 s of teardown
    wait_for(lambda: jobs(app)[0].state == "cancelled", timeout=60)


def test_a_second_ctrl_c_stops_waiting_and_the_next_runner_marks_the_job_interrupted(app, users):
    process, _lines, child = sleeping_job_in_its_own_process(app, 120, runbook="test.stubborn")
    try:
        process.send_signal(signal.SIGINT)
        wait_for(lambda: audit_rows(app, "job.cancel_requested"), timeout=60)  # the first asked for a cancel
        assert process.poll() is None and jobs(app)[0].state == "running"  # which the job's command outlives
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) not in (0, ExitStatus.CANCELLED)
        assert jobs(app)[0].state == "running"  # left as it stood, with no process of Rewind's behind it
    finally:
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)  # the shielded command, orphaned with its process
    from app.jobs.engine import engine

    engine(app).start_runner().stop(wait=True)
    assert jobs(app)[0].state == "interrupted"


def test_ctrl_c_while_following_a_job_a_runner_runs_stops_following_and_the_job_goes_on(app, users, runner):
    """Ctrl-C is noted between reads, not raised wherever the main thread stands (inside an Event's wait it
    once left a lock broken, a RuntimeError instead of this answer)."""
    assert runners_alive(app)
    process, _lines, _ = sleeping_job_in_its_own_process(app, 60)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == ExitStatus.DETACHED
    (job,) = jobs(app)
    assert job.state == "running" and audit_rows(app, "job.cancel_requested") == []  # only the follower stopped
    assert rewind(app, "jobs", "cancel", str(job.id), "--as", "operator").exit_code == 0  # not 60 s of teardown
    wait_for(lambda: jobs(app)[0].state == "cancelled", timeout=60)


# --- another runner ---------------------------------------------------------------------------


@both_databases
def test_with_a_runner_up_the_cli_follows_and_never_runs_the_job_itself(app, users, runner):
    assert runners_alive(app)
    result = rewind(app, "run", "staging", "test.echo", "text=once", "--as", "operator", "--follow")
    assert result.exit_code == ExitStatus.SUCCEEDED, result.output
    assert "a runner will start it" in result.stdout and "running it in this process" not in result.stdout
    assert result.stdout.count("    | echo: once") == 1
    (job,) = jobs(app)
    assert job.worker == runner.identity
    assert [d["job_id"] for _, _, d in audit_rows(app, "job.start")] == [job.id]  # started exactly once


@pytest.mark.parametrize(
    "target, runbook, params, status",
    [("staging", "test.echo", ("text=once",), ExitStatus.SUCCEEDED), ("-", "test.fail", (), ExitStatus.FAILED)],
)
def test_the_hint_run_gives_follows_a_job_a_runner_runs_to_its_end(app, users, runner, target, runbook, params, status):
    """`run` without --follow names a command to follow the job with: it must follow, and exit as the job ended."""
    queued = rewind(app, "run", target, runbook, *params, "--as", "operator")
    assert queued.exit_code == 0, queued.output
    hint = queued.stdout.strip().splitlines()[-1]
    assert hint.startswith("a runner will start it; follow it with: flask rewind "), hint
    followed = rewind(app, *hint.split("flask rewind ", 1)[1].split())
    assert followed.exit_code == status, followed.output
    (job,) = jobs(app)
    assert job.job_state.is_final and job.worker == runner.identity
    assert followed.stdout.startswith(f"job #{job.id}: {runbook} on {'staging' if target == 'staging' else 'Rewind'}\n")
    assert job.result in followed.stdout, "its end is printed"


def test_following_a_queued_job_with_no_runner_up_says_what_it_waits_for(app, users):
    """`jobs show --follow` of a job no runner will start (none is up) waited in silence until Ctrl-C."""
    job_id = queue(app, "test.echo", "staging", Actor(users[Role.OPERATOR], "operator"), text="later")
    argv = [sys.executable, "-m", "flask", "rewind", "jobs", "show", str(job_id), "--follow"]
    process = subprocess.Popen(
        argv, cwd=REPO, env=flask_env(app), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: Queue = Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        seen = []
        while not (seen and seen[-1].startswith("no runner is up")):
            try:
                seen.append(lines.get(timeout=30))
            except Empty:
                pytest.fail(f"no word of why it waits in 30 s: {seen}")
        assert f"job #{job_id} waits in the queue until one starts" in seen[-1]
        assert f"flask rewind jobs cancel {job_id} --as USER" in seen[-1]
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        err = process.stderr.read()  # a line or two: the pipe cannot have filled
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == ExitStatus.DETACHED, err
    assert f"stopped following; job #{job_id} goes on" in err
    assert jobs(app)[0].state == "queued", "only the follower stopped"


@both_databases
def test_a_job_another_runner_holds_cannot_be_claimed_by_the_cli(app, users, runner):
    job_id = queue(app, "test.sleep", "staging", Actor(users[Role.OPERATOR], "operator"), seconds=30)
    wait_for(lambda: jobs(app)[0].state == "running")
    assert Runner(app, workers=1, identity="cli-probe").claim(job_id) is None
    result = rewind(app, "jobs", "cancel", str(job_id), "--as", "operator")
    assert result.exit_code == 0 and f"asked job #{job_id} to stop" in result.stdout
    wait_for(lambda: jobs(app)[0].state == "cancelled")
    ((_, _, details),) = audit_rows(app, "job.cancel_requested")
    assert details == {"job_id": job_id, "via": "cli"}


def test_a_worker_on_sqlite_says_why_in_one_line(app):
    result = rewind(app, "worker")
    assert result.exit_code == ExitStatus.ERROR and result.stdout == ""
    assert result.stderr.startswith("rewind: separate workers need a PostgreSQL ops database (REWIND_DATABASE_URL)")


def test_runners_alive_follows_the_runner_life(app):
    assert not runners_alive(app)
    from app.jobs.engine import engine

    started = engine(app).start_runner()
    try:
        assert runners_alive(app)
    finally:
        started.stop(wait=True)
    assert not runners_alive(app)


def test_without_follow_a_running_runner_takes_the_job_and_the_cli_returns(app, users, runner):
    result = rewind(app, "run", "-", "test.count", "lines=3", "--as", "operator")
    assert result.exit_code == ExitStatus.SUCCEEDED, result.output
    (job,) = jobs(app)
    assert f"follow it with: flask rewind jobs show {job.id}" in result.stdout
    wait_for(lambda: jobs(app)[0].state == "succeeded")
    assert jobs(app)[0].worker == runner.identity


# --- jobs list / show / cancel -------------------------------------------------------------------


def job_lines(result) -> list[str]:
    """The header and one line a job: each job's result is on the indented line below it, the next page's command
    after them."""
    return [line for line in result.stdout.splitlines() if not line.startswith(("        ", "older jobs: "))]


def test_jobs_list_filters_by_target_and_state(app, users):
    assert rewind(app, "run", "staging", "test.echo", "text=a", "--as", "operator").exit_code == 0
    assert rewind(app, "run", "production", "test.echo", "text=b", "--as", "operator").exit_code == 0
    assert rewind(app, "run", "-", "test.fail", "--as", "operator").exit_code == ExitStatus.FAILED
    first, second, third = (j.id for j in jobs(app))
    listed = job_lines(rewind(app, "jobs", "list"))
    assert listed[0].split()[:4] == ["ID", "STATE", "RUNBOOK", "TARGET"]
    assert [line.split()[0] for line in listed[1:]] == [str(third), str(second), str(first)]
    by_target = job_lines(rewind(app, "jobs", "list", "--target", "production"))[1:]
    assert [line.split()[:4] for line in by_target] == [[str(second), "succeeded", "test.echo", "production"]]
    failed = job_lines(rewind(app, "jobs", "list", "--state", "failed"))[1:]
    assert [line.split()[:3] for line in failed] == [[str(third), "failed", "test.fail"]]
    assert rewind(app, "jobs", "list", "--state", "cancelled").stdout.strip() == "no jobs"
    assert rewind(app, "jobs", "list", "--state", "lost").exit_code == ExitStatus.USAGE
    refused(rewind(app, "jobs", "list", "--target", "prodution"), ExitStatus.REFUSED, "no target 'prodution'")
    assert rewind(app, "jobs", "list", "--target", "staging", "--state", "cancelled").stdout == "no jobs\n"


def test_jobs_list_still_lists_a_target_gone_from_the_targets_file(app, users):
    assert rewind(app, "run", "production", "test.echo", "text=b", "--as", "operator").exit_code == 0
    write_targets_file(app, "")
    listed = job_lines(rewind(app, "jobs", "list", "--target", "production"))
    assert [line.split()[1:4] for line in listed[1:]] == [["succeeded", "test.echo", "production"]]


def test_jobs_show_gives_steps_result_verification_and_lines(app, users):
    assert rewind(app, "run", "-", "test.count", "lines=3", "--as", "operator").exit_code == 0
    (job,) = jobs(app)
    out = rewind(app, "jobs", "show", str(job.id)).stdout
    for part in (f"job #{job.id}: test.count on Rewind", "state:    succeeded", "by:       operator"):
        assert part in out
    for part in ("params:   delay=0.0 lines=3", "    | line 1", "    | line 3", "  1. Count: succeeded"):
        assert part in out
    assert "result:   counted 3 lines" in out and "verification: passed (counted every line)" in out
    assert out.index("    | line 1") < out.index("    | line 3") < out.index("  2. Finish: succeeded")
    assert out.count("counted 3 lines") == 1 and out.count("verification:") == 1  # said once, in the summary
    assert f"job #{job.id} started: 2 step(s)" in out and "running:" not in out  # an ended job is not running


def test_jobs_show_gives_a_list_parameter_as_ids_not_python(app, users):
    from app.audit.store import Actor
    from app.jobs import runbook, service

    with app.app_context():
        params = {"commits": ["a" * 40, "b" * 40], "gate_override": ""}
        job_id = service.enqueue(runbook.get("test.echo"), "staging", params, Actor(None, "oncall")).id
    out = rewind(app, "jobs", "show", str(job_id)).stdout
    assert f"params:   commits={'a' * 40},{'b' * 40}\n" in out and "['" not in out


def test_jobs_show_of_an_unknown_job_says_how_to_find_one(app):
    refused(rewind(app, "jobs", "show", "999"), ExitStatus.REFUSED, "there is no job #999", "jobs list")


@pytest.mark.parametrize("command", [["show"], ["cancel", "--as", "admin"]])
def test_a_job_id_too_big_for_the_database_is_no_job_not_a_crash(app, users, command):
    big = str(2**64)
    result = rewind(app, "jobs", command[0], big, *command[1:])
    refused(result, ExitStatus.REFUSED, f"there is no job #{big}")


def test_jobs_list_and_show_of_a_job_cancelled_before_it_started_fit_80_columns(app, users):
    job_id = queue(app, "test.echo", "staging", Actor(None, "someone-with-a-long-name"), text="x")
    with app.app_context():
        canceller = Actor(None, "another-person-with-a-name-longer-than-a-result-line-holds")
        service.cancel(db.session.get(Job, job_id), canceller)
    shown = rewind(app, "jobs", "show", str(job_id))
    assert shown.exit_code == 0, shown.output
    assert "(it never started)" in shown.stdout and "result:   Cancelled by another-person" in shown.stdout
    listed = rewind(app, "jobs", "list")
    assert listed.exit_code == 0, listed.output
    header, row, result = listed.stdout.splitlines()
    assert max(len(header), len(row), len(result)) <= 80, listed.stdout
    assert row.split()[:5] == [str(job_id), "cancelled", "test.echo", "staging", "someone-w…"]
    assert result.strip().startswith("Cancelled by another-person") and result.endswith("…")


def test_jobs_cancel_checks_the_role_and_is_audited_via_cli(app, users):
    job_id = queue(app, "test.sleep", "staging", Actor(users[Role.OPERATOR], "operator"))
    refused(rewind(app, "jobs", "cancel", str(job_id), "--as", "viewer"), ExitStatus.REFUSED, "needs the operator role")
    assert jobs(app)[0].state == "queued"
    ((name, _, details),) = audit_rows(app, "auth.denied")
    assert name == "viewer" and details["via"] == "cli"

    result = rewind(app, "jobs", "cancel", str(job_id), "--as", "operator")
    assert result.exit_code == 0 and f"cancelled job #{job_id} before it started" in result.stdout
    assert jobs(app)[0].state == "cancelled"
    ((name, actor_id, details),) = audit_rows(app, "job.cancelled")
    assert (name, actor_id, details) == (
        "operator",
        users[Role.OPERATOR],
        {"job_id": job_id, "before_start": True, "via": "cli"},
    )

    refused(rewind(app, "jobs", "cancel", str(job_id), "--as", "operator"), ExitStatus.REFUSED, "already ended")


@pytest.mark.parametrize(
    "args, needles",
    [
        (["999", "--as", "admin"], ["there is no job #999"]),
        (["1", "--as", "nobody"], ["there is no user 'nobody'"]),
    ],
)
def test_jobs_cancel_refuses_unknown_names(app, users, args, needles):
    job_id = queue(app, "test.sleep", "staging", Actor(users[Role.ADMIN], "admin"))
    assert job_id == 1
    refused(rewind(app, "jobs", "cancel", *args), ExitStatus.REFUSED, *needles)
    assert jobs(app)[0].state == "queued"


def test_only_the_starter_or_an_admin_may_cancel(app, users):
    job_id = queue(app, "test.sleep", "staging", Actor(users[Role.ADMIN], "admin"))
    result = rewind(app, "jobs", "cancel", str(job_id), "--as", "operator")
    refused(result, ExitStatus.REFUSED, "only its starter (admin) or an admin may cancel", "--as admin")
    assert jobs(app)[0].state == "queued"


def test_a_command_left_running_by_a_killed_process_is_stopped_when_its_job_is_marked_interrupted(app, users):
    """kill -9 of the process running a job: its command lives on in its own group until a runner sweeps it."""
    process, _, child = sleeping_job_in_its_own_process(app, 120)
    with app.app_context():
        wait_for(lambda: db.session.get(Job, 1).command_group == child and db.session.commit() is None, timeout=30)
    process.kill()  # as the OOM killer would: no clean-up runs
    process.wait(timeout=30)
    os.kill(child, 0)  # the orphan still runs: nothing stopped it yet
    from app.jobs.engine import engine

    runner = engine(app).start_runner()  # a runner starting up sweeps jobs whose process died
    try:
        wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), timeout=30)
        with app.app_context():
            job = db.session.get(Job, 1)
            assert job.state == "interrupted"
            assert job.command_group is None
            lines = [text for _, _, text in load_view(job).lines]
        assert f"stopped the command (process group {child}) that the stopped Rewind process left running" in lines
        ((_, _, details),) = audit_rows(app, "job.interrupted")
        assert details["orphaned_group"] == child
    finally:
        runner.stop(wait=True)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@both_databases
def test_a_target_whose_job_s_process_was_killed_takes_the_next_job_with_no_runner_started(app, users):
    """kill -9 of `flask rewind run` while no runner is up: the next job on its target was refused as busy
    (exit 7, naming the dead job) until some runner happened to start."""
    process, _, child = sleeping_job_in_its_own_process(app, 120)
    process.kill()
    process.wait(timeout=30)
    result = rewind(app, "run", "staging", "test.sleep", "seconds=0", "--as", "operator", "--follow")
    assert result.exit_code == ExitStatus.SUCCEEDED, result.output
    first, second = jobs(app)
    assert first.state == "interrupted" and "during “Sleep”" in first.result and "not re-run" in first.result
    assert second.state == "succeeded"
    assert [d["job_id"] for _, _, d in audit_rows(app, "job.interrupted")] == [first.id]
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), timeout=30)  # its command stopped too


@both_databases
def test_the_audit_log_is_not_held_while_a_dead_job_s_command_is_stopped(app, users, tmp_path):
    """Stopping a dead job's leftover command can take the whole grace (SIGTERM shrugged off, then SIGKILL): the
    enqueue that does it must not hold the lock every audited write in every process waits for, meanwhile."""
    heard = tmp_path / "heard"
    process, _, child = sleeping_job_in_its_own_process(app, 120, "test.deaf", f"heard={heard}")
    process.kill()
    process.wait(timeout=30)
    queued: list = []
    operator = Actor(users[Role.OPERATOR], "operator")
    enqueue = threading.Thread(target=lambda: queued.append(queue(app, "test.sleep", "staging", operator, seconds=0)))
    enqueue.start()
    wait_for(heard.exists, timeout=30)  # the orphan got its SIGTERM: the SIGKILL comes after the grace
    with app.app_context():
        record_and_commit("test.meanwhile", actor=Actor.system())  # waits on the lock if the stop holds it
    assert os.path.exists(f"/proc/{child}") and not _zombie(child), "the write came after the stop, not during it"
    enqueue.join(timeout=60)
    assert queued == [2], "queued once the dead job was marked"
    with app.app_context():
        first = db.session.get(Job, 1)
        assert first.state == "interrupted"
        lines = [text for _, _, text in load_view(first).lines]
    assert f"stopped the command (process group {child}) that the stopped Rewind process left running" in lines


@both_databases
def test_cancelling_a_job_whose_process_was_killed_ends_it_as_interrupted_and_says_so(app, users):
    """It answered "asked job #1 to stop" (exit 0), and the job read running for ever: no one was left to stop."""
    process, _, child = sleeping_job_in_its_own_process(app, 120)
    process.kill()
    process.wait(timeout=30)
    result = rewind(app, "jobs", "cancel", "1", "--as", "operator")
    refused(result, ExitStatus.REFUSED, "job #1 was no longer running", "marked interrupted", "check staging")
    (job,) = jobs(app)
    assert job.state == "interrupted" and job.cancel_requested_by is None
    assert audit_rows(app, "job.cancel_requested") == []
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), timeout=30)


def test_jobs_list_pages_back_through_older_jobs_with_the_same_filters_while_new_ones_arrive(app, users):
    """It showed the newest --limit (1000 at most) with no hint of the rest and no way to reach older jobs."""
    operator = Actor(users[Role.OPERATOR], "operator")
    ids = [queue(app, "test.echo", "staging" if i % 2 else "production", operator, text=str(i)) for i in range(7)]
    staging = [i for n, i in enumerate(ids) if n % 2][::-1]  # newest first
    first = rewind(app, "jobs", "list", "--target", "staging", "--limit", "2")
    assert [line.split()[0] for line in job_lines(first)[1:]] == [str(i) for i in staging[:2]]
    hint = first.stdout.splitlines()[-1]
    assert hint == f"older jobs: flask rewind jobs list --target staging --before {staging[1]} --limit 2"
    queue(app, "test.echo", "staging", operator, text="new")  # a new job does not shift the next page
    second = rewind(app, "jobs", "list", *hint.split()[6:])
    assert [line.split()[0] for line in job_lines(second)[1:]] == [str(staging[2])]
    assert "older jobs" not in second.stdout
    assert rewind(app, "jobs", "list", "--before", str(ids[0])).stdout == f"no jobs older than #{ids[0]}\n"


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_run_follow_of_a_job_whose_worker_is_killed_ends_with_the_interrupted_status(app, users):
    """`run --follow` of a job a `flask rewind worker` ran, when that worker was killed outright: it waited for
    ever (a CI pipeline hung) on a job that read running, as nothing was left to end it."""
    worker = subprocess.Popen([sys.executable, "-m", "flask", "rewind", "worker"], cwd=REPO, env=flask_env(app))
    try:
        wait_for(lambda: runners_alive(app), timeout=60)
        process, lines, child = sleeping_job_in_its_own_process(app, 120)
        worker.kill()  # as the OOM killer would: no clean-up runs
        worker.wait(timeout=30)
        try:
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        rest = rest_of(lines)
        assert status == ExitStatus.INTERRUPTED, rest
        said = re.search(r"job #1 interrupted: The Rewind process running this job \(([^)]+)\) stopped while", rest)
        assert said and "while the job was running during “Sleep”." in rest, rest
        assert said.group(1) == f"{socket.gethostname()}:{worker.pid}", "the worker that died, not the web"
        assert jobs(app)[0].state == "interrupted"
        wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), timeout=30)  # its command stopped
    finally:
        if worker.poll() is None:
            worker.kill()


@pytest.mark.parametrize(
    "where, needles",
    [
        ("empty", ["Rewind's ops database failed: no such table: job", "flask db upgrade"]),
        ("absent", ['database "no_such_db" does not exist', "check REWIND_DATABASE_URL", "server is up"]),
    ],
)
def test_an_ops_database_that_cannot_be_used_is_one_line_with_the_fix(app, tmp_path, pg_server, where, needles):
    """It was a 160-line traceback, where the README promises one `rewind:` line (exit 1)."""
    url = f"sqlite:///{tmp_path / 'empty.db'}" if where == "empty" else pg_server.url("no_such_db")
    env = flask_env(app) | {"REWIND_DATABASE_URL": url}
    argv = [sys.executable, "-m", "flask", "rewind", "jobs", "list"]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == ExitStatus.ERROR, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("rewind: ") and all(needle in line for needle in needles), line


def test_run_with_no_runner_waits_for_the_target_lock_a_just_ended_job_still_holds(app, users):
    """The job before, in another process, has committed its end but not yet let go of the target's lock: the
    claim missed, `run` said "a runner will start it" with no runner up, and waited for ever on a queued job."""
    from app.jobs.runner import FileLocks

    locks = FileLocks(app.config["REWIND_SETTINGS"].instance_dir / "locks")
    held = locks.try_lock("target-staging")  # as that other process still holds it
    argv = [sys.executable, "-m", "flask", "rewind", "run", "staging", "test.sleep", "seconds=0", "--as", "operator"]
    process = subprocess.Popen([*argv, "--follow"], cwd=REPO, env=flask_env(app), stdout=subprocess.PIPE, text=True)
    try:
        first = [process.stdout.readline() for _ in range(2)]
        assert first[1].strip() == "waiting for the job before it to let go of the target ...", first
        FileLocks.release(held)
        held = None
        out, _ = process.communicate(timeout=60)
    finally:
        if held is not None:
            FileLocks.release(held)
        if process.poll() is None:
            process.kill()
    assert process.returncode == ExitStatus.SUCCEEDED, out
    assert "no runner is up: running it in this process" in out and jobs(app)[0].worker.endswith("/cli")


def test_ctrl_c_while_run_waits_for_the_target_lock_cancels_the_queued_job(app, users):
    """It ended with "Aborted!" and left the job queued, to run by itself whenever a runner next started."""
    from app.jobs.runner import FileLocks

    locks = FileLocks(app.config["REWIND_SETTINGS"].instance_dir / "locks")
    held = locks.try_lock("target-staging")
    argv = [sys.executable, "-m", "flask", "rewind", "run", "staging", "test.sleep", "seconds=0", "--as", "operator"]
    process = subprocess.Popen(
        argv, cwd=REPO, env=flask_env(app), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = [process.stdout.readline() for _ in range(2)]
        assert first[1].strip() == "waiting for the job before it to let go of the target ...", first
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        FileLocks.release(held)
        if process.poll() is None:
            process.kill()
    assert process.returncode == ExitStatus.CANCELLED, err
    assert "cancelled job #1 before it started" in err
    assert jobs(app)[0].state == "cancelled"
    ((_, _, details),) = audit_rows(app, "job.cancelled")
    assert details == {"job_id": 1, "before_start": True, "via": "cli"}


def _lose_job_lock(app, job_id: int) -> None:
    """As a live process's job lock can go without it: PostgreSQL closes the connection holding it (a server-side
    timeout, a proxy, a DBA's pg_terminate_backend); on SQLite, someone clears the lock files."""
    from sqlalchemy import text

    from app.jobs.runner import JOB_LOCKS

    with app.app_context():
        if app.config["REWIND_SETTINGS"].is_postgres:
            holders = db.session.scalars(
                text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns AND objid = :id"),
                {"ns": JOB_LOCKS, "id": job_id},
            ).all()
            assert holders, "the running job holds its lock"
            for pid in holders:
                db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            db.session.commit()
        else:
            (app.config["REWIND_SETTINGS"].instance_dir / "locks" / f"job-{job_id}.lock").unlink()


@both_databases
def test_a_live_job_whose_lock_was_lost_is_not_marked_interrupted_nor_its_command_stopped(app, users):
    """The lock alone judged a job dead: a live `run` whose lock's connection was closed had its job marked
    interrupted and its command killed by the next job asked for on its target (which then ran beside it), by its
    own follower within a second or two, or by any runner's sweep."""
    from app.jobs.follow import LIVENESS_S

    process, lines, child = sleeping_job_in_its_own_process(app, 120)
    try:
        _lose_job_lock(app, 1)
        result = rewind(app, "run", "staging", "test.sleep", "seconds=0", "--as", "operator")
        refused(result, ExitStatus.BUSY, "staging is busy", "job #1")
        runner = Runner(app, workers=1, poll_s=0.05, sweep_s=0.1).start()
        try:
            threading.Event().wait(LIVENESS_S + 1)  # the follower in the process running it looks, and the sweeps
        finally:
            runner.stop()
        assert [j.state for j in jobs(app)] == ["running"]
        assert os.path.exists(f"/proc/{child}") and not _zombie(child), "its command runs on"
        assert audit_rows(app, "job.interrupted") == []
        assert rewind(app, "jobs", "cancel", "1", "--as", "operator").exit_code == 0
        assert process.wait(timeout=60) == ExitStatus.CANCELLED, rest_of(lines)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_refusal_for_want_of_a_role_names_its_target(app, users):
    """Audited with the target, as the web's refusal is: production's timeline shows who tried to restore it."""
    refused(rewind(app, "run", "staging", "test.admin", "--as", "operator"), ExitStatus.REFUSED, "needs the admin role")
    with app.app_context():
        (row,) = db.session.scalars(sql_select(AuditEvent).where(AuditEvent.action == "auth.denied")).all()
        assert (row.actor_name, row.target) == ("operator", "staging")
