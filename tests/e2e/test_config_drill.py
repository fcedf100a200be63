"""The config drill in a real browser, on the demo sandbox: a bad setting breaks production, a restore mends it."""

import re

from playwright.sync_api import expect

from app.demo import load_demo
from tests.e2e.test_flags_drill import health_becomes
from tests.e2e.test_foundation import sign_in


def test_a_bad_setting_breaks_production_and_restoring_the_previous_version_mends_it(demo_server, page):
    production = load_demo(demo_server.instance_dir / "demo")["production"]
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations a person would accept
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production")
    health_becomes(page, "healthy")
    areas = page.get_by_role("navigation", name="production areas")

    areas.get_by_role("link", name="Config").click()
    page.get_by_role("button", name="Snapshot now").click()  # the good file is a version (if not seen already)
    good = page.locator("#versions tbody tr", has=page.locator(".badge", has_text="current"))
    expect(good).to_have_count(1)
    good_id = good.get_attribute("id").removeprefix("version-")

    # The incident: someone sets FEATURE_X to a value the app refuses at start-up, and restarts it.
    text = production.env_file.read_text()
    assert "FEATURE_X=on\n" in text
    production.env_file.write_text(text.replace("FEATURE_X=on\n", "FEATURE_X=maybe\n"))
    areas.get_by_role("link", name="Deployments").click()
    page.get_by_role("button", name="Restart", exact=True).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "failed", timeout=60_000)
    page.goto(demo_server.url + "/targets/production")
    health_becomes(page, "unhealthy")

    areas.get_by_role("link", name="Config").click()
    row = page.locator(f"#version-{good_id}")
    row.get_by_label("Type production to confirm").fill("production")
    row.get_by_role("button", name="Restore").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(page.locator("#job-state")).to_contain_text("passed")
    assert "FEATURE_X=on\n" in production.env_file.read_text()
    page.goto(demo_server.url + "/targets/production")
    health_becomes(page, "healthy")

    # The masked diff: the bad version (kept by the restore) against the file now.
    areas.get_by_role("link", name="Config").click()
    bad = page.locator("#versions tbody tr", has_text="FEATURE_X").filter(
        has_not=page.locator(".badge", has_text="current")
    )
    bad.first.get_by_role("link", name="Diff with now").click()
    changed = page.locator("#key-FEATURE_X")
    expect(changed).to_contain_text("changed")
    expect(changed.locator(".masked")).to_have_count(2)
    expect(page.locator("#diff")).not_to_contain_text("maybe")
    expect(page.locator("#diff tbody tr")).to_have_count(1)  # only that key differs
    changed.get_by_role("button", name=re.compile(r"^Reveal FEATURE_X in")).first.click()  # admin, audited
    expect(changed).to_contain_text("maybe")
    expect(changed.locator(".revealed")).to_be_focused()  # keyboard focus stays where the button was

    page.goto(demo_server.url + "/audit?action=envconfig")
    expect(page.locator("main")).to_contain_text("envconfig.reveal")
