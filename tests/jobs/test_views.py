"""Job pages through the app: starting, refusing bad input, the list, the job page, cancel."""

import os
import re
import signal

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from app.jobs.events import load_view
from app.jobs.models import Job, JobEvent
from app.jobs.render import render_event
from tests.conftest import both_databases, wait_for
from tests.support.apps import post
from tests.support.jobs import finished


def test_start_redirects_to_the_job_page(app, as_role, runner):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "test.count", "lines": "3"})
    assert response.status_code == 302
    url = response.headers["Location"]
    finished(app, int(url.rsplit("/", 1)[1]))  # the job's own state: its step's row says succeeded a moment before
    page = client.get(url).get_data(as_text=True)
    assert "line 3" in page and "counted 3 lines" in page
    assert "ws-connect" not in page, "a finished job's page needs no socket"


def test_htmx_start_answers_with_hx_redirect(app, as_role):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "test.count"}, headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/jobs/")


def test_running_job_page_holds_a_socket(app, as_role):
    client = as_role(Role.OPERATOR)
    url = post(client, "/jobs", {"runbook": "test.count"}).headers["Location"]
    page = client.get(url).get_data(as_text=True)
    assert f'ws-connect="{url}/ws"' in page and "Cancel job" in page


@pytest.mark.parametrize(
    "form, status, message",
    [
        ({"runbook": "nope"}, 404, "There is no runbook &#39;nope&#39;"),
        ({"runbook": "test.sleep", "target": "mars"}, 404, "There is no target &#39;mars&#39;"),
        ({"runbook": "test.sleep"}, 400, "Error:</strong> Target is required"),
        ({"runbook": "test.count", "lines": "lots"}, 400, "Error:</strong> Lines must be a whole number, got"),
    ],
)
def test_bad_start_requests_are_refused_clearly(app, as_role, form, status, message):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", form)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Job)) is None


def test_runbook_role_is_enforced(app, as_role):
    response = post(as_role(Role.OPERATOR), "/jobs", {"runbook": "test.admin", "target": "staging"})
    assert response.status_code == 403
    with app.app_context():
        denied = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.denied"))
        assert "to run “Admins only”" in denied.details


def test_busy_target_answer_is_409_with_the_running_job(app, as_role):
    client = as_role(Role.OPERATOR)
    first = post(client, "/jobs", {"runbook": "test.sleep", "target": "staging"}).headers["Location"]
    response = post(client, "/jobs", {"runbook": "test.sleep", "target": "staging"})
    assert response.status_code == 409
    assert f"job #{first.rsplit('/', 1)[1]}" in response.get_data(as_text=True)


def test_unknown_job_is_404(as_role):
    response = as_role(Role.VIEWER).get("/jobs/999")
    assert response.status_code == 404 and "There is no job #999" in response.get_data(as_text=True)


def test_a_job_number_no_row_can_have_is_a_404_not_a_500(as_role):
    """Past a 64-bit integer the driver raises OverflowError: the router refuses such a number first."""
    client = as_role(Role.ADMIN)
    for url in (f"/jobs/{2**70}", f"/jobs/{2**63}/audit", "/jobs/0"):
        assert client.get(url).status_code == 404, url
    assert post(client, f"/jobs/{2**70}/cancel", {}).status_code == 404
    assert post(client, f"/users/{2**70}/disable", {}).status_code == 404
    listing = client.get(f"/jobs?before={2**70}")
    assert listing.status_code == 200, "a cursor past every row is the first page"


@both_databases
@pytest.mark.parametrize("field", ["target", "runbook"])
def test_a_nul_in_a_list_filter_is_a_400_naming_it_on_either_database(app, as_role, field):
    """PostgreSQL cannot compare a NUL: handed to it, the filter was a 500."""
    for url in ("/jobs", "/jobs/rows"):
        response = as_role(Role.VIEWER).get(url, query_string={field: "staging\x00"})
        assert response.status_code == 400
        assert f"{field}: remove the NUL character" in response.get_data(as_text=True)


