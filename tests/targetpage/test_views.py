"""The target page: its overview, its buttons, the overview extension point, refusals that return to it."""

import re
import subprocess
import sys

from sqlalchemy import select

from app.auth.roles import Role
from app.extensions import db
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.targetpage import summaries
from app.targets.sockets import listeners
from tests.conftest import wait_for
from tests.deployments.test_runbooks import run
from tests.support.apps import post
from tests.support.pages import form_of
from tests.support.targets import git


def finished(app, url: str) -> str:
    """Wait for the job a /jobs/<id> URL names to end; its final state."""
    job_id = int(url.rsplit("/", 1)[1])

    def ended():
        with app.app_context():
            job = db.session.get(Job, job_id)
            return job.state if job.job_state.is_final else None

    return wait_for(ended, timeout=60)


def test_overview_shows_health_process_code_and_jobs(app, users, as_role, runner, code_target):
    from app.jobs.engine import engine

    with app.app_context():
        engine(app).health.probe_all()
    job, _ = run(app, "verify")
    page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    health = page[page.index('id="overview-health"') :]
    assert health.index('badge-ok">healthy</span>') < health.index("</dd>")
    process = page[page.index('id="overview-process"') :]
    assert re.match(r'id="overview-process">\s*<span class="badge badge-ok">running</span> pid \d+', process)
    head = code_target.commits[-1]
    assert f"<code>{head[:12]}</code></a> Note 1.1 in the changelog on branch <code>main</code>" in page
    assert f'id="overview-known-good"><a href="/targets/staging/commits/{head}"><code>{head[:12]}</code></a>' in page
    last = page[page.index('id="overview-last-job"') :]
    assert last.startswith(f'id="overview-last-job"><a href="/jobs/{job.id}">job #{job.id}</a> Verify')
    assert '<span class="badge badge-ok">succeeded</span>' in last[: last.index("</dd>")]
    assert '<time datetime="' in last[: last.index("</dd>")]
    running = page[page.index('id="overview-running"') :]
    assert running.startswith('id="overview-running"><span class="hint">none</span>')
    assert ">Start</button>" not in page, "viewers get no buttons"


def test_the_overview_and_card_say_when_the_checkout_is_not_the_deployed_commit(app, users, as_role, code_target):
    # Someone checked out an older commit on the server (a detached HEAD): "Deployed: <branch tip>" alone reads as
    # what is there, while the files, and the application after its next start, are the older commit.
    tip, older = code_target.commits[-1], code_target.commits[2]
    git(code_target.repo, "checkout", "-q", "--detach", older)
    client = as_role(Role.VIEWER)
    page = client.get("/targets/staging").get_data(as_text=True)
    deployed = page[page.index('id="overview-deployed"') :]
    deployed = deployed[: deployed.index("</dd>")]
    assert f"<code>{tip[:12]}</code></a>" in deployed
    assert (
        f'<span class="badge badge-warn">checkout differs</span> {code_target.repo} has a detached HEAD at ' in deployed
    )
    assert f"{older[:12]} checked out, not &#39;main&#39;" in deployed
    card = client.get("/dashboard/cards").get_data(as_text=True)
    card = card[card.index('id="target-staging"') :]
    assert f"a detached HEAD at {older[:12]} checked out" in card[: card.index("</section>")]
    git(code_target.repo, "checkout", "-q", "main")
    page = client.get("/targets/staging").get_data(as_text=True)
    assert "checkout differs" not in page and "checkout differs" not in client.get("/dashboard/cards").get_data(
        as_text=True
    )


def test_a_target_not_running_yet_served_names_who_listens_on_its_port(app, users, as_role, code_target):
    # Its process stopped, and a copy Rewind never started (one that put itself in the background) serves the port:
    # "not running" beside "healthy" alone left the reader to guess, and Start is offered.
    from app.jobs.engine import engine

    with app.app_context():
        current_targets().open("staging").process().stop()
    stray = subprocess.Popen(
        [sys.executable, "server.py", str(code_target.port)], cwd=code_target.repo, start_new_session=True
    )
    try:
        wait_for(lambda: listeners(code_target.port))
        with app.app_context():
            engine(app).health.probe_all()
        page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
        process = page[page.index('id="overview-process"') :]
        process = process[: process.index("</dd>")]
        assert 'badge-bad">not running</span>' in process
        assert (
            f'<span class="badge badge-warn">stray</span> yet its health URL answers healthy: pid {stray.pid} listens '
            f"on port {code_target.port}, not a process Rewind knows"
        ) in process
    finally:
        stray.kill()
        stray.wait()
    page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    assert "stray" not in page, "a healthy reading older than the stop names no one"


