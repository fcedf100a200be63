"""The gate's refusal of a reset on the deployments page: the plan in words and the combined runbook's button."""

import html
import json
import re

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from app.jobs.models import Job
from tests.deployments.test_runbooks import run
from tests.schema.test_gate import upgrade_to_heads
from tests.support.apps import post
from tests.support.pages import form_of
from tests.support.targets import commit, git, write_targets_file
from tests.targetpage.test_views import finished

DEPLOYMENTS = "/targets/shop/deployments"


def refused_reset(client, commit: str, **extra: str):
    form = {"runbook": "reset", "target": "shop", "commit": commit, "next": DEPLOYMENTS, **extra}
    response = post(client, "/jobs", form)
    assert response.status_code == 303 and response.headers["Location"].endswith(DEPLOYMENTS)
    return client.get(DEPLOYMENTS).get_data(as_text=True)


def panel_of(page: str) -> str:
    found = re.search(r'<section [^>]*id="gate-refusal".*?</section>', page, re.S)
    assert found, "no gate refusal on the page"
    return found.group()


def test_a_refused_reset_shows_the_plan_and_the_combined_runbook_for_that_commit(app, shop_target, as_role):
    shop_target.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a'), ('bob', NULL), ('cy', 'c')")
    head = git(shop_target.repo, "rev-parse", "HEAD")
    behind = shop_target.commits["the app"]
    client = as_role(Role.ADMIN)

    page = refused_reset(client, behind)
    panel = panel_of(page)
    assert f"The schema gate stopped the reset to <code>{behind[:12]}</code>" in panel
    assert page.count("drops user.token, holding 2 non-null values") == 2  # the plan and its step: no flash of it
    assert "The database is at b2000002 (add user.token)" in panel
    assert "Plan:</strong> downgrade to a1000001 first (drops user.token, holding 2 non-null values), then reset" in (
        panel
    )
    assert "<strong>destroys:</strong> drops user.token, holding 2 non-null values" in panel
    assert 'name="runbook" value="downgrade_then_reset"' in panel and f'name="commit" value="{behind}"' in panel
    assert 'name="backup_confirmed"' in panel and "Downgrade, then reset" in panel
    assert 'name="confirm"' not in panel  # shop is not protected
    assert 'id="gate-refusal"' not in client.get(DEPLOYMENTS).get_data(as_text=True)  # shown once, not on reload

    # The combined runbook refused too (no backup confirmed): the panel stays, the error beside the box.
    form = {"runbook": "downgrade_then_reset", "target": "shop", "commit": behind, "next": DEPLOYMENTS}
    assert post(client, "/jobs", form).status_code == 303
    panel = panel_of(client.get(DEPLOYMENTS).get_data(as_text=True))
    assert 'id="gate-backup-error"' in panel and "confirm that you have a backup" in panel
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []  # nothing was queued
    assert git(shop_target.repo, "rev-parse", "HEAD") == head and shop_target.versions() == {"b2000002"}

    response = post(client, "/jobs", {**form, "backup_confirmed": "yes"})
    assert response.status_code == 302 and re.search(r"/jobs/\d+$", response.headers["Location"])


def test_other_refusals_and_resets_the_gate_allows_show_no_plan(app, shop_target, as_role):
    client = as_role(Role.ADMIN)
    assert 'id="gate-refusal"' not in refused_reset(client, "0" * 40)  # an unknown commit: the flash says so
    assert 'id="gate-refusal"' not in refused_reset(client, "main", bogus="x")  # a form the runbook cannot take


def test_on_a_protected_target_the_button_asks_for_the_typed_name(app, shop, as_role):
    from app.jobs.engine import current_targets
    from app.targets import flask_db
    from tests.support.targets import write_targets_file

    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    panel = panel_of(refused_reset(as_role(Role.ADMIN), shop.commits["the app"], confirm="shop"))
    assert 'name="confirm"' in panel and "Type <kbd>shop</kbd> to confirm" in panel
    assert "destroys no data" in panel  # no user holds a token yet
    assert 'name="backup_confirmed"' not in panel  # nothing to back up


