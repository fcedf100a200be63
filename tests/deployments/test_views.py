"""Deployment pages and dashboard cards, on a real repository and process."""

import html
import re

from app.audit.models import AuditEvent
from app.audit.store import Actor
from app.auth.roles import Role
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.models import Job
from app.statuses import ExitStatus
from tests.conftest import wait_for
from tests.deployments.test_seen_head import row_of
from tests.schema.conftest import shop, shop_target, target_db  # noqa: F401 - a schema the gate reads, for a revert
from tests.schema.test_gate import upgrade_to_heads
from tests.support.apps import post
from tests.support.jobs import finished
from tests.support.pages import form_fields, form_of, names, repeated_names
from tests.support.targets import git, write_targets_file


def test_history_marks_the_deployed_commit_and_offers_actions(app, users, as_role, code_target):
    page = as_role(Role.ADMIN).get("/targets/staging/deployments").get_data(as_text=True)
    head = code_target.commits[-1][:12]
    assert f"Deployed: <code>{head}</code>" in page
    for subject in ("Serve a health endpoint", "Greet in French", "Note 1.1 in the changelog"):
        assert subject in page
    assert "Break health on purpose" not in page, "only the deployed branch is listed"
    assert page.count(">Revert<") == 3 and page.count("Reset to here") == 3, "no revert of the first commit"


def test_viewers_see_history_without_buttons(app, users, as_role, code_target):
    page = as_role(Role.VIEWER).get("/targets/staging/deployments").get_data(as_text=True)
    assert "Greet in French" in page and ">Revert<" not in page and "Reset to here" not in page


def test_commit_page_shows_the_diff(app, users, as_role, code_target):
    client = as_role(Role.VIEWER)
    page = client.get(f"/targets/staging/commits/{code_target.commits[2][:10]}").get_data(as_text=True)
    assert "Greet in French" in page and "+GREETING = &#34;bonjour&#34;" in page
    missing = client.get("/targets/staging/commits/1234567")
    assert missing.status_code == 404 and "no commit" in missing.get_data(as_text=True)
    bad = client.get("/targets/staging/commits/not-hex")
    assert bad.status_code == 404 and "7 to 40 hex characters" in bad.get_data(as_text=True)


def test_unknown_target_is_404(as_role, users):
    response = as_role(Role.VIEWER).get("/targets/mars/deployments")
    assert response.status_code == 404 and "There is no target &#39;mars&#39;" in response.get_data(as_text=True)


def test_unreachable_repository_is_shown_not_crashed(as_role, users):
    client = as_role(Role.VIEWER)  # the default test targets point at repositories that do not exist
    page = client.get("/targets/staging/deployments")
    assert page.status_code == 200 and "The repository cannot be read:" in page.get_data(as_text=True)
    dashboard = client.get("/").get_data(as_text=True)
    # a folder that is not there is no network's fault: not "unreachable" (QA), and the card says which part
    assert (
        'id="target-staging"' in dashboard and 'Code: <span class="badge badge-bad">cannot be read</span>' in dashboard
    )
    assert "does not exist" in dashboard and ">unreachable<" not in dashboard


def test_dashboard_card_shows_health_and_known_good(app, users, as_role, runner, code_target):
    client = as_role(Role.OPERATOR)
    from app.jobs.engine import engine

    with app.app_context():
        engine(app).health.probe_all()
    cards = client.get("/dashboard/cards").get_data(as_text=True)
    head = code_target.commits[-1][:12]
    assert "healthy</span>" in cards and "none recorded yet" not in cards
    assert f'Last known good: <code>{head}</code> <span class="badge badge-ok">deployed' in cards, (
        "seen healthy at once"
    )
    url = post(client, "/jobs", {"runbook": "revert", "target": "staging", "commits": code_target.commits[2]}).headers[
        "Location"
    ]
    job, _ = finished(app, int(url.rsplit("/", 1)[1]), timeout=30)
    assert job.state == "succeeded"
    cards = client.get("/dashboard/cards").get_data(as_text=True)
    assert f'Last known good: <code>{code_target.head()[:12]}</code> <span class="badge badge-ok">deployed' in cards


def test_revert_button_starts_a_job(app, users, as_role, runner, code_target):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "revert", "target": "staging", "commits": code_target.commits[2]})
    assert response.status_code == 302
    url = response.headers["Location"]
    # The job's own state: a step's row says succeeded too, while the job still restarts the app (a test that ended
    # then left the app the job started running after its teardown had stopped the first).
    job, _ = finished(app, int(url.rsplit("/", 1)[1]), timeout=30)
    assert job.state == "succeeded" and 'data-state="succeeded"' in client.get(url).get_data(as_text=True)
    bad = post(client, "/jobs", {"runbook": "revert", "target": "staging", "commits": "abc"})
    assert bad.status_code == 400 and "7 to 40 hex characters" in bad.get_data(as_text=True)