def _section(page: str, section_id: str) -> str:
    start = page.index(f'id="{section_id}"')
    return page[page.rindex("<section", 0, start) : page.index("</section>", start)]


def test_the_overview_state_and_recent_entries_follow_the_target_by_themselves(
    app, users, as_role, runner, code_target
):
    """A job that ends while the page is open (a revert making the target healthy again) shows without a reload:
    the state polls the page as a background request and swaps in its own part, the recent entries coming back with
    it (one request per refresh and viewer, not one per part)."""
    from app.jobs.engine import engine

    client = as_role(Role.OPERATOR)
    with app.app_context():
        engine(app).health.probe_all()  # checked: the state asks every 10 s (2 s before, test_monitor.py)
    page = client.get("/targets/staging").get_data(as_text=True)
    tag = _section(page, "overview-state").split(">", 1)[0]
    assert 'hx-get="/targets/staging"' in tag and 'hx-trigger="every 10s"' in tag, tag
    assert 'hx-select="#overview-state"' in tag and 'hx-swap="outerHTML"' in tag, tag
    assert """hx-headers='{"X-Rewind-Background": "1"}'""" in tag, tag  # polling is not a person acting
    assert 'hx-select-oob="#overview-start,#overview-recent"' in tag, tag
    assert page.count("hx-trigger=") == 1  # nothing else on the page asks on its own
    assert "data-keep-focus" in _section(page, "overview-recent").split(">", 1)[0]  # a link there keeps focus
    assert 'id="target-actions"' not in _section(page, "overview-state") + _section(page, "overview-recent")
    assert "job #" not in _section(page, "overview-state")

    job, _ = run(app, "verify")
    polled = client.get("/targets/staging", headers={"HX-Request": "true", "X-Rewind-Background": "1"})
    state = _section(polled.get_data(as_text=True), "overview-state")
    assert f'id="overview-last-job"><a href="/jobs/{job.id}">job #{job.id}</a> Verify' in state
    assert f'href="/jobs/{job.id}"' in _section(polled.get_data(as_text=True), "overview-recent")


def test_an_unhealthy_target_says_why(app, users, as_role, code_target):
    from app.jobs.engine import engine

    with app.app_context():
        current_targets().open("staging").process().stop()
        engine(app).health.probe_all()
    page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    health = page[page.index('id="overview-health"') : page.index('id="overview-process"')]
    assert 'badge-bad">unhealthy</span>' in health and "connection refused" in health.lower()
    assert 'id="overview-answer"' not in page, "no answer to quote"
    process = page[page.index('id="overview-process"') :]
    assert re.match(r'id="overview-process">\s*<span class="badge badge-bad">not running</span>', process)


def test_an_unhealthy_answer_is_quoted_with_secrets_masked(app, users, as_role, code_target, monkeypatch):
    from app.jobs.engine import engine
    from tests.deployments.conftest import write_targets
    from tests.support.targets import commit

    monkeypatch.setenv("STAGING_TOKEN", "bonjour")  # the greeting the broken app answers with, as a secret
    write_targets(app, code_target)
    path = app.config["REWIND_SETTINGS"].config_path
    secret_env = 'env = { TOKEN = "env:STAGING_TOKEN" }\n\n[targets.staging.health]'
    path.write_text(path.read_text().replace("[targets.staging.health]", secret_env))
    bad = code_target.file("server.py").replace('STATUS = "healthy"', 'STATUS = "broken"')
    commit(code_target.repo, "Break it", **{"server.py": bad})
    with app.app_context():
        current_targets().open("staging").process().restart()
        check = current_targets().open("staging").health()
        wait_for(lambda: check.probe(request_timeout_s=2).status == 500, timeout=30)
        engine(app).health.probe_all()
    page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    answer = page[page.index('id="overview-answer">') :]
    answer = answer[: answer.index("</pre>")]
    assert answer.startswith('id="overview-answer">status 500: {&#34;status&#34;: &#34;broken&#34;')
    assert "bonjour" not in answer and "•••" in answer


