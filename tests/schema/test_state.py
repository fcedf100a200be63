"""Migration state and drift in words: the Migrations tab, the list page, `flask rewind schema status`."""

from app.auth.roles import Role
from app.jobs.engine import current_targets
from app.schema.state import CODE_BEHIND, SCHEMA_BEHIND, SEVERAL_HEADS, read_state
from app.targets import flask_db
from tests.conftest import wait_for
from tests.schema.conftest import both_target_databases
from tests.support.apps import post
from tests.support.jobs import finished
from tests.support.targets import write_targets_file


def state_of(app):
    with app.app_context():
        return read_state(current_targets().open("shop"), commits=True)


def status(app):
    result = app.test_cli_runner().invoke(args=["rewind", "schema", "status", "shop"])
    return result.exit_code, result.output


@both_target_databases
def test_drift_both_ways_and_a_match(app, shop):
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)

    state = state_of(app)  # the code has the branch and its merge; the database stops at tokens
    assert [d.kind for d in state.drift] == [SCHEMA_BEHIND]
    assert {r.id: r.state for r in state.rows} == {
        "d4000004": "pending",
        "c3bbbbb3": "pending",
        "c3aaaaa3": "pending",
        "b2000002": "applied",
        "a1000001": "applied",
    }
    code, out = status(app)
    assert code == 1
    assert "current: b2000002" in out and "heads:   d4000004" in out
    assert "the schema is behind the code" in out and "what to do: Upgrade the database" in out

    shop.execute("UPDATE alembic_version SET version_num = 'ffff0000'")  # a revert deleted its file
    state = state_of(app)
    assert [d.kind for d in state.drift] == [CODE_BEHIND]
    assert state.rows[0].id == "ffff0000" and state.rows[0].state == "unknown"
    code, out = status(app)
    assert code == 1 and "the code is behind the schema" in out

    shop.execute("UPDATE alembic_version SET version_num = 'd4000004'")
    assert state_of(app).drift == []
    code, out = status(app)
    assert code == 0 and "code and schema match" in out


def test_several_heads_is_drift(app, shop):
    shop.add_revisions("a second head", "e5000005", down="c3aaaaa3")
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "heads", None)
    state = state_of(app)
    assert state.heads == ["d4000004", "e5000005"]
    assert [d.kind for d in state.drift] == [SEVERAL_HEADS]
    assert "flask db merge heads" in state.drift[0].fix


def test_the_migrations_tab_shows_states_commits_and_drift(app, shop, as_role):
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    page = as_role(Role.VIEWER).get("/targets/shop/migrations")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="rev-c3aaaaa3" data-state="pending"' in text
    assert 'id="rev-b2000002" data-state="applied"' in text
    assert shop.commits["tokens"][:7] in text  # the commit that added b2000002's file
    assert "the schema is behind the code" in text
    assert "Review the downgrade" not in text  # viewers see no buttons
    listing = as_role(Role.VIEWER).get("/migrations").get_data(as_text=True)
    assert "drift" in listing and "b2000002" in listing