def test_the_first_commit_offers_no_revert_and_a_posted_one_is_refused_with_the_fix(
    app, users, as_role, runner, code_target
):
    """A commit without a parent reverts against nothing: git would delete every file it added."""
    root, head = code_target.commits[0], code_target.head()
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    row = page[page.index(f'id="commit-{root[:7]}') :]
    row = row[: row.index("</tr>")]
    assert ">Revert<" not in row
    assert f"No revert: commit {root[:12]} is the repository&#39;s first commit (it has no parent)" in row
    refused = post(client, "/jobs", {"runbook": "revert", "target": "staging", "commits": root})
    said = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "would delete every file it added" in said
    assert "reset to a later commit or deploy a commit that changes what you want undone" in said
    assert code_target.head() == head and (code_target.repo / "server.py").exists()


def test_reset_of_protected_target_without_the_typed_name_is_refused(app, users, as_role, code_target):
    from tests.deployments.conftest import write_targets

    write_targets(app, code_target, protected=True)
    client = as_role(Role.ADMIN)
    form = {"runbook": "reset", "target": "staging", "commit": code_target.commits[0]}
    response = post(client, "/jobs", form)
    assert response.status_code == 400 and "type its name, staging, to confirm" in response.get_data(as_text=True)
    operator = post(as_role(Role.OPERATOR), "/jobs", {**form, "confirm": "staging"})
    assert operator.status_code == 403, "resets are for admins"
    page = as_role(Role.OPERATOR).get("/targets/staging/deployments").get_data(as_text=True)
    assert ">Reset to here<" not in page
    assert "Reset to a commit is for admins; Revert undoes a commit with a new one." in page  # why there is none
    for role in (Role.ADMIN, Role.VIEWER):
        assert 'id="reset-by-admin"' not in as_role(role).get("/targets/staging/deployments").get_data(as_text=True)


def test_dashboard_card_reports_an_unreachable_database(app, users, as_role, code_target, tmp_path):
    from app.jobs.engine import engine

    missing = tmp_path / "nowhere" / "app.db"
    write_targets_file(app, code_target.toml() + f'\n[targets.staging.database]\nurl = "sqlite:///{missing}"\n')
    with app.app_context():
        engine(app).health.probe_all()
    cards = as_role(Role.VIEWER).get("/dashboard/cards").get_data(as_text=True)
    assert 'Database: <span class="badge badge-bad">unreachable</span>' in cards
    assert f"{missing} does not exist" in cards


def test_the_target_page_shows_the_target_and_its_tabs(app, users, as_role, code_target):
    page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    assert f"<code>{code_target.commits[-1][:12]}</code>" in page
    assert 'href="/targets/staging/deployments"' in page
    assert 'aria-current="page">Overview' in page
    missing = as_role(Role.VIEWER).get("/targets/nowhere")
    assert missing.status_code == 404
    assert "known targets: staging" in missing.get_data(as_text=True)


def test_the_fetch_button_shows_only_for_a_target_with_a_remote(app, users, as_role, runner, code_target, tmp_path):
    client = as_role(Role.OPERATOR)
    assert "Fetch from origin" not in client.get("/targets/staging/deployments").get_data(as_text=True)
    git(tmp_path, "clone", "-q", "--bare", str(code_target.repo), str(tmp_path / "remote.git"))
    git(code_target.repo, "remote", "add", "origin", str(tmp_path / "remote.git"))
    write_targets_file(app, code_target.toml().replace('branch = "main"', 'branch = "main"\nremote = "origin"', 1))
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert ">Fetch from origin</button>" in page and 'value="fetch"' in page
    url = post(client, "/jobs", {"runbook": "fetch", "target": "staging"}).headers["Location"]
    job, _ = finished(app, int(url.rsplit("/", 1)[1]), timeout=30)
    assert job.state == "succeeded"
    assert git(code_target.repo, "rev-parse", "refs/remotes/origin/main") == code_target.head()
    viewer = as_role(Role.VIEWER).get("/targets/staging/deployments").get_data(as_text=True)
    assert "Fetch from origin" not in viewer


