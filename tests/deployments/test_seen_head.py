"""Reset and Revert from a Deployments tab drawn before the branch head moved (someone deployed, reset or committed):
refused when queued, and again when the job runs, saying what the head is now and who moved it; nothing changes."""

import html
import re

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs.engine import engine
from app.jobs.models import Job
from app.statuses import ExitStatus
from tests.deployments.test_runbooks import log_text, run
from tests.support.apps import csrf_token
from tests.support.jobs import finished
from tests.support.targets import commit, git

PAGE = "/targets/staging/deployments"


def row_of(page: str, sha: str) -> str:
    row = page[page.index(f'id="commit-{sha[:7]}') :]
    return row[: row.index("</tr>")]


def form_as_rendered(page: str, sha: str, button: str) -> dict[str, str]:
    """The hidden fields of the form in `sha`'s row whose button reads `button`, as a browser would post them."""
    (form,) = [f for f in row_of(page, sha).split("<form")[1:] if f">{button}<" in f]
    fields = re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form)
    return {name: html.unescape(value) for name, value in fields}


def post_as_rendered(client, fields: dict[str, str]):
    # The form carries the token of the session that drew it; a fresh one is the same token.
    return client.post("/jobs", data={**fields, "csrf_token": csrf_token(client)})


def feature_branch(code_target) -> str:
    """A branch with a harmless commit (a deploy of it passes verification): its commit."""
    git(code_target.repo, "checkout", "-q", "-b", "feature/notes", code_target.commits[3])
    sha = commit(code_target.repo, "Add release notes", **{"NOTES.md": "1.2\n"})
    git(code_target.repo, "checkout", "-q", "main")
    return sha


def job_ids(app) -> list[int]:
    with app.app_context():
        return list(db.session.scalars(select(Job.id).order_by(Job.id)))


def denied_reasons(app) -> list[str]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "job.queued", AuditEvent.outcome == "denied")
        )
        return [row.details for row in rows]


def no_safety_tag(code_target) -> None:
    assert git(code_target.repo, "tag", "--list", "rewind/*") == "", "no safety tag for a reset not made"


def test_a_reset_from_a_page_drawn_before_a_deploy_is_refused_then_works_after_a_reload(
    app, users, as_role, runner, code_target
):
    client = as_role(Role.ADMIN)
    shown = code_target.head()
    stale = client.get(PAGE).get_data(as_text=True)
    fields = form_as_rendered(stale, code_target.commits[1], "Reset to here")
    assert fields["seen_head"] == shown and fields["commit"] == code_target.commits[1]

    feature = feature_branch(code_target)
    deploy, _ = run(app, "deploy", ref="feature/notes")  # someone else deploys meanwhile
    assert deploy.state == "succeeded", deploy.result
    deployed = code_target.head()
    assert git(code_target.repo, "merge-base", "--is-ancestor", feature, deployed) == ""
    queued = job_ids(app)

    refused = post_as_rendered(client, fields)
    assert refused.status_code == 303 and refused.headers["Location"] == PAGE
    said = (
        f"staging's head is now {deployed[:12]} (deployed by oncall in job #{deploy.id}), not {shown[:12]} as the "
        "page showed: nothing was changed; look at the Deployments tab again"
    )
    back = html.unescape(client.get(PAGE).get_data(as_text=True))
    row = row_of(back, code_target.commits[1])
    assert f'<span class="field-error" id="reset-{code_target.commits[1][:7]}-error" role="alert">{said}</span>' in row
    assert 'aria-describedby="reset-' in row
    assert said in back[: back.index("<table")], "flashed too"
    assert job_ids(app) == queued, "nothing queued"
    assert code_target.head() == deployed and (code_target.repo / "NOTES.md").exists()
    no_safety_tag(code_target)
    assert any(said in details for details in denied_reasons(app)), "audited as a refusal"

    reloaded = client.get(PAGE).get_data(as_text=True)
    assert "field-error" not in row_of(reloaded, code_target.commits[1]), "the refusal is shown once"
    again = form_as_rendered(reloaded, code_target.commits[1], "Reset to here")
    assert again["seen_head"] == deployed
    started = post_as_rendered(client, again)
    assert started.status_code == 302, started.get_data(as_text=True)
    job, view = finished(app, int(started.headers["Location"].rsplit("/", 1)[1]))
    assert job.state == "succeeded", job.result
    assert code_target.head() == code_target.commits[1]
    assert f"staging's head is {deployed[:12]}, as the page showed" in log_text(view)