def test_a_target_without_migrations_or_with_a_broken_folder_still_renders(app, shop, as_role):
    page = as_role(Role.VIEWER).get("/targets/staging/migrations")
    assert page.status_code == 200 and "no migrations configured" in page.get_data(as_text=True)
    unconfigured = app.test_cli_runner().invoke(args=["rewind", "schema", "status", "staging"])
    assert unconfigured.exit_code == 2
    assert unconfigured.stderr == "rewind: staging: no migrations configured (database.migrations)\n"
    write_targets_file(app, shop.toml())
    (shop.migrations / "versions" / "b2000002_x.py").unlink()
    page = as_role(Role.VIEWER).get("/targets/shop/migrations")
    assert page.status_code == 200
    assert "names b2000002 as its parent, but no migration file has it" in page.get_data(as_text=True)
    result = app.test_cli_runner().invoke(args=["rewind", "schema", "status", "shop"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith("rewind: shop: cannot read the migration state: ") and "b2000002" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_bad_revision_on_the_downgrade_confirmation_is_a_clear_400(app, shop, as_role):
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    page = as_role(Role.ADMIN).get("/targets/shop/migrations/downgrade?revision=c3")
    assert page.status_code == 400
    assert "ambiguous" in page.get_data(as_text=True)


def test_the_overview_and_dashboard_card_say_where_the_schema_stands(app, shop, as_role):
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    client = as_role(Role.VIEWER)
    for url in ("/targets/shop", "/dashboard/cards"):
        page = client.get(url).get_data(as_text=True)
        assert '<span class="badge badge-bad">at b2000002 — ' in page and "the schema is behind the code" in page
    shop.execute("UPDATE alembic_version SET version_num = 'd4000004'")
    assert "at d4000004, matching the deployed code" in client.get("/targets/shop").get_data(as_text=True)
    assert '<option value="schema">' in client.get("/targets/shop/timeline").get_data(as_text=True)


def test_on_a_protected_target_the_downgrade_forms_ask_for_the_name_with_a_visible_label(app, shop, as_role):
    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    page = as_role(Role.ADMIN).get("/targets/shop/migrations").get_data(as_text=True)
    for form_id, field_id in (("downgrade-then-reset", "dtr-confirm"), ("downgrade-then-revert", "dtv-confirm")):
        form = page.split(f'id="{form_id}"')[1].split("</form>")[0]
        assert f'<label for="{field_id}">Type <kbd>shop</kbd> to confirm</label>' in form  # not a cut-off placeholder
        assert f'id="{field_id}" name="confirm"' in form and "placeholder" not in form.split("Type <kbd>")[1]


def test_on_a_protected_target_a_wrong_name_on_the_downgrade_page_comes_back_beside_its_field(app, shop, as_role):
    """The downgrade's own page asks for the name as every other form does: the browser checks it first, and a
    name the server refuses comes back beside the field, as typed, on the same page."""
    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    client = as_role(Role.ADMIN)
    url = "/targets/shop/migrations/downgrade?revision=a1000001"
    page = client.get(url).get_data(as_text=True)
    assert '<label for="confirm">Type <kbd>shop</kbd> to confirm</label>' in page
    assert 'id="confirm" name="confirm" value="" size="12" required pattern="shop"' in page
    fields = {"runbook": "schema_downgrade", "target": "shop", "revision": "a1000001", "next": url}
    refused = post(client, "/jobs", {**fields, "confirm": "shpo"})
    assert refused.status_code == 303 and refused.headers["Location"] == url
    again = client.get(url).get_data(as_text=True)
    field = again.split('id="confirm"')[1].split(">")[0]
    assert 'value="shpo"' in field and 'aria-invalid="true" aria-describedby="confirm-error"' in field
    assert '<span class="field-error" id="confirm-error">shop is protected: type its name, shop, to confirm' in again
    assert shop.versions() == {"b2000002"}


def test_the_downgrade_form_asks_before_it_goes_naming_the_target_and_the_revision(app, shop, as_role):
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    client = as_role(Role.ADMIN)

    def form() -> str:
        page = client.get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
        return page.split('<form id="downgrade-form"')[1].split(">")[0]

    assert 'data-confirm="Downgrade shop\N{RIGHT SINGLE QUOTATION MARK}s database to a1000001?"' in form()
    shop.execute("INSERT INTO \"user\" (name, token) VALUES ('ann', 'a'), ('bob', NULL), ('cy', 'c')")
    assert (
        'data-confirm="Downgrade shop\N{RIGHT SINGLE QUOTATION MARK}s database to a1000001? It destroys data: '
        'drops user.token, holding 2 non-null values."'
    ) in form()


def test_the_upgrade_form_is_offered_only_when_a_revision_is_pending(app, shop, as_role):
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/shop/migrations").get_data(as_text=True)
    assert 'for="upgrade-revision">Upgrade to</label>' in page
    upgrade = page.split('value="schema_upgrade"')[1].split("</form>")[0]
    # a refusal comes back here, as from every sibling form, not wherever the Referer header says (QA)
    assert 'name="next" value="/targets/shop/migrations"' in upgrade
    assert "Downgrades are for admins: a downgrade can destroy data." in page  # why an operator has no such button
    for role in (Role.ADMIN, Role.VIEWER):
        assert 'id="downgrade-by-admin"' not in as_role(role).get("/targets/shop/migrations").get_data(as_text=True)
    # a viewer, with drift and "What to do: Upgrade…" but no button, is told who can (QA: nothing was said)
    viewer = as_role(Role.VIEWER).get("/targets/shop/migrations").get_data(as_text=True)
    assert 'value="schema_upgrade"' not in viewer
    assert "Your role reads only: upgrades are for operators, downgrades for admins." in viewer
    for role in (Role.ADMIN, Role.OPERATOR):
        assert 'id="schema-read-only"' not in as_role(role).get("/targets/shop/migrations").get_data(as_text=True)
    shop.execute("UPDATE alembic_version SET version_num = 'd4000004'")
    page = client.get("/targets/shop/migrations").get_data(as_text=True)
    assert "code and schema match" in page
    assert 'value="schema_upgrade"' not in page  # at the heads: no button that can only be refused


def test_a_refused_downgrade_then_reset_keeps_what_was_typed_with_the_reason_beside_it(app, shop, as_role):
    from tests.support.apps import post

    write_targets_file(app, shop.toml(protected=True))
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    client = as_role(Role.ADMIN)
    form = {"runbook": "downgrade_then_reset", "target": "shop", "commit": "zzzz", "confirm": "shop"}
    response = post(client, "/jobs", {**form, "next": "/targets/shop/migrations"})
    assert response.status_code == 303 and response.headers["Location"] == "/targets/shop/migrations"
    page = client.get("/targets/shop/migrations").get_data(as_text=True)
    reset = page.split('id="downgrade-then-reset"')[1].split("</form>")[0]
    assert 'name="next" value="/targets/shop/migrations"' in reset
    assert 'value="zzzz" aria-invalid="true" aria-describedby="dtr-commit-error"' in reset  # not lost
    assert "&#39;zzzz&#39; is not a commit id" in reset.split('id="dtr-commit-error">')[1]
    assert 'id="dtr-confirm" name="confirm" value="shop"' in reset
    revert = page.split('id="downgrade-then-revert"')[1].split("</form>")[0]
    assert "zzzz" not in revert and 'id="dtv-confirm" name="confirm" value=""' in revert  # the other one untouched


def test_status_of_an_unknown_target_is_refused_naming_the_known_ones(app):
    result = app.test_cli_runner().invoke(args=["rewind", "schema", "status", "mars"])
    assert result.exit_code == 6  # refused, as every command refuses a name that does not exist
    assert result.stderr.startswith("rewind: there is no target 'mars' (known targets:") and result.stdout == ""


def test_while_a_job_runs_on_the_target_its_drift_is_folded_under_the_busy_notice(app, runner, shop, as_role):
    """Between a downgrade and its reset the schema is behind the code by the job's own doing: an Upgrade button
    offered as the fix would undo the job's work."""
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    client = as_role(Role.OPERATOR)
    job_id = int(post(client, "/jobs", {"runbook": "test.sleep", "target": "shop"}).headers["Location"].split("/")[-1])
    try:
        wait_for(lambda: "(Sleep on a target, running)" in client.get("/targets/shop/migrations").get_data(True))
        text = client.get("/targets/shop/migrations").get_data(as_text=True)
        folded = text.index('<details class="mid-change">')
        assert text.index('id="busy-notice"') < folded < text.index("the schema is behind the code")
        assert text.index("Upgrade to the heads") < text.index("</details>", folded)
        # and greyed, saying which job to wait for, as every button the busy target would refuse
        words = f'<span class="hint why-disabled">Wait for job #{job_id} (Sleep on a target, running) to end.'
        assert f'<button type="submit" disabled>Upgrade to the heads</button> {words}' in text
        assert f'<button type="submit" disabled>Upgrade</button> {words}' in text
        admin = as_role(Role.ADMIN).get("/targets/shop/migrations").get_data(as_text=True)
        for label in ("Downgrade then reset", "Downgrade then revert"):
            assert f'<button type="submit" class="danger" disabled>{label}</button> {words}' in admin, label
    finally:
        post(client, f"/jobs/{job_id}/cancel", {})
        finished(app, job_id)
    text = client.get("/targets/shop/migrations").get_data(as_text=True)
    assert "mid-change" not in text and "the schema is behind the code" in text


def test_while_a_job_runs_on_the_target_the_downgrade_review_greys_its_button_and_says_which_job(
    app, runner, shop, as_role
):
    """QA: the tab greyed every button the busy target would refuse, but the downgrade's review page (a page of the
    same tab) offered "Downgrade" as usual; pressed, it was refused as busy."""
    write_targets_file(app, shop.toml())
    with app.app_context():
        flask_db.run(current_targets().open("shop"), "upgrade", "b2000002", None)
    client = as_role(Role.ADMIN)
    job_id = int(post(client, "/jobs", {"runbook": "test.sleep", "target": "shop"}).headers["Location"].split("/")[-1])
    try:
        wait_for(lambda: "(Sleep on a target, running)" in client.get("/targets/shop/migrations").get_data(True))
        text = client.get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
        words = f'<span class="hint why-disabled">Wait for job #{job_id} (Sleep on a target, running) to end.'
        assert f'<button type="submit" class="danger" disabled>Downgrade</button> {words}' in text
        assert 'id="busy-notice"' in text
    finally:
        post(client, f"/jobs/{job_id}/cancel", {})
        finished(app, job_id)
    text = client.get("/targets/shop/migrations/downgrade?revision=-1").get_data(as_text=True)
    assert '<button type="submit" class="danger">Downgrade</button>' in text and "why-disabled" not in text