def test_with_backups_configured_the_panel_says_a_backup_is_taken_first(app, shop_target, shop_backups, as_role):
    shop_target.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a')")
    panel = panel_of(refused_reset(as_role(Role.ADMIN), shop_target.commits["the app"]))
    assert "s database, verified (the downgrade destroys data)" in panel and "first a fresh backup of shop" in panel
    assert 'id="gate-backup-first"' in panel and "Back up, downgrade, then reset" in panel
    assert 'name="backup_confirmed"' not in panel
    assert 'name="skip_backup"' in panel  # shop is not protected: the admin may skip it, explicitly


def test_a_protected_target_without_backups_gets_the_fix_and_no_button(app, shop, as_role):
    from app.jobs.engine import current_targets
    from app.targets import flask_db
    from tests.support.targets import write_targets_file

    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    shop.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a')")
    panel = panel_of(refused_reset(as_role(Role.ADMIN), shop.commits["the app"], confirm="shop"))
    assert 'id="gate-backup-refused"' in panel and "Add <code>[targets.shop.backups]</code>" in panel
    assert 'name="skip_backup"' not in panel
    # no combined button; the override stays an admin's way past, with its own typed name
    assert panel.count("<form") == 1 and 'name="gate_override"' in panel and 'id="gate-override-confirm"' in panel


def test_a_refused_revert_shows_the_plan_and_the_combined_revert(app, shop_target, as_role):
    from app.jobs.engine import current_targets
    from app.targets import flask_db

    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)
    posts = shop_target.commits["posts and index"]
    client = as_role(Role.ADMIN)
    response = post(client, "/jobs", {"runbook": "revert", "target": "shop", "commits": posts, "next": DEPLOYMENTS})
    assert response.status_code == 303
    panel = panel_of(client.get(DEPLOYMENTS).get_data(as_text=True))
    assert f"The schema gate stopped the revert of <code>{posts[:12]}</code>" in panel
    assert "Plan:</strong> downgrade to b2000002 first (destroys no data), then revert" in panel
    assert f"then revert <code>{posts[:12]}</code>, restart and verify code and schema" in panel
    assert 'name="runbook" value="downgrade_then_revert"' in panel and f'name="commits" value="{posts}"' in panel
    assert 'name="backup_confirmed"' not in panel  # the downgrade destroys nothing
    assert "Downgrade, then revert" in panel
    response = post(client, "/jobs", {"runbook": "downgrade_then_revert", "target": "shop", "commits": posts})
    assert response.status_code == 302 and re.search(r"/jobs/\d+$", response.headers["Location"])  # queued


def failed_migrating_deploy(app, shop) -> tuple[str, str, Job]:
    """A deploy that upgraded the schema to e5000005, then failed verification: (start, its commits, the job).

    auto_rollback is on, but the gate keeps the code on the deployed commit, which has the schema's revision.
    """
    upgrade_to_heads(app)
    start = git(shop.repo, "rev-parse", "HEAD")
    git(shop.repo, "checkout", "-q", "-b", "feature/email")
    emails = shop.add_revisions("emails", "e5000005")
    code = shop.repo / "shop.py"
    code.write_text(code.read_text().replace('jsonify(status="healthy")', 'jsonify(status="broken"), 500'))
    deployed = commit(shop.repo, "emails break health")
    git(shop.repo, "checkout", "-q", "main")
    job, _ = run(app, "deploy", "shop", ref="feature/email", auto_rollback="on")
    assert job.state == "failed" and "It was not rolled back automatically" in job.result
    assert git(shop.repo, "rev-parse", "HEAD") == deployed and shop.versions() == {"e5000005"}
    return start, f"{deployed} {emails}", job  # newest first, as the revert takes them


def next_steps(page: str) -> str:
    found = re.search(r'<section class="panel" id="next-steps">.*?</section>', page, re.S)
    assert found, "no next steps on the job page"
    return found.group()