def test_only_the_starter_or_an_admin_may_cancel(app, users, as_role):
    starter = as_role(Role.OPERATOR)
    url = post(starter, "/jobs", {"runbook": "test.count"}).headers["Location"]
    from tests.support.apps import add_user

    add_user(app, "otherop", Role.OPERATOR)
    from tests.support.apps import login

    other = app.test_client()
    login(other, "otherop")
    assert post(other, url + "/cancel").status_code == 403
    assert post(as_role(Role.ADMIN), url + "/cancel").status_code == 303
    again = post(starter, url + "/cancel", follow_redirects=True)
    assert "already ended (cancelled)" in again.get_data(as_text=True)


def test_list_filters_and_live_rows(app, as_role):
    client = as_role(Role.OPERATOR)
    post(client, "/jobs", {"runbook": "test.count"})
    post(client, "/jobs", {"runbook": "test.sleep", "target": "production"})
    page = client.get("/jobs?target=production").get_data(as_text=True)
    # runbooks by the titles a person knows them by, not their internal names
    assert "<td>Sleep on a target</td>" in page and "<td>Count lines</td>" not in page
    assert "test.sleep</td>" not in page
    assert 'hx-trigger="every 2s"' in page, "active jobs make the list refresh itself"
    assert client.get("/jobs?state=sideways").status_code == 400
    rows = client.get("/jobs/rows?runbook=test.count").get_data(as_text=True)
    assert "<td>Count lines</td>" in rows and "<td>Sleep on a target</td>" not in rows and "<html" not in rows
    # the runbook filter is a choice of titles (an exact name was needed in a free text box)
    page = client.get("/jobs?runbook=test.count").get_data(as_text=True)
    assert '<option value="test.count" selected>Count lines</option>' in page
    assert '<option value="test.sleep">Sleep on a target</option>' in page


def test_the_newest_page_of_the_list_follows_new_jobs_even_when_none_on_it_is_active(app, as_role, runner):
    """QA: a list opened when every job had ended never showed the job someone started next."""
    client = as_role(Role.OPERATOR)
    assert 'hx-trigger="every 10s"' in client.get("/jobs").get_data(as_text=True), "an empty list follows too"
    job_url = post(client, "/jobs", {"runbook": "test.count", "lines": "1"}).headers["Location"]
    job_id = int(job_url.rstrip("/").rsplit("/", 1)[1])
    finished(app, job_id)
    page = client.get("/jobs").get_data(as_text=True)
    assert 'hx-get="/jobs/rows"' in page and 'hx-trigger="every 10s"' in page
    older = client.get(f"/jobs?before={job_id + 1}").get_data(as_text=True)
    assert 'id="job-rows">' in older, "an older page of ended jobs has nothing new to follow"


def test_the_list_does_not_call_browser_local_times_utc(app, as_role):
    client = as_role(Role.OPERATOR)
    post(client, "/jobs", {"runbook": "test.count"})
    page = client.get("/jobs").get_data(as_text=True)
    assert '<th scope="col">Queued</th>' in page and "(UTC)" not in page
    assert "<time datetime=" in page  # shown in the browser's zone by rewind.js
    assert '<div class="table-scroll">' in page  # long results scroll in their box, not the page, at 800 px


OVERALL = re.compile(r'id="job-progress"[^>]*data-percent="(\d+)"')


def _ended(app, client, url: str) -> tuple[str, str]:
    """Once the job has ended: its page, and the fragment its final event sent live to a watching page."""
    job_id = int(url.rsplit("/", 1)[1])
    wait_for(lambda: "This job has ended" in client.get(url).get_data(as_text=True))
    with app.app_context():
        final = db.session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "job").order_by(JobEvent.seq.desc())
        ).first()
        live = render_event(load_view(db.session.get(Job, job_id), upto=final.seq), final)
    return client.get(url).get_data(as_text=True), live


def test_an_ended_job_s_overall_bar_shows_where_it_stopped_unless_it_succeeded(app, as_role, runner):
    client = as_role(Role.OPERATOR)
    url = post(client, "/jobs", {"runbook": "test.sleep", "target": "staging", "seconds": "60"}).headers["Location"]
    wait_for(lambda: "child up" in client.get(url).get_data(as_text=True))  # its one step reported 10 %
    assert post(client, url + "/cancel").status_code == 303
    page, live = _ended(app, client, url)
    assert 'data-state="cancelled"' in page and 'data-state="cancelled"' in live
    assert OVERALL.findall(page) == ["10"] and OVERALL.findall(live) == ["10"]

    url = post(client, "/jobs", {"runbook": "test.fail"}).headers["Location"]
    page, live = _ended(app, client, url)
    assert 'data-state="failed"' in page and OVERALL.findall(page) == ["0"] and OVERALL.findall(live) == ["0"]

    url = post(client, "/jobs", {"runbook": "test.count", "lines": "4"}).headers["Location"]
    page, live = _ended(app, client, url)
    assert 'data-state="succeeded"' in page and OVERALL.findall(page) == ["100"] and OVERALL.findall(live) == ["100"]


