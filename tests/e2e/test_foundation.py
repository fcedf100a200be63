"""A first day with Rewind in a real browser: the initial admin adds a viewer, who reads the audit log."""

import re

from playwright.sync_api import expect


def sign_in(page, base: str, name: str, password: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.keyboard.press("Enter")  # keyboard only, as an on-call engineer might
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_admin_creates_viewer_who_reads_the_audit_log(server, page):
    sign_in(page, server.url, "admin", server.admin_password)

    page.get_by_role("navigation", name="Areas").get_by_role("link", name="Users").click()
    page.get_by_label("Name", exact=True).fill("vera")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("heading", name="Password for vera")).to_be_visible()
    password = page.locator("#issued-password").inner_text().strip()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()

    sign_in(page, server.url, "vera", password)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)  # viewers do not manage users
    page.get_by_role("navigation", name="Areas").get_by_role("link", name="Audit").click()
    expect(page.locator("#chain-status")).to_contain_text("No break in the")

    rows = page.locator("table.audit tbody tr")
    expect(rows.filter(has_text="user: vera").filter(has_text="user.create")).to_contain_text("admin")
    expect(rows.filter(has_text="auth.login").filter(has_text="vera")).to_have_count(1)

    page.get_by_label("Action").fill("user")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=user"))
    expect(rows).to_have_count(2)  # the initial admin, then vera
    expect(rows.first).to_contain_text("user: vera")
    expect(rows.last).to_contain_text("user: admin")


def test_disable_asks_for_confirmation_first(server, page):
    sign_in(page, server.url, "admin", server.admin_password)
    page.goto(server.url + "/users")
    page.get_by_label("Name", exact=True).fill("temp")
    page.get_by_role("button", name="Add user").click()
    row = page.locator("tr", has_text="temp")
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Disable").click()
    expect(row.get_by_text("Active")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("temp is disabled")).to_be_visible()
    expect(page.locator("tr", has_text="temp").get_by_text("Disabled")).to_be_visible()