def test_a_checkpoint_without_a_commit_reads_no_commit_recorded(app, users, as_role, code_target):
    from app.checkpoints import store

    with app.app_context():
        store.record("staging", None, "flags first seen", {"flags": {"states": {}}})
    page = as_role(Role.VIEWER).get("/targets/staging/deployments").get_data(as_text=True)
    assert "flags first seen: no commit recorded" in page and "commit <code>?</code>" not in page


def test_each_deploy_field_keeps_its_label_beside_its_control(app, users, as_role, code_target):
    """The form wraps at 800 px: a label and its control are one item, so they never land on different lines."""
    page = as_role(Role.OPERATOR).get("/targets/staging/deployments").get_data(as_text=True)
    for label, control in (
        ("Branch or commit", '<input id="deploy-ref"'),
        ("If verification fails", '<select id="deploy-rollback"'),
    ):
        field = re.search(
            rf'<span class="field"><label for="[\w-]+">{label}</label>((?:(?!</span>).)*)</span>', page, re.S
        )
        assert field and control in field.group(1), f"{label!r} is not kept with its control"


def test_history_warns_when_the_checkout_is_not_the_branch(app, users, as_role, code_target):
    client = as_role(Role.OPERATOR)
    assert "The checkout is not the branch" not in client.get("/targets/staging/deployments").get_data(as_text=True)
    git(code_target.repo, "checkout", "-q", "--detach", code_target.commits[1])
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert page.count("The checkout is not the branch") == 1
    assert f"a detached HEAD at {code_target.commits[1][:12]} checked out, not &#39;main&#39;" in page
    git(code_target.repo, "checkout", "-q", "main")
    (code_target.repo / "CHANGES.md").write_text("edited on the server\n")
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert "uncommitted changes to CHANGES.md" in page and "commit or discard the changes" in page


def test_the_commit_where_a_shallow_clone_stops_says_its_diff_is_not_what_it_changed(app, users, as_role, code_target):
    edge = code_target.commits[2]
    (code_target.repo / ".git" / "shallow").write_text(edge + "\n")
    client = as_role(Role.VIEWER)
    page = client.get(f"/targets/staging/commits/{edge}").get_data(as_text=True)
    assert "its history stops at this commit" in page and "git fetch --unshallow" in page
    inside = client.get(f"/targets/staging/commits/{code_target.commits[3]}").get_data(as_text=True)
    assert "history stops" not in inside


def test_a_job_holding_the_target_greys_its_changes_and_a_posted_revert_is_busy_not_the_gate(
    app,
    users,
    as_role,
    runner,
    shop_target,  # noqa: F811 - the fixture imported above
):
    """QA on staging: while a job held the target, Revert, Reset, Deploy and Restart stayed enabled, and a Revert
    was answered by the schema gate's refusal, read from the checkout and schema that job was changing."""
    pages = "/targets/shop/deployments"
    upgrade_to_heads(app)  # the gate refuses a revert of "posts and index": its revision is in the database
    posts = shop_target.commits["posts and index"]
    admin = as_role(Role.ADMIN)
    refused = post(admin, "/jobs", {"runbook": "revert", "target": "shop", "commits": posts, "next": pages})
    assert refused.status_code == 303  # not busy yet: the gate speaks

    with app.app_context():  # not through the client: its next page view shows the gate's refusal
        sleep = runbooks.get("test.sleep")
        job_id = service.enqueue(sleep, "shop", {"seconds": 60}, Actor(users[Role.ADMIN], "admin")).id

    def running() -> bool:
        with app.app_context():
            return db.session.get(Job, job_id).state == "running"

    wait_for(running, timeout=30)
    try:
        page = admin.get(pages).get_data(as_text=True)  # the gate's refusal is shown once, on this view
        words = f"Wait for job #{job_id} (Sleep on a target, running) to end."
        assert "The schema gate stopped the revert" in page
        for label in ("Deploy", "Restart", "Downgrade, then revert", "Revert anyway"):
            form = page[page.rindex("<form", 0, page.index(f">{label}</button>")) :]
            button = form[form.index("<button") : form.index("</form>")]
            assert " disabled>" in button[: button.index(">") + 1], (label, button)
            assert f'<span class="hint why-disabled">{words}</span>' in button, (label, button)
        for label in ("Revert", "Reset to here"):  # in every commit's row: the busy notice above says why, once
            form = page[page.rindex("<form", 0, page.index(f">{label}<span class=")) :]
            button = form[form.index("<button") : form.index("</form>")]
            assert ' disabled aria-describedby="busy-notice">' in button[: button.index(">") + 1], (label, button)
            assert "why-disabled" not in button, (label, button)
        assert f"job #{job_id}</a> (Sleep on a target, running) is changing shop" in page
        for label in ("Verify health",):  # only reads the target: stays
            assert f'<button type="submit">{label}</button>' in page

        table = page[page.index('<table class="grid">') :]
        action, fields = form_fields(table[table.rindex("<form", 0, table.index(f'value="{posts}"')) :], "Revert")
        assert fields["commits"] == posts and fields["seen_head"]
        answer = admin.post(action, data=fields)
        assert answer.status_code == 303
        said = admin.get(pages).get_data(as_text=True)
        assert f"shop is busy: job #{job_id} (Sleep on a target, started by admin) is running" in said
        assert "schema gate" not in said.lower(), "the gate read a target another job is changing"

        cli = app.test_cli_runner().invoke(
            args=["rewind", "run", "shop", "revert", f"commits={posts}", "--as", "admin"]
        )
        assert cli.exit_code == ExitStatus.BUSY, (cli.exit_code, cli.output)
        assert f"shop is busy: job #{job_id} (Sleep on a target, started by admin) is running" in cli.stderr
        assert "gate" not in cli.output
        with app.app_context():
            assert db.session.query(Job).count() == 1, "nothing else was queued"
    finally:
        post(admin, f"/jobs/{job_id}/cancel")
        finished(app, job_id)