def test_after_a_deploy_the_gate_kept_its_next_steps_offer_downgrade_first_not_a_refused_reset(
    app, runner, shop_target, as_role
):
    """Revert and reset to the start commit would leave the code behind e5000005: the gate refuses both."""
    start, brought, job = failed_migrating_deploy(app, shop_target)
    write_targets_file(app, shop_target.toml(protected=True))  # so the offered runbook asks for the typed name
    admin = as_role(Role.ADMIN)
    steps = next_steps(admin.get(f"/jobs/{job.id}").get_data(as_text=True))
    assert ">Revert this deploy</button>" not in steps
    assert f">Reset to {start[:12]} (before this deploy)</button>" not in steps
    assert (
        f"A plain reset to <code>{start[:12]}</code> would be refused: the database is at e5000005 "
        "(add user.email), which commit" in steps
    )
    assert "Plan: downgrade to d4000004 first (destroys no data), then reset." in steps
    reset = form_of(steps, f"Downgrade, then reset to {start[:12]} (before this deploy)")
    assert 'name="runbook" value="downgrade_then_reset"' in reset and f'name="commit" value="{start}"' in reset
    assert f'name="next" value="/jobs/{job.id}"' in reset and "Type <kbd>shop</kbd> to confirm" in reset
    revert = form_of(steps, "Downgrade, then revert this deploy")
    assert 'name="runbook" value="downgrade_then_revert"' in revert and f'name="commits" value="{brought}"' in revert
    assert 'id="next-revert-confirm"' in revert and 'id="next-reset-confirm"' in reset  # one page, two typed names

    operator = next_steps(as_role(Role.OPERATOR).get(f"/jobs/{job.id}").get_data(as_text=True))
    assert (
        "<form" not in operator
        and "A plain revert of this deploy would be refused: the database is at e5000005" in operator
    )
    assert "An admin can downgrade, then revert." in operator

    form = {"runbook": "downgrade_then_reset", "target": "shop", "commit": start, "next": f"/jobs/{job.id}"}
    refused = post(admin, "/jobs", form)  # no typed name: back to the job page, the error beside the field
    assert refused.status_code == 303 and refused.headers["Location"].endswith(f"/jobs/{job.id}")
    steps = next_steps(admin.get(f"/jobs/{job.id}").get_data(as_text=True))
    assert 'id="next-reset-confirm-error"' in form_of(
        steps, f"Downgrade, then reset to {start[:12]} (before this deploy)"
    )

    response = post(admin, "/jobs", {**form, "confirm": "shop"})
    assert response.status_code == 302 and finished(app, response.headers["Location"]) == "succeeded"
    assert git(shop_target.repo, "rev-parse", "HEAD") == start and shop_target.versions() == {"d4000004"}


def test_the_refusal_offers_admins_the_override_it_speaks_of(app, shop, as_role):
    """The refusal says an admin can override the gate with a typed reason: the panel holds that form, for the
    refused commit; a wrong typed name brings it back open, with what was typed and the error beside it."""
    from app.jobs.engine import current_targets
    from app.targets import flask_db

    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    behind = shop.commits["the app"]
    client = as_role(Role.ADMIN)
    panel = panel_of(refused_reset(client, behind, confirm="shop"))
    assert "<summary>Or reset anyway, past the gate</summary>" in panel
    override = panel[panel.index('id="gate-override"') :]
    assert "<details" in panel and "open" not in override[: override.index(">")]
    assert 'name="runbook" value="reset"' in override and f'name="commit" value="{behind}"' in override
    assert 'name="gate_override" required' in override and "Reset anyway</button>" in override
    # its own name, apart from the other form's (the words after "confirm" are for screen readers)
    assert 'Type <kbd>shop</kbd> to confirm<span class="sr-only"> the override</span>' in override
    assert 'id="gate-override-confirm" name="confirm" value=""' in override, (
        "the reset's typed name confirms nothing here"
    )

    form = {"runbook": "reset", "target": "shop", "commit": behind, "next": DEPLOYMENTS}
    reason = "the old code ignores user.token; verified by hand"
    refused = post(client, "/jobs", {**form, "gate_override": reason, "confirm": "shpo"})
    assert refused.status_code == 303
    override = panel_of(client.get(DEPLOYMENTS).get_data(as_text=True))
    override = override[override.index('id="gate-override"') :]
    assert override.startswith('id="gate-override" open>') and f'value="{reason}"' in override
    assert 'id="gate-override-confirm-error"' in override
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []

    started = post(client, "/jobs", {**form, "gate_override": reason, "confirm": "shop"})
    assert started.status_code == 302 and re.search(r"/jobs/\d+$", started.headers["Location"])
    with app.app_context():
        (job,) = db.session.scalars(select(Job)).all()
        assert (job.runbook, job.params["gate_override"]) == ("reset", reason)


