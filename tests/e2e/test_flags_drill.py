"""The flag drill in a real browser, on the demo sandbox: a flag breaks production, a restore as of before mends it."""

import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import expect

from app.demo import load_demo
from tests.e2e.test_foundation import sign_in


def health_becomes(page, word: str, timeout: float = 20.0) -> None:
    """Reload the target's overview until its health badge reads `word` (the monitor re-probes after a change).

    The overview must have loaded first: a reload while the click on its link still navigates fails with "Not
    attached to an active page" (seen once on a loaded machine)."""
    expect(page).to_have_url(re.compile(r"/targets/[^/?#]+$"))
    page.wait_for_load_state("load")
    badge = page.locator("section.panel .badge", has_text=re.compile(rf"^{word}$"))
    deadline = time.monotonic() + timeout
    while True:
        page.reload()
        if badge.count():
            expect(badge).to_be_visible()
            return
        assert time.monotonic() < deadline, f"the overview never showed {word}"
        page.wait_for_timeout(300)


def test_a_flag_breaks_health_and_restore_as_of_before_mends_it(demo_server, page):
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations a person would accept
    before = datetime.now(UTC).replace(tzinfo=None).isoformat()  # a fresh install: before Rewind's first look
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production")
    health_becomes(page, "healthy")

    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Flags").click()
    # The box is there while the page still loads; typed into before htmx (a deferred script) has started, it
    # narrows nothing until Enter. Seen once on a loaded machine: the rows stayed 5 and the test waited in vain.
    page.wait_for_load_state("load")
    page.get_by_label("Search flags").fill("payments")  # narrows as one types, no reload
    expect(page.locator("#flag-rows tr")).to_have_count(1)
    expect(page.get_by_text(re.compile(r"\d+ of \d+ flag\(s\)"))).to_contain_text("1 of 5 flag(s)")  # not "5 of 5"
    row = page.locator("#flag-payments_v2")
    expect(row.locator(".flag-state")).to_have_text("off")

    row.get_by_label("Reason for turning payments_v2 on").fill("drill: try the new provider")
    row.get_by_role("button", name="Turn on payments_v2").click()
    expect(row.locator(".flag-state")).to_have_text("on")  # swapped in place, no reload
    expect(row).to_contain_text("payments_v2 is now on.")
    expect(page.get_by_role("button", name="Turn off payments_v2")).to_be_focused()

    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Overview").click()
    health_becomes(page, "unhealthy")

    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Flags").click()
    page.get_by_label("Time (UTC)").fill(before)
    page.get_by_role("button", name="Show the difference").click()
    expect(page.get_by_role("table")).to_contain_text("payments_v2")
    page.get_by_label("Reason").fill("drill over")
    page.get_by_role("button", name="Restore 1 flag(s)").click()
    expect(page.locator(".flashes")).to_contain_text("Flags restored as of")
    expect(page.locator("#flag-payments_v2 .flag-state")).to_have_text("off")

    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Overview").click()
    health_becomes(page, "healthy")

    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Timeline").click()
    changes = page.locator('tr[data-kind="flags"]')  # both changes, in the target's own timeline
    expect(changes.filter(has_text="payments_v2 turned on")).to_have_count(1)
    expect(changes.filter(has_text="Flags restored as of").filter(has_text="payments_v2 off")).to_have_count(1)


def test_a_stale_toggle_shows_the_refusal_and_the_current_state_in_its_row(demo_server, page, browser):
    # htmx fires beforeSwap on the swap target (the row), not on the form that asked: the refusal once never showed.
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/staging/flags")
    elsewhere = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        other = elsewhere.new_page()
        sign_in(other, demo_server.url, "admin", demo_server.admin_password)
        other.goto(demo_server.url + "/targets/staging/flags")
        other.get_by_role("button", name="Turn on legacy_export").click()
        expect(other.locator("#flag-legacy_export .flag-state")).to_have_text("on")
    finally:
        elsewhere.close()

    row = page.locator("#flag-legacy_export")
    expect(row.locator(".flag-state")).to_have_text("off")  # as this page still saw it
    row.get_by_role("button", name="Turn on legacy_export").click()
    expect(row).to_contain_text("legacy_export is on now, not off as you saw it")
    expect(row.locator(".flag-state")).to_have_text("on")
    expect(row.get_by_role("button", name="Turn off legacy_export")).to_be_visible()