def test_a_failed_last_job_is_shown_in_words_and_colour(app, users, as_role, runner, code_target):
    job, _ = run(app, "revert", commits=code_target.commits[1])  # conflicts: fails, changes nothing
    assert job.state == "failed"
    page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    last = page[page.index('id="overview-last-job"') :]
    last = last[: last.index("</dd>")]
    assert '<span class="badge badge-bad">failed</span>' in last and "CHANGES.md" in last


def test_operators_get_start_stop_restart_verify_naming_the_target(app, users, as_role, code_target):
    page = as_role(Role.OPERATOR).get("/targets/staging").get_data(as_text=True)
    actions = page[page.index('id="target-actions"') :]
    for runbook, label, question in [
        ("start", "Start", 'data-confirm="Start staging?"'),
        ("stop", "Stop", 'data-confirm="Stop staging? It stops serving'),
        ("restart", "Restart", 'data-confirm="Restart staging?"'),
    ]:
        form = actions[: actions.index(f">{label}</button>")]
        form = form[form.rindex("<form") :]
        assert question in form and f'name="runbook" value="{runbook}"' in form
        assert 'name="target" value="staging"' in form and 'name="next" value="/targets/staging"' in form
    verify = actions[: actions.index(">Verify</button>")]
    assert "data-confirm" not in verify[verify.rindex("<form") :], "a read-only check asks nothing"
    assert "Start Stop" not in page


def test_stop_button_stops_the_process(app, users, as_role, runner, code_target):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "stop", "target": "staging", "next": "/targets/staging"})
    assert response.status_code == 302
    assert finished(app, response.headers["Location"]) == "succeeded"
    page = client.get("/targets/staging").get_data(as_text=True)
    assert re.search(r'id="overview-process">\s*<span class="badge badge-bad">not running</span>', page)


def test_stopping_a_protected_target_needs_its_name_typed(app, users, as_role, runner, code_target):
    """A stop is an outage until someone starts it again: on a protected target, as deliberate as a reset."""
    from tests.deployments.conftest import write_targets

    write_targets(app, code_target, protected=True)
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/staging").get_data(as_text=True)
    actions = page[page.index('id="target-actions"') :]
    stop = actions[: actions.index(">Stop</button>")]
    assert "Type <kbd>staging</kbd> to confirm" in stop[stop.rindex("<form") :]
    restart = actions[: actions.index(">Restart</button>")]
    assert "to confirm" not in restart[restart.rindex("<form") :], "a restart puts the app back by itself"
    fields = {"runbook": "stop", "target": "staging", "next": "/targets/staging"}
    refused = post(client, "/jobs", fields)
    assert refused.status_code == 303 and refused.headers["Location"] == "/targets/staging"
    again = client.get("/targets/staging").get_data(as_text=True)
    assert "type its name, staging, to confirm the stop" in again
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == [], "nothing was queued"
        assert current_targets().open("staging").process().status().running
    response = post(client, "/jobs", {**fields, "confirm": "staging"})
    assert response.status_code == 302
    assert finished(app, response.headers["Location"]) == "succeeded"


def test_a_busy_refusal_returns_to_the_target_page(app, users, as_role, code_target):
    client = as_role(Role.OPERATOR)
    with app.app_context():
        from app.audit.store import Actor
        from app.jobs import runbook, service

        busy = service.enqueue(
            runbook.get("restart"), "staging", {}, Actor(None, "oncall")
        ).id  # no runner: stays queued
    response = post(client, "/jobs", {"runbook": "stop", "target": "staging", "next": "/targets/staging"})
    assert response.status_code == 303 and response.headers["Location"] == "/targets/staging"
    page = client.get("/targets/staging").get_data(as_text=True)
    assert f"staging is busy: job #{busy} (Restart, started by oncall)" in page
    running = page[page.index('id="overview-running"') :]
    assert running.startswith(f'id="overview-running"><a href="/jobs/{busy}">job #{busy}</a> Restart')
    again = client.get("/targets/staging").get_data(as_text=True)
    assert "is busy" not in again, "a reload shows the page, not the refusal again"
    # the busy job by its runbook's title wherever it is named, not by the runbook's internal name
    tab = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert f'<a href="/jobs/{busy}">job #{busy}</a> (Restart, queued) is changing staging' in tab
    with app.app_context():
        assert db.session.scalars(select(Job.runbook)).all() == ["restart"]