def test_a_cancel_is_said_in_the_actions_panel_the_final_event_replaces_not_in_a_flash_that_outlives_it(
    app, as_role, runner
):
    client = as_role(Role.OPERATOR)
    url = post(client, "/jobs", {"runbook": "test.stubborn", "target": "staging", "seconds": "120"}).headers["Location"]
    child = wait_for(lambda: re.search(r"child up (\d+)", client.get(url).get_data(as_text=True)))
    response = post(client, url + "/cancel", follow_redirects=True)  # the command sleeps through the cancel
    page = response.get_data(as_text=True)
    assert response.request.path == url and 'data-state="running"' in page
    assert 'class="flashes"' not in page and "Cancelling job" not in page
    actions = page[page.index('<div id="job-actions">') : page.index("</div>", page.index('<div id="job-actions">'))]
    assert "Cancelling: asked by operator" in actions and "Cancel job</button>" not in actions
    assert "Cancelling: asked by operator" in client.get(url).get_data(as_text=True), "said while it is true"

    os.kill(int(child.group(1)), signal.SIGTERM)  # the command ends, so does the job
    page, live = _ended(app, client, url)
    assert re.search(r'id="job-state"[^>]*data-state="(failed|cancelled)"', live)
    assert '<div id="job-actions" hx-swap-oob="outerHTML"><p class="hint">This job has ended.</p></div>' in live
    assert "Cancelling" not in live  # a watching page loses the note with the final event
    assert "This job has ended" in page and "Cancelling" not in page and 'class="flashes"' not in page


def test_the_job_page_lists_parameters_as_values_not_python(app, as_role):
    """A list of commits reads as ids, as `flask rewind run` takes them, not "['…']"; an empty one is not shown."""
    from app.audit.store import Actor
    from app.jobs import runbook, service

    with app.app_context():
        params = {"commits": ["a" * 40, "b" * 40], "gate_override": ""}
        job_id = service.enqueue(runbook.get("test.echo"), "staging", params, Actor(None, "oncall")).id  # stays queued
    page = as_role(Role.VIEWER).get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f"<code>commits={'a' * 40},{'b' * 40}</code>" in page
    assert "[&#39;" not in page and "gate_override" not in page


def test_a_page_opened_while_the_job_is_queued_fetches_its_facts_again_when_it_ends(app, as_role):
    """Started and Runner come once the job is claimed: the end-of-job fetch brings the facts along."""
    client = as_role(Role.OPERATOR)
    url = post(client, "/jobs", {"runbook": "test.count"}).headers["Location"]  # no runner here: stays queued
    page = client.get(url).get_data(as_text=True)
    facts = page.split('<dl class="facts" id="job-facts">')[1].split("</dl>")[0]
    assert "<dt>Queued</dt>" in facts and "<dt>Started</dt>" not in facts
    after = page.split('<div id="job-after"')[1].split(">")[0]
    assert 'hx-trigger="htmx:load from:#job-ended"' in after and 'hx-select-oob="#job-facts"' in after


def test_the_jobs_come_before_the_runbooks_to_start_one(app, as_role):
    """During an incident /jobs is opened to see what runs: ~30 runbooks above the list pushed it below the fold."""
    client = as_role(Role.OPERATOR)
    post(client, "/jobs", {"runbook": "test.sleep", "target": "production"})
    page = client.get("/jobs").get_data(as_text=True)
    running_row = page.index("<td>Sleep on a target</td>")
    first_runbook = page.index('href="/jobs/new?runbook=')
    assert running_row < first_runbook
    skip = re.search(r'<a href="#start-a-job">Start a job</a>', page)
    assert skip and skip.start() < running_row  # the runbooks are one link away, from the keyboard too
    assert 'id="start-a-job"' in page
    viewer = as_role(Role.VIEWER).get("/jobs").get_data(as_text=True)
    assert "Start a job" not in viewer and 'href="/jobs/new?runbook=' not in viewer


