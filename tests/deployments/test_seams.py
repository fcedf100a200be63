"""The engine's seams, seen through real code runbooks: nothing vanishes, nothing leaks, order by topology."""

import os
import subprocess
import sys

from sqlalchemy import select

from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs import service
from app.jobs.engine import engine
from app.jobs.models import Job, JobEvent
from tests.conftest import wait_for
from tests.deployments.test_runbooks import ADMIN, log_text, run
from tests.support.targets import commit, git, write_targets_file

RUNNING_SECRETS = {
    "REWIND_SECRET_KEY": "rewind-session-key-0123456789",
    "REWIND_AUDIT_KEY": "rewind-audit-key-0123456789",
    "REWIND_DATABASE_URL": "postgresql://rewind:ops-db-pw-4242@db/rewind",
}


def test_adapter_output_reaches_the_log_with_no_gap_in_the_events(app, runner, code_target):
    job, view = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "succeeded", job.result
    text = log_text(view)
    assert "$ git revert --no-edit " in text  # the adapter's own command line …
    assert 'Revert "Greet in French"' in text  # … and what git printed, streamed from its reader thread
    assert "sent SIGTERM to process group" in text  # the process adapter's lines too
    with app.app_context():
        seqs = db.session.scalars(select(JobEvent.seq).filter_by(job_id=job.id).order_by(JobEvent.seq)).all()
    assert seqs == list(range(1, len(seqs) + 1))


def test_smoke_output_streams_and_no_rewind_secret_reaches_a_child(app, runner, code_target, monkeypatch):
    for name, value in RUNNING_SECRETS.items():
        monkeypatch.setenv(name, value)
    smoke = f'smoke = ["{sys.executable}", "-c", "import os; [print(\'ENV\', k) for k in sorted(os.environ)]"]'
    write_targets_file(app, code_target.toml() + smoke + "\n")
    job, view = run(app, "restart")
    assert job.state == "succeeded", job.result
    text = log_text(view)
    assert "ENV PATH" in text  # the smoke command's own output is in the log
    for name, value in RUNNING_SECRETS.items():
        assert f"ENV {name}" not in text
        assert value not in text
    # The managed application itself was started without them either.
    with app.app_context():
        pid = engine(app).targets.open("staging").process().status().pid
    with open(f"/proc/{pid}/environ", "rb") as fh:
        environ = fh.read().decode(errors="replace")
    assert not any(name in environ for name in RUNNING_SECRETS)


def test_revert_orders_commits_by_their_place_on_the_branch_not_their_dates(app, runner, code_target):
    """A rebased history: the newer commit carries the older date. git revert NEWER OLDER applies cleanly."""
    repo = code_target.repo
    first = _dated_commit(repo, "Set level to two", "2026-11-20T10:00:00", level="two\n")
    second = _dated_commit(repo, "Set level to three", "2026-11-06T10:00:00", level="three\n")  # newer, dated earlier
    job, view = run(app, "revert", commits=f"{first[:8]} {second[:8]}")
    assert job.state == "succeeded", job.result
    assert (repo / "level").read_text() == "one\n"
    assert f"newest first: {second[:12]}, {first[:12]}" in log_text(view)


def _dated_commit(repo, message, when, **files):
    if not (repo / "level").exists():
        commit(repo, "Start at level one", level="one\n")
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    env = {"PATH": os.environ["PATH"], "HOME": str(repo.parent), "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    env |= {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid", "GIT_COMMITTER_NAME": "Dev"}
    env |= {"GIT_COMMITTER_EMAIL": "dev@example.invalid"}
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", message], env=env, check=True, capture_output=True)
    return git(repo, "rev-parse", "HEAD")


def test_a_failed_push_after_a_verified_revert_reads_as_a_warning_not_a_failed_rollback(app, runner, code_target):
    git(code_target.repo, "remote", "add", "origin", str(code_target.repo.parent / "no-such-remote.git"))
    toml = code_target.toml().replace('branch = "main"', 'branch = "main"\nremote = "origin"')
    write_targets_file(app, toml)
    job, view = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "warning"
    assert job.verification == "passed"
    assert job.result.startswith("Reverted 1 commit(s); staging now runs")
    assert "But: “Push” failed: pushing main to 'origin' failed" in job.result
    states = ["succeeded", "skipped", "succeeded", "succeeded", "skipped", "skipped", "succeeded", "succeeded"]
    states.append("failed")
    assert [s.state for s in view.steps] == states  # no migrations and no release commands: skipped


def test_a_failure_after_a_change_says_what_was_already_done(app, runner, code_target):
    toml = code_target.toml(health_timeout=1).replace('json = { status = "healthy" }', 'json = { status = "never" }')
    write_targets_file(app, toml)
    job, _ = run(app, "revert", commits=code_target.commits[2][:8])
    assert job.state == "failed"
    assert "“Verify health” failed" in job.result
    assert "Already done before that: reverted 1 commit(s) on staging; restarted staging." in job.result


def test_every_checkpoint_records_each_registered_capture(app, runner, code_target):
    before = code_target.head()
    _, view = run(app, "revert", commits=code_target.commits[2][:8])
    with app.app_context():
        (checkpoint,) = db.session.scalars(select(Checkpoint)).all()
        assert checkpoint.captures["code"] == {"commit": before, "branch": "main"}
    assert f"  code: {before[:12]} on main" in log_text(view)


def test_cancelling_a_long_restart_command_stops_its_group_and_ends_cancelled(app, runner, code_target, tmp_path):
    pid_file = tmp_path / "restart.pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        "print('restarting', flush=True); time.sleep(120)"
    )
    toml = code_target.toml().replace(
        f'command = ["{sys.executable}", "server.py", "{code_target.port}"]',
        f'restart = ["{sys.executable}", "-c", "{script}"]',
    )
    toml = "\n".join(line for line in toml.splitlines() if not line.startswith(("pid_file", "log_file")))
    write_targets_file(app, toml)
    with app.app_context():
        from app.jobs import runbook as runbooks

        job_id = service.enqueue(runbooks.get("restart"), "staging", {}, ADMIN).id
    wait_for(pid_file.exists, timeout=30)
    with app.app_context():
        service.cancel(db.session.get(Job, job_id), ADMIN)

    def ended():
        with app.app_context():
            return db.session.get(Job, job_id).state == "cancelled"

    wait_for(ended, timeout=30)
    pid = int(pid_file.read_text())

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=5)
    write_targets_file(app, code_target.toml())  # the fixture stops the managed app it started


def test_a_finished_job_is_announced_on_the_bus(app, runner, code_target):
    heard = []
    engine(app).bus.on_finished(heard.append)
    job, _ = run(app, "verify")
    # announced right after the job's final commit, which the test may see first
    wait_for(lambda: job.id in heard, timeout=10)
