"""The first-day drill in a real browser, on the demo sandbox: break production, see it, revert it."""

import re

from playwright.sync_api import expect

from tests.e2e.test_foundation import sign_in


def test_deploy_bad_branch_see_it_unhealthy_revert_and_see_it_healthy(demo_server, page):
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations a person would accept
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    card = page.locator("#target-production")
    expect(card.get_by_text("healthy", exact=True)).to_be_visible(timeout=15_000)

    card.get_by_role("link", name="production").click()
    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Deployments").click()
    page.get_by_label("Branch or commit").fill("feature/rollback-drill-bad-code")
    page.get_by_label("If verification fails").select_option("off")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "failed", timeout=40_000)
    expect(page.locator("#job-state")).to_contain_text("did not become healthy")

    page.get_by_role("navigation", name="Areas").get_by_role("link", name="Dashboard").click()
    expect(card.get_by_text("unhealthy", exact=True)).to_be_visible(timeout=15_000)

    card.get_by_role("link", name="production").click()
    page.get_by_role("navigation", name="production areas").get_by_role("link", name="Deployments").click()
    bad = page.locator("table.grid tbody tr").first
    expect(bad.get_by_text("deployed")).to_be_visible()
    bad.get_by_role("button", name="Revert").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-progress")).to_have_attribute("data-percent", "100", timeout=30_000)
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded")
    steps = page.locator(".step-row")
    expect(steps.filter(has_text="Run the release commands")).to_contain_text("skipped")  # none in the demo
    expect(steps.filter(has_text="Restart the application")).to_contain_text("succeeded")  # a graceful reload
    expect(page.locator("#job-state")).to_contain_text("passed")

    page.get_by_role("navigation", name="Areas").get_by_role("link", name="Dashboard").click()
    expect(card.get_by_text("healthy", exact=True)).to_be_visible(timeout=15_000)
    expect(card).to_contain_text("Last known good")