def test_a_revert_from_a_page_drawn_before_a_commit_on_the_server_is_refused_then_works_after_a_reload(
    app, users, as_role, runner, code_target
):
    client = as_role(Role.OPERATOR)
    shown = code_target.head()
    fields = form_as_rendered(client.get(PAGE).get_data(as_text=True), code_target.commits[2], "Revert")
    assert fields["seen_head"] == shown
    by_hand = commit(code_target.repo, "Hot-fix on the server", **{"HOTFIX.md": "x\n"})
    queued = job_ids(app)

    refused = post_as_rendered(client, fields)
    assert refused.status_code == 303
    said = (
        f"staging's head is now {by_hand[:12]} (changed outside Rewind: a commit, pull or reset on the server), "
        f"not {shown[:12]} as the page showed: nothing was changed; look at the Deployments tab again"
    )
    row = row_of(html.unescape(client.get(PAGE).get_data(as_text=True)), code_target.commits[2])
    assert f'id="revert-{code_target.commits[2][:7]}-error" role="alert">{said}</span>' in row
    assert job_ids(app) == queued
    assert code_target.head() == by_hand and git(code_target.repo, "status", "--porcelain") == ""
    assert any(said in details for details in denied_reasons(app))

    again = form_as_rendered(client.get(PAGE).get_data(as_text=True), code_target.commits[2], "Revert")
    started = post_as_rendered(client, again)
    assert started.status_code == 302, started.get_data(as_text=True)
    job, _ = finished(app, int(started.headers["Location"].rsplit("/", 1)[1]))
    assert job.state == "succeeded", job.result
    assert git(code_target.repo, "log", "-1", "--format=%s").startswith('Revert "Greet in French"')
    assert git(code_target.repo, "rev-parse", "HEAD~1") == by_hand


def test_a_reset_queued_with_the_right_head_fails_at_its_first_step_when_the_head_moves_before_it_runs(
    app, users, as_role, code_target
):
    client = as_role(Role.ADMIN)  # no runner yet: the job waits in the queue
    page = client.get(PAGE).get_data(as_text=True)
    shown = code_target.head()
    started = post_as_rendered(client, form_as_rendered(page, code_target.commits[0], "Reset to here"))
    assert started.status_code == 302, started.get_data(as_text=True)
    job_id = int(started.headers["Location"].rsplit("/", 1)[1])
    moved = commit(code_target.repo, "Committed while the reset waited", **{"LATE.md": "late\n"})

    running = engine(app).start_runner()
    try:
        job, view = finished(app, job_id)
    finally:
        running.stop(wait=True)
    assert job.state == "failed"
    assert f"failed: staging's head is now {moved[:12]} (changed outside Rewind: a commit" in job.result, job.result
    assert f"not {shown[:12]} as the page showed when this job was queued: nothing was changed" in job.result
    assert view.steps[0].title == "Check the head is the one shown" and view.steps[0].state == "failed"
    assert {s.state for s in view.steps[1:]} == {"not_run"}
    assert code_target.head() == moved and (code_target.repo / "LATE.md").exists()
    assert git(code_target.repo, "status", "--porcelain") == ""
    no_safety_tag(code_target)
    with app.app_context():
        assert db.session.scalars(select(Checkpoint)).all() == [], "refused before the checkpoint"


def test_from_the_shell_the_head_is_optional_and_the_job_says_which_it_found(app, runner, code_target):
    head = code_target.head()
    job, view = run(app, "reset", commit=code_target.commits[2])
    assert job.state == "succeeded", job.result
    assert f"staging's head is {head[:12]}: no head shown was given" in log_text(view)
    assert view.steps[0].title == "Check the head is the one shown" and view.steps[0].state == "succeeded"


def test_from_the_shell_a_head_given_that_moved_is_refused_and_nothing_is_queued(app, users, code_target):
    shown = code_target.head()
    moved = commit(code_target.repo, "Another commit", **{"MORE.md": "more\n"})
    args = ["staging", "reset", f"commit={code_target.commits[1]}", f"seen_head={shown[:7]}", "--as", "admin"]
    result = app.test_cli_runner().invoke(args=["rewind", "run", *args])
    assert result.exit_code == ExitStatus.REFUSED, result.output
    assert f"staging's head is now {moved[:12]} (changed outside Rewind" in result.stderr
    assert f"not {shown[:7]} as the page showed" in result.stderr
    assert job_ids(app) == [] and code_target.head() == moved
    no_safety_tag(code_target)
