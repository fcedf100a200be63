"""The on-call path in a browser: dashboard card, target page, failed deploy, the offered revert, the timeline."""

import json
import re

from playwright.sync_api import expect

from app.demo import load_demo
from tests.e2e.test_foundation import sign_in

BAD = "feature/rollback-drill-bad-code"


def test_from_the_card_deploy_bad_code_revert_it_from_the_job_page_and_read_the_timeline(demo_server, page):
    questions = []

    def accept(dialog):
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    card = page.locator("#target-production")
    expect(card.get_by_text("healthy", exact=True)).to_be_visible(timeout=15_000)

    card.get_by_role("link", name="production", exact=True).click()
    expect(page).to_have_url(re.compile(r"/targets/production$"))
    expect(page.locator("#overview-process")).to_contain_text("running")
    expect(page.locator("#overview-known-good")).not_to_contain_text("none recorded yet")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()

    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Deployments").click()
    page.get_by_label("Branch or commit").fill(BAD)
    page.get_by_label("If verification fails").select_option("off")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    deploy_url = page.url
    expect(page.locator("#job-state")).to_have_attribute("data-state", "failed", timeout=40_000)
    assert questions[-1] == "Deploy to production? It restarts the application."

    # The end of the job arrives over the websocket; what to do next follows without a reload.
    revert = page.get_by_role("button", name="Revert this deploy")
    expect(revert).to_be_visible(timeout=10_000)
    expect(page.locator("#job-finished")).to_contain_text("after")
    revert.click()
    assert questions[-1].startswith("Revert this deploy on production?")
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    assert page.url != deploy_url
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=40_000)

    page.get_by_role("heading", level=1).get_by_role("link", name="production").click()
    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Timeline").click()
    rows = page.locator("table.timeline tbody tr")
    kinds = rows.evaluate_all("rows => rows.map(r => r.dataset.kind)")
    jobs = [k for k in kinds if k in ("deploys", "reverts")]
    assert jobs[:2] == ["reverts", "deploys"], kinds  # newest first: the revert after the failed deploy
    expect(page.locator('tr[data-kind="deploys"]').first).to_contain_text("failed")
    expect(page.locator('tr[data-kind="reverts"]').first).to_contain_text("succeeded")
    when = page.locator('tr[data-kind="reverts"] time').first
    expect(when).to_have_attribute("title", re.compile(r"UTC$"))
    expect(when).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))  # today: the local time without the date

    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page is wider than a phone"


# The controls of the page's main part that end past what shows: the window, or the box a table scrolls in.
CONTROLS_PAST_THE_EDGE = """() => {
  const width = document.documentElement.clientWidth;
  const past = [];
  for (const el of document.querySelectorAll('main button, main input:not([type=hidden]), main select, main a')) {
    const box = el.getBoundingClientRect();
    const scroller = el.closest('.table-scroll');
    const edge = scroller ? scroller.getBoundingClientRect().right : width;
    if (box.width && box.right > edge) past.push(`${el.tagName} ${el.name || el.textContent.trim()}: ${box.right}`);
  }
  return {past, pageScrolls: document.documentElement.scrollWidth > width};
}"""