def test_refusals_never_redirect_off_site(app, users, as_role):
    client = as_role(Role.OPERATOR)
    for nxt in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        response = post(client, "/jobs", {"runbook": "test.count", "lines": "lots", "next": nxt})
        assert response.status_code == 400, nxt
        assert "Lines must be a whole number" in response.get_data(as_text=True)
    foreign = post(
        client, "/jobs", {"runbook": "test.count", "lines": "x"}, headers={"Referer": "https://evil.example/"}
    )
    assert foreign.status_code == 400


def test_a_refused_parameter_is_shown_beside_its_field_keeping_what_was_typed(app, users, as_role):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "test.count", "lines": "lots", "next": "/jobs/new?runbook=test.count"})
    assert response.status_code == 303 and response.headers["Location"] == "/jobs/new?runbook=test.count"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    field = page[page.index('id="p-lines"') :]
    assert field.startswith('id="p-lines" name="lines" value="lots"')
    assert 'aria-invalid="true"' in field[: field.index(">")]
    assert '<p class="field-error" id="p-lines-error">must be a whole number, got &#39;lots&#39;</p>' in field
    assert "must be a whole number" not in client.get("/jobs/new?runbook=test.count").get_data(as_text=True)


def test_the_referer_is_the_way_back_when_there_is_no_next_field(app, users, as_role):
    client = as_role(Role.OPERATOR)
    response = post(
        client,
        "/jobs",
        {"runbook": "test.count", "lines": "-"},
        headers={"Referer": "http://localhost/targets/staging"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/targets/staging"


def test_the_generic_form_never_preselects_a_target(app, users, as_role):
    page = as_role(Role.OPERATOR).get("/jobs/new?runbook=restart").get_data(as_text=True)
    select_box = page[page.index('<select id="target"') : page.index("</select>")]
    assert '<option value="" selected>Choose a target…</option>' in select_box
    assert "production" in select_box and '"production" selected' not in select_box
    assert "Start the job</button>" in page and "Start Restart" not in page
    chosen = as_role(Role.OPERATOR).get("/jobs/new?runbook=restart&target=staging").get_data(as_text=True)
    assert '<option value="staging" selected>' in chosen


def test_area_summaries_add_lines_and_a_broken_one_stays_contained(app, users, as_role):
    def flags_line(target):
        return [("Flags", f"3 on {target.name}", "ok")]

    def broken(target):
        raise RuntimeError("flags table missing")

    summaries.register_summary(flags_line)
    summaries.register_summary(broken)
    try:
        page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    finally:
        summaries.unregister_summary(flags_line)
        summaries.unregister_summary(broken)
    assert '<dt>Flags</dt>\n    <dd><span class="badge badge-ok">3 on staging</span></dd>' in page
    assert "could not be read: RuntimeError: flags table missing" in page
    assert "3 on staging" not in as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)


def test_a_summary_the_target_cannot_give_says_why_in_its_own_words_and_logs_no_traceback(app, users, as_role, caplog):
    from app.targets.flags import TableLocked

    def locked(target):  # what the Flags line raises while a migration holds the application's flags table
        raise TableLocked("feature_flags", 5)

    summaries.register_summary(locked)
    try:
        with caplog.at_level("WARNING", logger="app.targetpage.summaries"):
            page = as_role(Role.VIEWER).get("/targets/staging").get_data(as_text=True)
    finally:
        summaries.unregister_summary(locked)
    assert "could not be read: the flags table feature_flags is locked by another transaction" in page
    assert "TableLocked" not in page
    said = [r for r in caplog.records if r.name == "app.targetpage.summaries"]
    assert said and all(r.levelname == "WARNING" and r.exc_info is None for r in said), "a state, not a bug"


def test_dashboard_card_says_last_job_failed_and_links_to_it(app, users, as_role, runner, code_target):
    client = as_role(Role.VIEWER)
    cards = client.get("/dashboard/cards").get_data(as_text=True)
    assert "last job" not in cards.lower() and 'href="/targets/staging"' in cards
    failed, _ = run(app, "revert", commits=code_target.commits[1])  # conflicts
    cards = client.get("/dashboard/cards").get_data(as_text=True)
    card = cards[cards.index('id="target-staging"') :]
    last = card[card.index('class="card-last-job"') :]
    assert last.startswith('class="card-last-job"><span class="badge badge-bad">last job failed</span>')
    assert f'<a href="/jobs/{failed.id}">job #{failed.id}</a> Revert commits' in last
    fixed, _ = run(app, "verify")
    card = client.get("/dashboard/cards").get_data(as_text=True)
    assert "last job failed" not in card
    assert f'Last job: <span class="badge badge-ok">succeeded</span>\n      <a href="/jobs/{fixed.id}">' in card


def test_dashboard_card_links_to_the_running_job(app, users, as_role, code_target):
    with app.app_context():
        from app.audit.store import Actor
        from app.jobs import runbook, service

        queued = service.enqueue(runbook.get("restart"), "staging", {}, Actor(None, "oncall")).id  # no runner
    cards = as_role(Role.VIEWER).get("/dashboard/cards").get_data(as_text=True)
    assert (
        f'<span class="badge badge-info">busy</span> <a href="/jobs/{queued}">job #{queued}</a> Restart (queued)'
        in cards
    )


def test_a_failed_deploy_offers_revert_and_reset_prefilled(app, users, as_role, runner, code_target):
    from tests.support.targets import git

    start = code_target.head()
    bad = git(code_target.repo, "rev-parse", "feature/bad")
    deploy, _ = run(app, "deploy", ref="feature/bad", auto_rollback="off")
    assert deploy.state == "failed"
    assert deploy.params["ref"] == bad and deploy.params["ref_typed"] == "feature/bad", "what was typed is kept"
    assert f"deployed feature/bad ({bad[:12]}) to staging" in deploy.result
    admin = as_role(Role.ADMIN)
    page = admin.get(f"/jobs/{deploy.id}").get_data(as_text=True)
    assert re.search(r'id="job-finished">Finished <time datetime="[^"]+Z"[^>]*>[^<]+</time>, after \d+\.\d s\.', page)
    assert '<a href="/targets/staging">Back to staging</a>' in page
    revert = form_of(page, "Revert this deploy")
    assert 'name="runbook" value="revert"' in revert and f'name="commits" value="{bad}"' in revert
    assert f'name="next" value="/jobs/{deploy.id}"' in revert
    assert 'data-confirm="Revert this deploy on staging? 1 commit(s)' in revert
    reset = form_of(page, f"Reset to {start[:12]} (before this deploy)")
    assert f'name="commit" value="{start}"' in reset and 'name="confirm"' not in reset, "staging is not protected"
    operator_page = as_role(Role.OPERATOR).get(f"/jobs/{deploy.id}").get_data(as_text=True)
    assert "Revert this deploy</button>" in operator_page and "(before this deploy)</button>" not in operator_page

    response = post(
        admin, "/jobs", {"runbook": "revert", "target": "staging", "commits": bad, "next": f"/jobs/{deploy.id}"}
    )
    url = response.headers["Location"]
    assert finished(app, url) == "succeeded"
    after = admin.get(f"/jobs/{deploy.id}").get_data(as_text=True)
    assert "Revert this deploy</button>" not in after, "nothing of the deploy is left to revert"
    assert f"Job #{url.rsplit('/', 1)[1]} already reverted this deploy" in after


def test_a_deploy_rolled_back_automatically_offers_no_revert(app, users, as_role, runner, code_target):
    deploy, _ = run(app, "deploy", ref="feature/bad", auto_rollback="on")
    assert deploy.state == "failed" and "Rolled back automatically" in deploy.result
    page = as_role(Role.ADMIN).get(f"/jobs/{deploy.id}").get_data(as_text=True)
    assert (
        'id="next-steps"' in page
        and "The deployed commits are no longer on the branch: the deploy was already undone" in page
    )
    assert "Revert this deploy</button>" not in page and "(before this deploy)</button>" not in page


def test_other_jobs_offer_no_deploy_next_steps(app, users, as_role, runner, code_target):
    job, _ = run(app, "verify")
    page = as_role(Role.ADMIN).get(f"/jobs/{job.id}").get_data(as_text=True)
    assert 'id="job-finished"' in page and 'id="next-steps"' not in page


def test_the_reset_of_a_protected_target_says_what_to_type_and_keeps_a_wrong_answer(
    app, users, as_role, runner, code_target
):
    from tests.deployments.conftest import write_targets

    deploy, _ = run(app, "deploy", ref="feature/bad", auto_rollback="off")
    write_targets(app, code_target, protected=True)
    admin = as_role(Role.ADMIN)
    url = f"/jobs/{deploy.id}"
    reset = form_of(
        admin.get(url).get_data(as_text=True), f"Reset to {code_target.commits[-1][:12]} (before this deploy)"
    )
    assert f'<label for="confirm-reset-{deploy.id}">Type <kbd>staging</kbd> to confirm</label>' in reset
    form = {
        "runbook": "reset",
        "target": "staging",
        "commit": code_target.commits[-1],
        "confirm": "stagin",
        "next": url,
    }
    response = post(admin, "/jobs", form)
    assert response.status_code == 303 and response.headers["Location"] == url
    page = admin.get(url).get_data(as_text=True)
    reset = form_of(page, f"Reset to {code_target.commits[-1][:12]} (before this deploy)")
    assert 'name="confirm" value="stagin"' in reset and 'aria-invalid="true"' in reset
    assert "staging is protected: type its name, staging, to confirm the reset</span>" in reset
    with app.app_context():
        assert db.session.scalars(select(Job.runbook)).all() == ["deploy"]


def test_history_page_typed_confirmation_has_a_visible_label(app, users, as_role, code_target):
    from tests.deployments.conftest import write_targets

    write_targets(app, code_target, protected=True)
    page = as_role(Role.ADMIN).get("/targets/staging/deployments").get_data(as_text=True)
    short = code_target.commits[0][:7]
    assert f'<label for="confirm-{short}">Type <kbd>staging</kbd> to confirm<span class="sr-only"> the reset' in page
    assert 'class="sr-only" for="confirm-' not in page


def test_a_refused_deploy_returns_to_the_deployments_tab_keeping_the_ref(app, users, as_role, code_target):
    client = as_role(Role.OPERATOR)
    form = {"runbook": "deploy", "target": "staging", "ref": "feature/nope", "auto_rollback": "off"}
    response = post(client, "/jobs", {**form, "next": "/targets/staging/deployments"})
    assert response.status_code == 303 and response.headers["Location"] == "/targets/staging/deployments"
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    placeholder = 'placeholder="feature/…, a tag or a commit id" value="feature/nope"'
    assert f'id="deploy-ref" name="ref" required {placeholder}' in page
    assert (
        '<span class="field-error" id="deploy-ref-error">'
        "&#39;feature/nope&#39; is neither a branch, a tag nor a commit id" in page
    )
    assert '<option value="off" selected>' in page


def test_deploying_what_the_branch_already_has_is_refused_before_anything_runs(app, users, as_role, code_target):
    from app.jobs import runbook as runbooks
    from app.jobs.runbook import ParamError
    from tests.support.targets import git

    git(code_target.repo, "branch", "feature/old", code_target.commits[1])
    book = runbooks.get("deploy")
    with app.app_context():
        for ref, message in [
            ("feature/old", f"main already contains feature/old (commit {code_target.commits[1][:12]})"),
            ("main", "main already contains main"),
            (code_target.commits[2][:10], f"main already contains {code_target.commits[2][:10]}: there is nothing"),
        ]:
            try:
                book.parse_params({"ref": ref}, "staging")
            except ParamError as exc:
                assert exc.param == "ref" and message in exc.problem, exc.problem
            else:
                raise AssertionError(f"deploying {ref} was not refused")
        assert book.parse_params({"ref": "feature/bad"}, "staging")["ref"] == git(
            code_target.repo, "rev-parse", "feature/bad"
        )
    client = as_role(Role.OPERATOR)
    response = post(
        client,
        "/jobs",
        {"runbook": "deploy", "target": "staging", "ref": "feature/old", "next": "/targets/staging/deployments"},
    )
    assert response.status_code == 303
    page = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert 'id="deploy-ref-error">main already contains feature/old' in page
    with app.app_context():
        assert db.session.scalar(select(Job)) is None, "nothing was queued"


def test_a_refusal_is_shown_on_the_next_page_only(app, users, as_role, code_target):
    client = as_role(Role.OPERATOR)
    form = {"runbook": "deploy", "target": "staging", "ref": "feature/nope", "next": "/targets/staging"}
    assert post(client, "/jobs", form).status_code == 303
    client.get("/dashboard/cards", headers={"X-Rewind-Background": "1"})  # a poll does not take it
    assert "feature/nope" in client.get("/targets/staging").get_data(as_text=True)  # the flash, at the top
    later = client.get("/targets/staging/deployments").get_data(as_text=True)
    assert "feature/nope" not in later and 'id="deploy-ref-error"' not in later


def test_a_typed_ref_cannot_be_smuggled_in_as_a_parameter(app, users, as_role, code_target):
    client = as_role(Role.OPERATOR)
    form = {"runbook": "deploy", "target": "staging", "ref": "feature/bad", "ref_typed": "main"}
    response = post(client, "/jobs", form)
    assert response.status_code == 400
    assert "&#39;ref_typed&#39; is not a parameter of deploy" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Job)) is None


