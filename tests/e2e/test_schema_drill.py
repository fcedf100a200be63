"""The schema drill in a real browser, on the demo sandbox: deploy a branch that adds a migration, see the
schema upgraded; reset the code behind it, see the gate's plan, run downgrade-then-reset, see code and schema match."""

import re

from playwright.sync_api import expect

from app.demo import load_demo
from app.demo.history import HEAD_REVISION, MIGRATION_BRANCH, MIGRATION_BRANCH_REVISION
from app.demo.sample import NEWER_USERS, SESSIONS_PER_USER
from tests.e2e.test_foundation import sign_in
from tests.support.targets import git

# Users with a session when the branch's migration backfills users.last_seen_at: what the downgrade destroys.
SEEN = sum(1 for n in SESSIONS_PER_USER if n) + len(NEWER_USERS)


def open_tab(page, name: str) -> None:
    page.get_by_role("navigation", name="production areas").get_by_role("link", name=name).click()


def test_deploy_a_migration_reset_behind_it_and_let_the_gate_downgrade_first(demo_server, page):
    production = load_demo(demo_server.instance_dir / "demo")["production"]
    assert production.protected  # so every destructive step asks for the typed name, as on a real production
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations a person would accept
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production")

    # The schema starts at main's head, matching the code.
    open_tab(page, "Migrations")
    expect(page.locator("#schema-current")).to_have_text(HEAD_REVISION)
    expect(page.locator("#revisions tbody tr")).to_have_count(5)

    # Deploy the branch whose commit adds a migration: the deploy upgrades the schema before the restart.
    open_tab(page, "Deployments")
    page.get_by_label("Branch or commit").fill(MIGRATION_BRANCH)
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=60_000)
    migrate = page.locator(".step-row", has_text="Upgrade the schema")
    expect(migrate).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#log")).to_contain_text(f"Running upgrade {HEAD_REVISION} -> {MIGRATION_BRANCH_REVISION}")
    expect(page.locator("#job-state")).to_contain_text("passed")

    page.goto(demo_server.url + "/targets/production")
    open_tab(page, "Migrations")
    expect(page.locator("#schema-current")).to_have_text(MIGRATION_BRANCH_REVISION)
    expect(page.locator("#schema-heads")).to_have_text(MIGRATION_BRANCH_REVISION)
    expect(page.get_by_text("code and schema match")).to_be_visible()
    added = page.locator(f"#rev-{MIGRATION_BRANCH_REVISION}")
    expect(added).to_have_attribute("data-state", "applied")
    expect(added).to_contain_text("Add last seen to users")

    # Reset the deployed code back behind it: the gate refuses and spells out its plan.
    open_tab(page, "Deployments")
    behind = page.locator("table.grid tbody tr", has_text="Index sessions by expiry")
    behind.get_by_label("Type production to confirm").fill("production")
    behind.get_by_role("button", name="Reset to here").click()
    refusal = page.locator("#gate-refusal")
    expect(refusal).to_be_visible()
    expect(refusal.get_by_role("heading")).to_contain_text("The schema gate stopped the reset")
    expect(page.locator(".flashes")).to_contain_text("why, and the way past it, are said below")  # said once
    expect(refusal).to_contain_text(f"The database is at {MIGRATION_BRANCH_REVISION} (Add last seen to users)")
    expect(page.locator("#gate-plan")).to_contain_text(
        f"downgrade to {HEAD_REVISION} first (drops users.last_seen_at, holding {SEEN} non-null values), then reset"
    )
    expect(page.locator("table.grid tbody tr").first.get_by_text("deployed")).to_be_visible()  # nothing changed

    # Its button runs the combined runbook: a verified backup first (production is protected: no skipping it),
    # then the downgrade with the deployed commit's scripts, reset, restart, verify.
    expect(refusal.get_by_label(re.compile("I have a backup"))).to_have_count(0)
    refusal.get_by_label("Type production to confirm", exact=True).fill("production")
    refusal.get_by_role("button", name="Back up, downgrade, then reset").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=90_000)
    steps = page.locator(".step-row[id^=step-]")
    # head shown, plan, backup, verify backup, checkpoint, downgrade, tag, reset, release (none configured), restart,
    # verify
    expect(steps).to_have_count(11)
    for n in range(11):
        expect(steps.nth(n)).to_have_attribute("data-state", "skipped" if n == 8 else "succeeded")
    expect(page.locator("#log")).to_contain_text("taken before the downgrade; restore it from the Backups tab")
    expect(page.locator("#log")).to_contain_text(f"DESTROYS drops users.last_seen_at, holding {SEEN} non-null values")
    expect(page.locator("#log")).to_contain_text(f"Running downgrade {MIGRATION_BRANCH_REVISION} -> {HEAD_REVISION}")
    expect(page.locator("#job-state")).to_contain_text("passed")  # health and schema (verification checks both)

    # The target page: code and schema together again, no drift.
    page.goto(demo_server.url + "/targets/production")
    expect(page.get_by_text(f"at {HEAD_REVISION}, matching the deployed code")).to_be_visible()
    open_tab(page, "Migrations")
    expect(page.locator("#schema-current")).to_have_text(HEAD_REVISION)
    expect(page.get_by_text("code and schema match")).to_be_visible()
    expect(page.locator(".drift")).to_have_count(0)
    expect(page.locator(f"#rev-{MIGRATION_BRANCH_REVISION}")).to_have_count(0)  # the deployed code no longer has it
    open_tab(page, "Deployments")
    deployed = page.locator("table.grid tbody tr").first
    expect(deployed).to_contain_text("Index sessions by expiry")
    expect(deployed.get_by_text("deployed")).to_be_visible()

    # The backup the downgrade took is in the catalog, holding the data the downgrade dropped.
    open_tab(page, "Backups")
    expect(page.locator("table.grid tbody tr").first).to_contain_text(f"taken before the downgrade to {HEAD_REVISION}")