def test_a_refusal_without_a_plan_says_why_and_still_offers_admins_the_override(app, shop, as_role):
    """The database at a revision no commit has: nothing can take it down, so no combined runbook; the panel gives
    the gate's fix, and the override it speaks of is here too (it was only on the generic job form)."""
    from app.jobs.engine import current_targets
    from app.targets import flask_db

    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    shop.execute("UPDATE alembic_version SET version_num = 'f9999999'")
    behind = shop.commits["the app"]

    panel = panel_of(refused_reset(as_role(Role.ADMIN), behind))
    assert "The database is at f9999999, which neither commit" in panel and "already behind the schema" in panel
    assert "No downgrade Rewind can run:</strong>" in panel and "deploy a commit that has this revision" in panel
    assert "downgrade_then_reset" not in panel and 'id="gate-plan-steps"' not in panel
    assert 'name="gate_override" required' in panel and "Reset anyway</button>" in panel
    page = refused_reset(as_role(Role.ADMIN), behind)
    flash = page[page.index('class="flash flash-error"') : page.index("</p>", page.index('class="flash flash-error"'))]
    # said once: the flash in brief, the panel in full
    assert f"the schema gate stopped the reset to {behind[:12]}: why, and the way past it, are said below" in flash
    assert page.count("deploy a commit that has this revision") == 1, page
    with app.app_context():  # the refused form's audit row has the gate's words in full
        rows = db.session.scalars(select(AuditEvent).filter_by(action="job.queued")).all()
    reasons = [json.loads(e.details)["reason"] for e in rows]
    assert "the code is already behind the schema. No downgrade Rewind can run: no commit" in reasons[-1], reasons

    reason = "the revision was stamped by hand; the old code does not read its table"
    admin = as_role(Role.ADMIN)
    form = {"runbook": "reset", "target": "shop", "commit": behind, "next": DEPLOYMENTS, "gate_override": reason}
    started = post(admin, "/jobs", form)
    assert started.status_code == 302 and re.search(r"/jobs/\d+$", started.headers["Location"])
    with app.app_context():
        (job,) = db.session.scalars(select(Job)).all()
        assert (job.runbook, job.params["gate_override"]) == ("reset", reason)


def test_a_gate_that_cannot_compare_says_why_and_offers_admins_the_override(app, shop, as_role):
    """The database unreadable: the refusal's panel says why, and holds the override (no plan, no combined form)."""
    from pathlib import Path

    write_targets_file(app, shop.toml())
    Path(shop.url.removeprefix("sqlite:///")).write_bytes(b"not a database, " * 64)
    behind = shop.commits["the app"]

    page = refused_reset(as_role(Role.ADMIN), behind)
    panel = panel_of(page)
    assert "The gate cannot compare the code with the database: reading " in panel and "not a database" in panel
    assert f"<strong>Error:</strong> the schema gate stopped the reset to {behind[:12]}: why, and the way" in page
    assert page.count("not a database") == 1  # the panel says why; the flash does not say it again
    assert "<strong>Fix that first</strong>; an admin can override the gate if the reset cannot wait." in panel
    assert "downgrade_then_reset" not in panel and 'name="gate_override" required' in panel