def test_a_toggle_refused_by_a_whole_error_page_keeps_the_row_and_says_why_above(demo_server, page):
    """Signed out in another tab, the page's security token is stale: the 400 error page was swapped into the
    table in place of the flag's row (a second top bar inside the table, the row and its buttons gone)."""
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/staging/flags")
    rows = page.locator("#flag-rows > tr")
    count = rows.count()
    other = page.context.new_page()
    other.goto(demo_server.url + "/")
    other.get_by_role("button", name="Sign out").click()
    expect(other.get_by_role("heading", name="Sign in to Rewind")).to_be_visible()
    other.close()

    row = page.locator("#flag-beta_search")
    row.get_by_role("button", name="Turn on beta_search").click()
    expect(page.locator("#request-refused")).to_contain_text(
        "Signed out: Nothing was changed: this browser is no longer signed in"
    )
    expect(rows).to_have_count(count)
    expect(row.locator(".flag-state")).to_have_text("off")
    expect(row.get_by_role("button", name="Turn on beta_search")).to_be_focused()
    expect(page.locator("#flag-rows .topbar")).to_have_count(0)


def test_a_toggle_a_locked_table_refused_is_said_above_and_goes_once_a_toggle_works(demo_server, page):
    """The refusal (a migration holds the flags table) replaced the flag's row; said above the table instead, it then
    stayed up after the retry had worked, until a reload."""
    staging = load_demo(demo_server.instance_dir / "demo")["staging"]
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/staging/flags")
    row, notice = page.locator("#flag-dark_mode"), page.locator("#flag-notice")
    if staging.database_url.startswith("postgresql://"):
        holder = psycopg.connect(staging.database_url)
        holder.execute("LOCK TABLE feature_flags IN ACCESS EXCLUSIVE MODE")  # what a running migration holds
    else:  # the demo's SQLite fall-back
        holder = sqlite3.connect(staging.database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    try:
        row.get_by_role("button", name="Turn off dark_mode").click()
        expect(notice).to_contain_text("dark_mode: the flags table", timeout=15_000)  # Rewind waits 5 s for the lock
        expect(notice).to_contain_text("locked")
    finally:
        holder.rollback()
        holder.close()
    expect(row.locator(".flag-state")).to_have_text("on")  # as it was: nothing written
    # Review: any request that worked cleared it, a search too, while dark_mode was still on.
    with page.expect_response(lambda answer: "q=dark" in answer.url and answer.status == 200):
        page.get_by_label("Search flags").fill("dark")
    expect(row.locator(".flag-state")).to_have_text("on")
    expect(notice).to_contain_text("dark_mode")
    # A search typed that fails says so at the top (review: it failed silently), beside the flag's notice, and the
    # next search that works clears its note alone.
    page.route(re.compile(r".*/flags\?q=dar$"), lambda route: route.fulfill(status=500, body="down"))
    with page.expect_response(lambda answer: answer.url.endswith("q=dar")):
        page.get_by_label("Search flags").fill("dar")
    page.unroute(re.compile(r".*/flags\?q=dar$"))
    expect(page.locator("#request-refused")).to_have_text("The request failed (HTTP 500). down")
    with page.expect_response(lambda answer: answer.url.endswith("q=dark") and answer.status == 200):
        page.get_by_label("Search flags").fill("dark")
    expect(page.locator("#request-refused")).to_have_count(0)
    expect(notice).to_contain_text("dark_mode")
    row.get_by_role("button", name="Turn off dark_mode").click()  # the retry the notice asks for
    expect(row.locator(".flag-state")).to_have_text("off")
    expect(notice).to_be_empty()
    # The health look a toggle's row makes by itself a second later fails: no person's request, no note for it.
    page.route(re.compile(r".*/health-now$"), lambda route: route.fulfill(status=500, body="down"))
    with page.expect_response(lambda answer: answer.url.endswith("/health-now")):
        row.get_by_role("button", name="Turn on dark_mode").click()  # as the demo had it, for the other tests
    page.unroute(re.compile(r".*/health-now$"))
    expect(row.locator(".flag-state")).to_have_text("on")
    expect(page.locator("#request-refused")).to_have_count(0)


def test_the_kill_switch_confirmation_names_the_flags_it_turns_off(demo_server, page):
    """It asked "Turn off the chosen flags on production?", whichever and however many were ticked."""
    questions = []

    def decline(dialog):
        questions.append(dialog.message)
        dialog.dismiss()  # Escape: nothing is written

    page.on("dialog", decline)
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production/flags")
    page.get_by_label("Choose dark_mode for the kill switch").check()
    page.get_by_label("Choose new_checkout for the kill switch").check()
    page.locator("#kill-reason").fill("error rate")
    kill = page.get_by_role("button", name="Turn off the chosen flags")
    kill.click()
    expect(kill).to_be_focused()  # declined: still on the page, where it was
    assert questions == ["Turn off 2 flags: dark_mode, new_checkout on production?"]
    expect(page.locator("#flag-dark_mode .flag-state")).to_have_text("on")


def test_the_kill_switch_asks_only_about_ticked_flags_that_are_on_and_nothing_when_none_is_ticked(demo_server, page):
    """It asked "Turn off the ticked flags (none is ticked)" before the server refused, and "Turn off 3 flags" when
    one of the three was off already."""
    questions = []

    def decline(dialog):
        questions.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", decline)
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production/flags")
    expect(page.locator("#flag-legacy_export .flag-state")).to_have_text("off")
    page.locator("#kill-reason").fill("error rate")
    page.get_by_role("button", name="Turn off the chosen flags").click()
    expect(page.locator(".flashes")).to_contain_text("no flags chosen: nothing to turn off")  # the server's word
    assert questions == []

    for name in ("dark_mode", "legacy_export", "new_checkout"):
        page.get_by_label(f"Choose {name} for the kill switch").check()
    page.locator("#kill-reason").fill("error rate")
    page.get_by_role("button", name="Turn off the chosen flags").click()
    expect(page.locator("#flag-dark_mode .flag-state")).to_have_text("on")  # declined
    assert questions == ["Turn off 2 flags: dark_mode, new_checkout on production? legacy_export is already off."]

    page.get_by_label("Choose dark_mode for the kill switch").uncheck()
    page.get_by_label("Choose new_checkout for the kill switch").uncheck()
    page.get_by_role("button", name="Turn off the chosen flags").click()
    expect(page.locator("#flag-dark_mode .flag-state")).to_have_text("on")
    assert questions[1] == (
        "Turn off the ticked flags on production? This page shows every one of them off already (legacy_export): "
        "nothing changes unless one was turned on since."
    )


def test_off_utc_every_time_reads_and_is_typed_in_the_browser_zone(demo_server, browser):
    """The timeline showed local times and the restore-as-of field took UTC: a time read off one and typed into
    the other restored to an hour after the moment meant. Now pages show one zone, named in the top bar, and a
    time typed into a field is read in it."""
    zone = ZoneInfo("Europe/Berlin")
    offset = datetime.now(zone).strftime("%z")
    named = "Europe/Berlin, UTC" + offset[:3] + ":" + offset[3:]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        sign_in(page, demo_server.url, "admin", demo_server.admin_password)
        expect(page.locator(".topbar .zone")).to_have_text(f"times in {named}")

        page.goto(demo_server.url + "/targets/staging/flags")
        meant = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
        page.get_by_label(f"Time ({named})").fill(meant.astimezone(zone).strftime("%Y-%m-%d %H:%M"))
        page.get_by_role("button", name="Show the difference").click()
        typed = meant.astimezone(zone).strftime("%Y-%m-%d %H:%M") + offset[:3] + ":" + offset[3:]  # and its offset
        expect(page).to_have_url(re.compile(r"as_of=" + re.escape(quote_plus(typed)) + "(&|$)"))
        shown = page.locator("p.hint time").first
        expect(shown).to_have_attribute("datetime", meant.strftime("%Y-%m-%dT%H:%M:00Z"))
        expect(shown).to_have_text(re.compile(re.escape(meant.astimezone(zone).strftime("%H:%M:00")) + "$"))

        page.goto(demo_server.url + "/targets/staging/backups")
        first = page.locator("table.grid tbody tr").first.locator("time").first
        utc = datetime.strptime(first.get_attribute("datetime"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        expect(first).to_have_text(re.compile(re.escape(utc.astimezone(zone).strftime("%H:%M:%S")) + "$"))
        expect(first).to_have_attribute("title", utc.strftime("%Y-%m-%d %H:%M:%S UTC"))

        page.goto(demo_server.url + "/audit")  # a datetime-local field: typed local, sent UTC, shown local again
        since = page.get_by_label(f"From ({named})")
        since.fill(meant.astimezone(zone).strftime("%Y-%m-%dT%H:%M"))
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"since=" + re.escape(meant.strftime("%Y-%m-%dT%H%%3A%M")) + "(&|$)"))
        expect(page.get_by_label(f"From ({named})")).to_have_value(meant.astimezone(zone).strftime("%Y-%m-%dT%H:%M"))
    finally:
        context.close()


def test_in_kolkata_a_refused_time_is_said_as_typed_and_a_bare_time_is_today_there(demo_server, browser):
    """23:00 typed in Kolkata came back as "2026-11-27 17:30 is in the future" (the UTC the browser sent), and
    "10:00" could not be read at all, though the pages list today's times without a date."""
    zone = ZoneInfo("Asia/Kolkata")
    local = datetime.now(zone)
    if (local.hour, local.minute) < (0, 3) or (local.hour, local.minute) > (23, 56):
        pytest.skip("too near midnight in Kolkata for bare times a few minutes away on the same day")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kolkata")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        sign_in(page, demo_server.url, "admin", demo_server.admin_password)
        page.goto(demo_server.url + "/targets/staging/flags")
        field = page.get_by_label("Time (Asia/Calcutta, UTC+05:30)").or_(
            page.get_by_label("Time (Asia/Kolkata, UTC+05:30)")
        )
        error = page.locator("#restore-error")

        typed = (local + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
        field.fill(typed)
        page.get_by_role("button", name="Show the difference").click()
        expect(error).to_contain_text(f"as of: {typed} (UTC+05:30) is in the future")
        expect(field).to_have_value(typed)  # what was typed, not the UTC

        later = (local + timedelta(minutes=2)).strftime("%H:%M")
        field.fill(later)
        page.get_by_role("button", name="Show the difference").click()
        expect(error).to_contain_text(f"as of: {later} today (UTC+05:30) is in the future")
        expect(field).to_have_value(later)

        earlier = local - timedelta(minutes=2)
        field.fill(earlier.strftime("%H:%M"))
        page.get_by_role("button", name="Show the difference").click()
        meant = datetime.combine(local.date(), clock(earlier.hour, earlier.minute), zone).astimezone(UTC)
        expect(page.locator("h2 time")).to_have_attribute("datetime", meant.strftime("%Y-%m-%dT%H:%M:00Z"))
        expect(page.locator("h2 time")).to_have_text(earlier.strftime("%H:%M:00"))  # today: no date
    finally:
        context.close()


MID_WORD = """() => {
    // Each piece of a name between its <wbr>s must sit on one line: a piece on two lines was broken mid-word.
    const broken = [];
    for (const code of document.querySelectorAll("table.flags th code")) {
        const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const range = document.createRange();
            range.selectNodeContents(node);
            const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
            if (tops.size > 1) {
                broken.push(code.textContent);
            }
        }
    }
    return broken;
}"""


def test_flag_names_wrap_only_after_an_underscore_or_a_dot_and_copy_whole(demo_server, browser):
    """At a phone's width the Flag column read "legacy_expor|t": names broke anywhere."""
    context = browser.new_context(viewport={"width": 390, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, demo_server.url, "admin", demo_server.admin_password)
        for width in (390, 600, 800, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(demo_server.url + "/targets/staging/flags")
            assert page.evaluate(MID_WORD) == [], width
        name = page.locator("#flag-legacy_export th code")
        expect(name).to_have_text("legacy_export")  # what a copy takes: <wbr> adds no character
        assert name.inner_html() == "legacy_<wbr>export"
    finally:
        context.close()
