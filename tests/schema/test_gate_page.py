"""The gate's refusal of a reset on the deployments page: the plan in words and the combined runbook's button."""

import re

from sqlalchemy import select

from app.auth.roles import Role
from app.extensions import db
from app.jobs.models import Job
from tests.support.apps import post
from tests.support.targets import git

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

    panel = panel_of(refused_reset(client, behind))
    assert f"The schema gate stopped the reset to <code>{behind[:12]}</code>" in panel
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
    from app.targets import flask_db, registry
    from tests.support.targets import write_targets_file

    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(registry.current().open("shop"), "upgrade", "b2000002", None)
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
    from app.targets import flask_db, registry
    from tests.support.targets import write_targets_file

    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(registry.current().open("shop"), "upgrade", "b2000002", None)
    shop.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a')")
    panel = panel_of(refused_reset(as_role(Role.ADMIN), shop.commits["the app"], confirm="shop"))
    assert 'id="gate-backup-refused"' in panel and "Add <code>[targets.shop.backups]</code>" in panel
    assert "<form" not in panel and 'name="skip_backup"' not in panel


def test_a_refused_revert_shows_the_plan_and_the_combined_revert(app, shop_target, as_role):
    from app.targets import flask_db, registry

    with app.app_context():
        flask_db.run(registry.current().open("shop"), "upgrade", "heads", None)
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