def test_a_deploy_the_gate_kept_from_rolling_back_offers_downgrade_then_reset_on_its_job_page(demo_server, page):
    """The branch migrates, then fails /health: the automatic rollback would leave the old code behind the schema,
    so the job page offers the combined runbook, not a Revert or Reset the gate refuses."""
    production = load_demo(demo_server.instance_dir / "demo")["production"]
    repo = production.app_dir
    git(repo, "checkout", "-q", "-b", "drill/last-seen-breaks-health", MIGRATION_BRANCH)
    views = repo / "demoapp" / "views.py"
    views.write_text(views.read_text().replace('jsonify(status="healthy"', 'jsonify(status="broken"'))
    git(repo, "commit", "-q", "-am", "Break /health after the last-seen migration")
    git(repo, "checkout", "-q", "main")
    start = git(repo, "rev-parse", "HEAD")
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production")

    open_tab(page, "Deployments")
    page.get_by_label("Branch or commit").fill("drill/last-seen-breaks-health")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "failed", timeout=90_000)

    steps = page.locator("#next-steps")
    expect(steps).to_contain_text(
        f"A plain reset to {start[:12]} would be refused: the database is at {MIGRATION_BRANCH_REVISION}",
        timeout=10_000,
    )
    expect(steps.get_by_role("button", name="Revert this deploy", exact=True)).to_have_count(0)
    expect(steps.get_by_role("button", name=f"Reset to {start[:12]} (before this deploy)", exact=True)).to_have_count(0)
    expect(steps.get_by_role("button", name="Back up, downgrade, then revert this deploy")).to_be_visible()
    reset = steps.locator("form", has=page.locator('input[name="runbook"][value="downgrade_then_reset"]'))
    reset.get_by_label("Type production to confirm").fill("production")
    reset.get_by_role("button", name=f"Back up, downgrade, then reset to {start[:12]} (before this deploy)").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded", timeout=90_000)
    expect(page.locator("#log")).to_contain_text(f"Running downgrade {MIGRATION_BRANCH_REVISION} -> {HEAD_REVISION}")
    assert git(repo, "rev-parse", "HEAD") == start


def test_refused_by_the_gate_a_keyboard_user_lands_on_its_plan_not_at_the_top(demo_server, page):
    """The gate's plan and its button come back below the deploy form, some twenty-five Tab presses from the top
    of the page: the focus is put on the plan, so the next Tab is its first field."""
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, demo_server.url, "admin", demo_server.admin_password)
    page.goto(demo_server.url + "/targets/production/deployments")
    deployed = page.locator("table.grid tbody tr", has_text="Index sessions by expiry")
    deployed.get_by_role("button", name="Revert").focus()
    page.keyboard.press("Enter")  # its migration is the database's revision: the gate refuses the revert
    refusal = page.locator("#gate-refusal")
    expect(refusal).to_contain_text("The schema gate stopped the revert")
    expect(refusal).to_be_focused()
    page.keyboard.press("Tab")
    expect(refusal.get_by_label("Type production to confirm", exact=True)).to_be_focused()