def test_at_800_px_every_tab_s_actions_are_in_view_without_scrolling_the_page(demo_server, browser):
    """On a laptop split screen the Backups tab's Actions column (the typed name, Restore) was cut off."""
    production = load_demo(demo_server.instance_dir / "demo")["production"]
    foreign = production.backups_dir / "production_manual_copy_before_the_payments_migration_by_oncall.dump.gpg"
    foreign.write_bytes(b"not a real backup")  # a long name a person might give a backup copied by hand
    context = browser.new_context(viewport={"width": 800, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, demo_server.url, "admin", demo_server.admin_password)
        tabs = page.get_by_role("navigation", name="production areas").get_by_role("link")
        page.goto(demo_server.url + "/targets/production")
        urls = [demo_server.url + href for href in tabs.evaluate_all("links => links.map(a => a.getAttribute('href'))")]
        assert len(urls) >= 7  # overview, timeline and one tab per area
        for url in [*urls, demo_server.url + "/jobs", demo_server.url + "/audit", demo_server.url + "/users"]:
            page.goto(url)
            assert page.evaluate(CONTROLS_PAST_THE_EDGE) == {"past": [], "pageScrolls": False}, url
        page.goto(demo_server.url + "/targets/production/backups")
        expect(page.get_by_role("button", name=re.compile(r"^Restore \S+$")).first).to_be_in_viewport()
    finally:
        context.close()
        foreign.unlink(missing_ok=True)


REFRESH_BOTH = """async () => {
    const settled = (id) => new Promise((done) => {
        const on = (event) => {
            if (event.detail.elt && event.detail.elt.id === id) {
                document.body.removeEventListener("htmx:afterSettle", on);
                done();
            }
        };
        document.body.addEventListener("htmx:afterSettle", on);
    });
    const both = ["target-cards", "recent-activity"].map((id) => {
        const part = document.getElementById(id);
        const shown = settled(id);
        htmx.ajax("GET", part.getAttribute("hx-get"), {
            target: "#" + id, swap: "outerHTML", select: "#" + id, headers: {"X-Rewind-Background": "1"},
        });
        return shown;
    });
    await Promise.all(both);
}"""


def test_focus_stays_put_when_two_parts_refresh_at_the_same_moment(demo_server, page):
    """The cards and the recent activity refresh together: the second swap must not drop what the first noted of
    the focused link (one shared note did, and the keyboard user was sent back to the top)."""
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    for _ in range(4):
        page.locator("#target-production").get_by_role("link", name="Timeline").focus()
        page.evaluate(REFRESH_BOTH)
        focused = page.evaluate("document.activeElement.outerHTML")
        assert focused == '<a href="/targets/production/timeline">Timeline</a>', focused


def test_a_keyboard_user_keeps_their_place_when_the_dashboard_cards_refresh(demo_server, page):
    """The cards are replaced every 10 s: the focused link went with them, and the next Tab started from the top."""
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    timeline = page.locator("#target-production").get_by_role("link", name="Timeline")
    timeline.evaluate("link => link.setAttribute('data-before-refresh', '')")  # only the link the refresh replaces
    timeline.focus()
    with page.expect_response(lambda r: "/dashboard/cards" in r.url, timeout=30_000):
        pass  # the next refresh, whenever it comes
    expect(page.locator("#target-production a:not([data-before-refresh])", has_text="Timeline")).to_be_focused()
    page.keyboard.press("Tab")  # on from there, not from the top of the page
    expect(page.locator("#target-staging").get_by_role("link", name="staging", exact=True)).to_be_focused()


def test_a_keyboard_user_on_start_keeps_it_when_the_overview_refreshes(demo_server, page):
    """Start comes back with the overview's state every 10 s (greyed while the app runs, offered once it is down):
    replaced whole, it took the keyboard user's focus with it (review)."""
    demo_server.flask("rewind", "run", "staging", "stop", "--as", "admin", "--follow")
    try:
        sign_in(page, demo_server.url, "admin", demo_server.admin_password)
        page.goto(demo_server.url + "/targets/staging")
        start = page.get_by_role("button", name="Start", exact=True)
        expect(start).to_be_enabled()
        start.evaluate("button => button.setAttribute('data-before-refresh', '')")  # only the one the refresh replaces
        start.focus()
        with page.expect_response(lambda r: r.url.endswith("/targets/staging"), timeout=30_000):
            pass  # the state's next refresh, whenever it comes
        replaced = page.locator("#overview-start button:not([data-before-refresh])", has_text="Start")
        expect(replaced).to_be_focused()
    finally:
        demo_server.flask("rewind", "run", "staging", "start", "--as", "admin", "--follow")


def test_a_job_run_elsewhere_shows_in_the_overview_s_recent_entries_with_one_request_per_refresh(demo_server, page):
    """The recent entries come back with the state's refresh: one request per refresh and viewer, where the two
    parts each asked for the whole page before."""
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/staging")
    expect(page.locator("#overview-health")).not_to_contain_text("not checked yet", timeout=15_000)
    job_id = re.search(r"job #(\d+)", demo_server.flask("rewind", "run", "staging", "verify", "--as", "admin")).group(1)
    # Counted from the job's queueing on: a refresh while the shell started up (seconds) came before it, and is one
    # more request that says nothing of how many each refresh makes. Playwright hands the page's events over during
    # its next call: one round trip first, so those are handled before anything listens.
    page.evaluate("0")
    asked = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/targets/staging") else None)
    recent = page.locator("#overview-recent")
    expect(recent.locator(f'a[href="/jobs/{job_id}"]').first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1_000)  # a second part asking at the same moment would have asked by now
    assert len(asked) == 1, asked
    assert page.url.endswith("/targets/staging")  # no reload: the part came back by itself


TABLE_FITS = """() => [...document.querySelectorAll('.table-scroll')].map(box => box.scrollWidth - box.clientWidth)"""


def test_at_600_and_800_px_the_backups_table_fits_its_box_whatever_its_rows_say(demo_server, browser):
    """A verification's error with a path, a damaged manifest's name, a copy's name: the table scrolled by ~21 px."""
    folder = load_demo(demo_server.instance_dir / "demo")["production"].backups_dir
    added = [folder / "production_20240101_000000.dump.gpg", folder / "production_20240102_000000.dump.gpg"]
    added[0].write_bytes(b"\x85x")
    failed = {"ok": False, "how": "restore-test", "at": "2024-01-01T00:05:00+00:00", "job_id": 7}
    failed["detail"] = f"gpg: decryption failed: No secret key for {added[0]}"
    purpose = "the pre-restore copy of restore job #1234 (production_pre_restore_20240101000000)"
    manifest = {"time": "2024-01-01T00:00:00+00:00", "made_by": "rewind", "format": "custom", "job_id": 1234}
    added.append(added[0].with_name(added[0].name + ".json"))
    added[2].write_text(json.dumps(manifest | {"verified": failed, "purpose": purpose}))
    added[1].write_bytes(b"")
    added.append(added[1].with_name(added[1].name + ".json"))
    added[3].write_text("{cut short")
    context = browser.new_context(viewport={"width": 600, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, demo_server.url, "admin", demo_server.admin_password)
        for width in (600, 800):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(demo_server.url + "/targets/production/backups")
            expect(page.get_by_text("manifest damaged")).to_be_visible()
            expect(page.get_by_text("failed verification")).to_be_visible()
            assert page.evaluate(TABLE_FITS) == [0], width
            assert page.evaluate(CONTROLS_PAST_THE_EDGE) == {"past": [], "pageScrolls": False}, width
    finally:
        context.close()
        for path in added:
            path.unlink(missing_ok=True)


OUTSIDE_TABLES_PAST_THE_EDGE = """() => {
  const width = document.documentElement.clientWidth;
  const past = [];
  for (const el of document.querySelectorAll('body button, body input:not([type=hidden]), body select, body a')) {
    const box = el.getBoundingClientRect();
    if (!box.width || el.closest('table, .table-scroll, .steps, details:not([open]), .log')) continue;
    if (box.right > width + 0.5) past.push(`${el.tagName} ${el.name || el.textContent.trim()}: ${box.right}`);
  }
  return {past, pageScrolls: document.documentElement.scrollWidth > width};
}"""


def test_at_390_px_no_page_scrolls_sideways_and_every_form_fits(demo_server, browser):
    """On a phone, a time field, the checkpoint list, a job's long parameter and an 80-character flag name each made
    the page wider than the screen, with fields and buttons past its edge; a table may scroll in its own box."""
    long_flag = "checkout_experiment_" + "x" * 60
    staging = load_demo(demo_server.instance_dir / "demo")["staging"]
    foreign = staging.backups_dir / "staging_manual_copy_before_the_checkout_experiment_by_oncall.dump.gpg"
    foreign.write_bytes(b"not a real backup")  # its Verify job's page names it in full
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        sign_in(page, demo_server.url, "admin", demo_server.admin_password)
        page.goto(demo_server.url + "/targets/staging/flags")
        page.locator("#new-flag").fill(long_flag)
        page.locator("#new-flag").press("Enter")
        expect(page.locator(f"#flag-{long_flag}")).to_be_visible()
        page.goto(demo_server.url + "/targets/staging/backups")
        row = page.locator("tr", has_text="checkout_experiment")
        row.get_by_role("button", name=re.compile(r"^Verify \S+$")).click()
        expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
        job_page = page.url
        page.goto(demo_server.url + "/targets/staging")
        tabs = page.get_by_role("navigation", name="staging areas").get_by_role("link")
        urls = [demo_server.url + href for href in tabs.evaluate_all("links => links.map(a => a.getAttribute('href'))")]
        others = ["/", "/jobs", "/audit", "/users", "/jobs/new?runbook=revert&target=staging"]
        for url in [*urls, *(demo_server.url + o for o in others), job_page]:
            page.goto(url)
            assert page.evaluate(OUTSIDE_TABLES_PAST_THE_EDGE) == {"past": [], "pageScrolls": False}, url
    finally:
        context.close()
        foreign.unlink(missing_ok=True)
