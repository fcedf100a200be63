"""Watching a job in a real browser: progress and log arrive over the websocket, no reload."""

import re
import signal
from pathlib import Path

from playwright.sync_api import expect

from tests.conftest import wait_for
from tests.e2e.test_foundation import sign_in
from tests.jobs.conftest import SERVER_ENV, start_server
from tests.jobs.test_processes import worker
from tests.jobs.test_websocket import start_job
from tests.support.http import Session


def test_start_a_runbook_and_watch_it_finish(tmp_path, page):
    server = start_server(tmp_path / "instance")
    try:
        sign_in(page, server.url, "admin", server.admin_password)
        page.get_by_role("navigation", name="Areas").get_by_role("link", name="Jobs").click()
        # Loaded first: focus given while the page still loaded was moved again by the load (seen once, under load).
        expect(page).to_have_url(re.compile(r"/jobs$"))
        page.wait_for_load_state("load")
        # The list comes first; the runbooks are one link below it, and Tab goes on from there.
        page.get_by_role("link", name="Start a job").focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/jobs#start-a-job$"))
        page.keyboard.press("Tab")
        expect(page.locator("#start-a-job a").first).to_be_focused()
        page.get_by_role("link", name="Count lines").click()
        page.get_by_label("Lines").fill("60")
        page.get_by_label("Delay").fill("0.05")
        page.get_by_role("button", name="Start the job").click()
        expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads

        expect(page.locator("#job-state")).to_have_attribute("data-state", "running")
        expect(page.locator("#log .line").first).to_have_text("line 1")
        expect(page.locator("#job-progress")).to_have_attribute("data-percent", "100", timeout=20_000)
        expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded")
        expect(page.locator("#log .line")).to_have_count(60)
        expect(page.locator("#log .line").last).to_have_text("line 60")
        expect(page.locator("#step-1")).to_contain_text("succeeded")
        expect(page.locator("#job-state")).to_contain_text("counted 60 lines")
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
        # The audit panel is fetched again when the final event arrives: the job's end is there without a reload.
        expect(page.locator("#job-audit")).to_contain_text("job.succeeded")
        expect(page.locator("#job-audit code")).to_have_text(["job.queued", "job.start", "job.succeeded"])
        assert page.evaluate("window.__sameDocument") is True
    finally:
        server.stop()


# Keeps the text of every note the page puts up, however briefly it stays.
SEEN_NOTES = """() => {
  window.__notes = [];
  new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach((node) => {
    if (node.id === "live-reconnecting") window.__notes.push(node.textContent);
  }))).observe(document.getElementById("main"), {childList: true});
}"""


def test_a_job_page_open_across_a_reload_reconnects_and_sees_the_job_end(tmp_path, page, pg_server):
    """gunicorn's reload (HUP) stops the old worker: the page it served is told to reconnect, and follows on."""
    web = start_server(tmp_path / "web", pg_server.create_database("reload"), REWIND_EXTERNAL_WORKERS="1")
    runner = None
    try:
        admin = Session(web.url)
        admin.login("admin", web.admin_password)
        job_id = start_job(admin, runbook="test.count", lines="20", delay="0.05")  # queued: no worker runs jobs yet
        sign_in(page, web.url, "admin", web.admin_password)
        page.goto(f"{web.url}/jobs/{job_id}")
        expect(page.locator("#job-state")).to_have_attribute("data-state", "queued")
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads
        page.evaluate(SEEN_NOTES)
        served_by = web.worker_pid()

        web.process.send_signal(signal.SIGHUP)
        wait_for(lambda: not Path(f"/proc/{served_by}").exists(), timeout=10)  # gone long before graceful_timeout
        runner = worker({**web.env, **SERVER_ENV})
        expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=20_000)
        expect(page.locator("#log .line")).to_have_count(20)
        assert page.evaluate("window.__sameDocument") is True
        assert page.evaluate("window.__notes") == [
            "Live updates paused: reconnecting. Until then this page may be behind the job."
        ], "the page said it was reconnecting"
        expect(page.locator("#live-reconnecting")).to_have_count(0)  # and took it back once it was
    finally:
        if runner is not None:
            runner.terminate()
            runner.wait(timeout=30)
        web.stop()


def test_a_list_that_cannot_refresh_says_since_when_and_clears_once_it_can(tmp_path, page):
    """A page that silently stopped updating would read as "all is still well" in an incident."""
    server = start_server(tmp_path / "instance", REWIND_EXTERNAL_WORKERS="1")
    try:
        admin = Session(server.url)
        admin.login("admin", server.admin_password)
        start_job(admin, runbook="test.count", lines="3")  # stays queued (no worker process): the list follows it
        sign_in(page, server.url, "admin", server.admin_password)
        page.goto(server.url + "/jobs")
        expect(page.locator("#job-rows")).to_have_attribute("hx-trigger", "every 2s")
        stale = page.locator("#live-stale")
        expect(stale).to_have_count(0)

        server.stop()
        since = re.compile(r"^Not updated since \d\d:\d\d:\d\d: Rewind did not answer\. Trying again\.$")
        expect(stale).to_have_text(since)
        server.start()  # the list answers again, and the note goes
        expect(stale).to_have_count(0, timeout=10_000)
        expect(page.locator("#job-rows")).to_contain_text("queued")
    finally:
        server.stop()


def test_a_quiet_step_s_time_counts_on_and_the_end_takes_the_focus_from_the_cancel_button(tmp_path, page):
    """A step that runs quietly (one command, no output) showed "0.0 s" until the page was reloaded. And the Cancel
    button is removed when the job ends: a keyboard or screen-reader user on it was left at the top of the page;
    now the focus lands on how the job ended, which is read out (a live region)."""
    server = start_server(tmp_path / "instance")
    try:
        sign_in(page, server.url, "admin", server.admin_password)
        session = Session(server.url)
        session.login("admin", server.admin_password)
        job_id = start_job(session, runbook="test.sleep", target="staging", seconds="6")
        page.goto(f"{server.url}/jobs/{job_id}")
        page.evaluate("window.__sameDocument = true")
        step = page.locator("#step-0")
        expect(step).to_have_attribute("data-state", "running")
        expect(step.locator("[data-elapsed]")).to_have_text(re.compile(r"^[3-9]\.\d s$"), timeout=10_000)
        assert page.evaluate("window.__sameDocument") is True
        page.get_by_role("button", name="Cancel job").focus()
        expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=20_000)
        expect(step.locator("[data-elapsed]")).to_have_count(0)  # an ended step's time stands still
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
        expect(page.locator("#job-state")).to_be_focused()
        assert page.locator("#job-state").evaluate("el => el.parentElement.getAttribute('aria-live')") == "polite"
    finally:
        server.stop()