def test_a_target_name_in_the_wrong_case_is_quoted_as_typed_beside_the_known_ones(as_role):
    page = as_role(Role.VIEWER).get("/targets/Staging")
    assert page.status_code == 404
    assert "There is no target &#39;Staging&#39; (known targets: production, staging)" in page.get_data(as_text=True)


def test_the_overview_greys_what_would_be_refused_and_follows_until_it_is_offered_again(
    app, users, as_role, code_target
):
    """QA: Start, Stop and Restart stayed offered while a job held the target (the tabs grey theirs), and Start while
    the app ran, each only to be refused after its question."""
    from app.audit.store import Actor
    from app.jobs import runbook as runbooks
    from app.jobs import service

    client = as_role(Role.OPERATOR)

    def actions() -> tuple[str, dict[str, str]]:
        nonlocal state
        page = client.get("/targets/staging").get_data(as_text=True)
        state = page[page.index('<section class="panel" id="overview-state"') :].split(">")[0]
        panel = page[page.rindex("<section", 0, page.index('id="target-actions"')) :]
        panel = panel[: panel.index("</section>")]
        buttons = {
            label: panel[panel.rindex("<button", 0, panel.index(f">{label}<")) :].split(">")[0]
            for label in ("Start", "Stop", "Restart", "Verify")
        }
        return panel, buttons

    state = ""
    with app.app_context():
        pid = current_targets().open("staging").process().status().pid
    panel, buttons = actions()  # the app runs: Start alone is greyed, saying so beside it
    assert " disabled" in buttons["Start"] and f"staging already runs as pid {pid} since " in panel
    assert ": Restart starts it afresh." in panel  # the refusal's own words (ProcessStatus.runs)
    assert all(" disabled" not in buttons[label] for label in ("Stop", "Restart", "Verify"))
    # Start alone comes back with the state's refresh, to be offered once the app is down; the panel stays still
    # (a name half-typed into a protected target's Stop box would be swapped away), and nothing polls on its own
    assert 'hx-select-oob="#overview-start,#overview-recent"' in state and "hx-get" not in panel

    with app.app_context():
        held = service.enqueue(runbooks.get("test.sleep"), "staging", {"seconds": 60}, Actor(users[Role.ADMIN], "a"))
        held_id = held.id
    panel, buttons = actions()  # a job holds it: every change greyed, the notice above saying which job
    assert f'id="busy-notice">Busy: <a href="/jobs/{held_id}">job #{held_id}</a>' in panel
    for label in ("Stop", "Restart"):
        assert ' disabled aria-describedby="busy-notice"' in buttons[label], label
    assert " disabled" in buttons["Start"] and f"Wait for job #{held_id} (" in panel  # its why beside it
    assert " disabled" not in buttons["Verify"]  # a look changes nothing: never greyed
    assert 'name="confirm"' not in panel  # no name to type into a greyed Stop
    assert 'hx-select-oob="#overview-actions,#overview-recent"' in state  # all greyed: the whole panel comes back

    with app.app_context():
        service.cancel(db.session.get(Job, held_id), Actor(users[Role.ADMIN], "a"))
        db.session.commit()
        current_targets().open("staging").process().stop()
    panel, buttons = actions()  # nothing to refuse: all offered, and the panel stays still (a name half-typed)
    assert all(" disabled" not in b for b in buttons.values()) and "hx-get" not in panel
    assert 'hx-select-oob="#overview-start,#overview-recent"' in state