def test_start_of_a_running_app_is_refused_before_any_job_saying_what_runs(app, users, as_role, runner, code_target):
    """A Start clicked on a page drawn while the app was down, after it came back: no job to fail mid-incident,
    only the refusal, audited; once the app is stopped, the same Start runs."""
    with app.app_context():
        process = code_target_process(app)
        status = process.status()
    assert status.running and status.pid
    client = as_role(Role.OPERATOR)
    refused = post(client, "/jobs", {"runbook": "start", "target": "staging", "next": "/targets/staging"})
    assert refused.status_code == 303 and refused.headers["Location"] == "/targets/staging"  # back to the page
    said = client.get("/targets/staging").get_data(as_text=True)
    since = f"{status.started_at:%H:%M:%S} UTC"
    assert f"staging already runs as pid {status.pid} since {since}: nothing was started" in said, said
    assert "Restart starts it afresh" in said
    with app.app_context():
        assert db.session.query(Job).filter_by(runbook="start").count() == 0
        (row,) = db.session.query(AuditEvent).filter_by(action="job.queued", outcome="denied").all()
        assert "staging already runs as pid" in row.details, row.details
        assert process.status().pid == status.pid, "the running app was left alone"
        process.stop()
    started = post(client, "/jobs", {"runbook": "start", "target": "staging"})
    assert started.status_code == 302, started.get_data(as_text=True)
    job, _ = finished(app, int(started.headers["Location"].rsplit("/", 1)[1]))
    assert job.state == "succeeded", job.result


def code_target_process(app):
    from app.jobs.engine import current_targets

    return current_targets().open("staging").process()


def test_each_row_s_buttons_and_typed_name_say_which_commit(app, users, as_role, code_target):
    """QA: every row's "Revert", "Reset to here" and "Type staging to confirm" read alike. A screen reader's list of
    buttons, or Tab from row to row, could not tell which commit each would change."""
    from tests.deployments.conftest import write_targets

    write_targets(app, code_target, protected=True)
    page = as_role(Role.ADMIN).get("/targets/staging/deployments").get_data(as_text=True)
    assert repeated_names(page) == {}
    short = code_target.commits[1][:7]
    assert f"Revert {short}" in names(page) and f"Reset to here {short}" in names(page)
    assert f"Type staging to confirm the reset to {short}" in names(page, "label")


def test_the_reset_question_says_how_many_commits_it_takes_off_the_branch(app, users, as_role, code_target):
    """QA: "Reset staging to 1ac7fba? The current head is tagged first." read the same three commits back as one:
    how much goes is said before the yes."""
    page = as_role(Role.ADMIN).get("/targets/staging/deployments").get_data(as_text=True)

    def question(sha: str) -> str:
        form = form_of(row_of(page, sha), "Reset to here")
        return html.unescape(re.search(r'data-confirm="([^"]*)"', form).group(1))

    first, third = code_target.commits[0], code_target.commits[2]
    assert question(first) == (
        f"Reset staging to {first[:7]}? It takes 3 commits off the branch; the current head is tagged first, so "
        "they can be brought back."
    )
    assert "It takes 1 commit off the branch;" in question(third) and "so it can be brought back." in question(third)
