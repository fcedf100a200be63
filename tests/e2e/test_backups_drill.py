"""The data drill in a real browser, on the demo sandbox: rows deleted, the newest backup restored, then undone."""

import json
import re
import urllib.request

import psycopg
from playwright.sync_api import expect

from app.demo import load_demo
from tests.e2e.test_foundation import sign_in


def stats(base_url: str) -> dict:
    """The demo app's own row counts."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base_url + "/stats", timeout=5) as response:
        return json.loads(response.read())


def test_delete_rows_restore_the_newest_backup_see_them_back_then_undo(demo_server, page):
    production = load_demo(demo_server.instance_dir / "demo")["production"]
    assert production.database_url.startswith("postgresql://")  # the demo runs on its own PostgreSQL
    before = stats(production.base_url)
    assert before["sessions"] > 0
    with psycopg.connect(production.database_url) as conn:
        conn.execute("DELETE FROM sessions")  # the incident: every session gone
    assert stats(production.base_url)["sessions"] == 0

    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations a person would accept
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production")
    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Backups").click()
    newest = page.locator("#backup-1")  # newest first: the demo made two, with sign-ups between them
    expect(page.locator("table.grid tbody tr")).to_have_count(2)
    expect(newest.get_by_text("verified", exact=True)).to_be_visible()
    backup_id = newest.locator("code").first.inner_text()
    # Before saying yes: what the restore brings back (the backup's sessions) and rolls back, read from live.
    newest.locator("summary", has_text="What it rolls back").click()
    sessions = newest.locator(".rolls-back-result tr", has_text="sessions")
    expect(sessions).to_have_text(re.compile(rf"sessions\s+{before['sessions']}\s+0\s+0"))
    newest.get_by_label("Type production to confirm").fill("production")
    newest.get_by_role("button", name=re.compile(r"^Restore \S+$")).click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    steps = page.locator(".step-row[id^=step-]")
    expect(steps).to_have_count(8)  # check, checkpoint, scratch, compare, stop, swap, start, recorded
    for n in range(8):
        expect(steps.nth(n)).to_have_attribute("data-state", "succeeded")
    log = page.locator("#log")
    expect(log).to_contain_text(f"restoring {backup_id} into the scratch database")
    counts = log.locator(".line", has_text=re.compile(r"^sessions\s"))
    expect(counts).to_have_text(re.compile(rf"^sessions\s+0\s+{before['sessions']}\s"))  # live 0, restored N
    expect(page.locator("#job-state")).to_contain_text("passed")
    assert stats(production.base_url)["sessions"] == before["sessions"]  # the rows are back

    page.goto(demo_server.url + "/targets/production/backups")
    copy = page.locator("ul.activity li", has_text="pre-restore")
    expect(copy).to_have_count(1)
    copy.get_by_label("Type production to confirm").fill("production")
    copy.get_by_role("button", name="Undo restore").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(page.locator("#job-state")).to_contain_text("passed")
    assert stats(production.base_url)["sessions"] == 0  # undone: the database as it was before the restore


def test_a_mistyped_name_brings_the_focus_back_to_the_field_with_the_reason_read_out(demo_server, page):
    """After a refused restore the focus was on the page's top, 23 Tab presses from the field, and the reason was
    not announced; each row's buttons and field also said which backup they act on only by their place."""
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production/backups")
    newest = page.locator("#backup-1")
    backup_id = newest.locator("code").first.inner_text()
    typed = newest.get_by_label(f"Type production to confirm the restore of {backup_id}", exact=True)
    typed.fill("prod")
    restore = newest.get_by_role("button", name=f"Restore {backup_id}", exact=True)
    restore.click()
    # the browser says so first: no "are you sure?" to answer for a name that will be refused anyway
    assert typed.evaluate("el => el.validity.patternMismatch") is True and asked == []
    # a client that does not check (no pattern) is refused by the server, and lands back on the field
    typed.evaluate("el => el.removeAttribute('pattern')")
    restore.click()
    expect(page).to_have_url(re.compile(r"/targets/production/backups$"))
    field = page.locator("#backup-1").get_by_label(f"Type production to confirm the restore of {backup_id}")
    expect(field).to_be_focused()
    expect(field).to_have_value("prod")
    expect(page.get_by_role("alert").filter(has_text="production")).to_have_count(1)
    expect(page.get_by_role("button", name=f"Verify {backup_id}", exact=True)).to_have_count(1)


def test_the_staging_database_dropped_is_restored_from_the_backups_tab(demo_server, page):
    """The worst morning: someone dropped staging's database. The newest backup's Restore makes it again as it
    was, restores into it and swaps; the app answers with the backup's rows."""
    staging = load_demo(demo_server.instance_dir / "demo")["staging"]
    dbname = staging.database_url.rsplit("/", 1)[1]
    before = stats(staging.base_url)
    with psycopg.connect(staging.database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')

    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/staging/backups")
    newest = page.locator("#backup-1")
    typed = newest.get_by_label("Type staging to confirm")
    if typed.count():
        typed.fill("staging")
    newest.get_by_role("button", name=re.compile(r"^Restore \S+$")).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(page.locator("#log")).to_contain_text(f"the live database {dbname} was not there (dropped?): made again")
    expect(page.locator("#log")).to_contain_text("the empty one made in place of the missing live database")
    assert stats(staging.base_url) == before  # the newest backup holds what staging had