def test_the_start_page_without_a_runbook_leads_to_the_runbooks_and_an_unknown_one_is_named(as_role):
    client = as_role(Role.OPERATOR)
    response = client.get("/jobs/new")
    assert response.status_code == 302 and response.headers["Location"].endswith("/jobs#start-a-job")
    assert 'id="start-a-job"' in client.get("/jobs").get_data(as_text=True)  # where it leads exists
    response = client.get("/jobs/new?runbook=nope")
    assert response.status_code == 404 and "There is no runbook &#39;nope&#39;" in response.get_data(as_text=True)


def test_the_start_page_takes_its_target_from_the_link_even_after_a_refusal_for_another(as_role):
    """QA: /jobs/new?runbook=…&target=… showed "Choose a target…" once a form of that runbook had been refused."""
    client = as_role(Role.OPERATOR)
    refused = post(client, "/jobs", {"runbook": "test.sleep", "target": "production", "seconds": "x", "next": "/jobs"})
    assert refused.status_code in (302, 303)
    page = client.get("/jobs/new?runbook=test.sleep&target=staging").get_data(as_text=True)
    assert '<option value="staging" selected>staging</option>' in page, page


def test_a_failed_step_shows_its_error_not_its_last_progress_word(app):
    """A config edit's verify step failed after its undo made the app healthy again: the row read "failed — 100%
    healthy", the undo's health, not the step's."""
    from app.jobs.events import StepView
    from app.statuses import StepState

    with app.test_request_context():
        macros = app.jinja_env.get_template("jobs/_macros.html").module
        failed = StepView(0, "Verify health (undo if it fails)", StepState.FAILED, 1.0, "healthy", "the app refused it")
        row = str(macros.step_row(failed))
        assert "the app refused it" in row and "healthy" not in row.replace("Verify health", "")
        done = StepView(0, "Verify health", StepState.SUCCEEDED, 1.0, "healthy")
        assert '<span class="hint">healthy</span>' in str(macros.step_row(done))


def test_an_interrupted_job_s_running_step_stops_counting(app):
    """A job marked interrupted (its process died) ends with only a job event: its running step read "running" and
    kept counting up on every reload and, with script, every second, as if it still ran."""
    import json
    from datetime import datetime, timedelta

    from app.jobs.events import JobView
    from app.jobs.models import JobEvent

    began = datetime(2026, 1, 1, 10, 0, 0)
    view = JobView(1)

    def event(seq, kind, payload, step=None, after=0):
        return JobEvent(
            seq=seq, kind=kind, step=step, payload_json=json.dumps(payload), ts=began + timedelta(seconds=after)
        )

    view.apply(event(1, "job", {"state": "running", "steps": ["Sleep"]}))
    view.apply(event(2, "step", {"state": "running"}, step=0))
    with app.test_request_context():
        macros = app.jinja_env.get_template("jobs/_macros.html").module
        assert "data-elapsed=" in str(macros.step_row(view.steps[0]))
        view.apply(event(3, "job", {"state": "interrupted"}, after=42))
        assert view.steps[0].duration_s == 42.0
        assert (view.steps[0].state.value, view.steps[0].error) == ("failed", "stopped with the job (interrupted)")
        row = str(macros.step_row(view.steps[0]))
        assert "data-elapsed=" not in row and "42.0 s" in row and 'data-state="failed"' in row
        # a step a stopping Rewind still let finish (a shielded swap back) says so itself, without that word
        view.apply(event(4, "step", {"state": "succeeded"}, step=0, after=43))
        assert (view.steps[0].state.value, view.steps[0].error) == ("succeeded", "")


def test_closing_a_stream_whose_socket_the_browser_already_closed_is_quiet():
    """A page left or reloaded (two workers) logged a traceback each time: setting the close's timeout on a socket
    already closed raised EBADF out of the stream."""
    import socket
    import threading
    from types import SimpleNamespace

    from app.jobs.views import _close

    gone, other = socket.socketpair()
    gone.close()
    other.close()
    reader = threading.Thread(target=lambda: None)
    reader.start()
    closes = []
    _close(SimpleNamespace(sock=gone, thread=reader, close=lambda *a: closes.append(a)), 1000)
    assert closes == []  # the close frame is not sent on a socket that is gone