def test_the_combined_runbook_from_a_page_drawn_before_the_head_moved_is_refused_and_changes_nothing(
    app, shop_target, as_role
):
    """Review: "Downgrade, then reset" from a refusal drawn before a commit landed would downgrade revisions the
    page never listed and discard commits nobody saw: its form carries the head it showed, as Reset's does."""
    head = git(shop_target.repo, "rev-parse", "HEAD")
    behind = shop_target.commits["the app"]
    client = as_role(Role.ADMIN)
    panel = panel_of(refused_reset(client, behind, seen_head=head))
    fields = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form_of(panel, "Downgrade, then reset"))
    )
    assert fields["runbook"] == "downgrade_then_reset" and fields["seen_head"] == head

    moved = commit(shop_target.repo, "A hot-fix on the server", **{"HOTFIX.md": "fixed by hand\n"})
    response = post(client, "/jobs", {**fields, "backup_confirmed": "yes"}, follow_redirects=True)
    page = html.unescape(response.get_data(as_text=True))
    assert f"shop's head is now {moved[:12]}" in page and f"not {head[:12]} as the page showed" in page, page
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []  # nothing was queued
    assert git(shop_target.repo, "rev-parse", "HEAD") == moved and shop_target.versions() == {"b2000002"}


def test_a_revert_that_splits_the_migrations_offers_the_revert_of_both_in_one_job(app, shop_target, as_role):
    """The gate's fix says to revert the commit that added the kept migration too, in the same revert: the page
    has one Revert per commit, so the panel offers that revert of both, and the gate then judges the two together."""
    tokens, posts = shop_target.commits["tokens"], shop_target.commits["posts and index"]
    head = git(shop_target.repo, "rev-parse", "HEAD")
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "revert", "target": "shop", "commits": tokens, "next": DEPLOYMENTS})
    assert response.status_code == 303
    panel = panel_of(client.get(DEPLOYMENTS).get_data(as_text=True))
    assert f"revert {posts[:7]} (which added c3aaaaa3_x.py) too, in the same revert" in panel
    assert f"<strong>Plan:</strong> revert <code>{posts[:12]}</code> with it, in one job" in panel
    both = form_of(panel, f"Revert {tokens[:12]} and {posts[:12]} together")
    assert 'name="runbook" value="revert"' in both and f'name="commits" value="{tokens} {posts}"' in both
    assert f'name="seen_head" value="{head}"' in both
    assert "Fix that first" not in panel
    fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', both))
    judged = post(client, "/jobs", {k: v for k, v in fields.items() if k != "csrf_token"})
    assert judged.status_code == 303  # the two together fall behind the schema: the next refusal has a plan
    panel = panel_of(client.get(DEPLOYMENTS).get_data(as_text=True))
    assert "Plan:</strong> downgrade to a1000001 first (destroys no data), then revert." in panel
    assert f"then revert <code>{tokens[:12]}, {posts[:12]}</code>, restart and verify code and schema" in panel
    assert git(shop_target.repo, "rev-parse", "HEAD") == head


def test_an_operator_s_refused_revert_says_who_can_carry_out_the_plan(app, shop_target, as_role):
    """An operator reverts; the gate's plan starts with a downgrade, which is for admins. The panel showed the plan
    and no way on: it says who can run it (as the job page's next steps do), and offers the operator no form."""
    from app.jobs.engine import current_targets
    from app.targets import flask_db

    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)
    posts = shop_target.commits["posts and index"]
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "revert", "target": "shop", "commits": posts, "next": DEPLOYMENTS})
    assert response.status_code == 303
    panel = panel_of(client.get(DEPLOYMENTS).get_data(as_text=True))
    assert "Plan:</strong> downgrade to b2000002 first (destroys no data), then revert" in panel
    assert "<form" not in panel
    assert (
        "The downgrade is for admins: an admin can downgrade, then revert, in one job (or revert past the gate "
        "with a reason)."
    ) in " ".join(panel.split())
