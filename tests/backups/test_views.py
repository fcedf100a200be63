"""The Backups tab, the overview, the buttons' role checks and the CLI, on a real catalog folder and GnuPG home."""

from __future__ import annotations

import html
import io
import json
import os
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.backups.catalog import Catalog
from app.extensions import db
from app.jobs.engine import current_targets, engine
from app.jobs.models import Job
from tests.backups.conftest import RECIPIENT
from tests.support.apps import post
from tests.support.jobs import finished
from tests.support.pages import form_of, names, repeated_names
from tests.support.ports import free_port
from tests.support.targets import write_targets_file

OLD = "backup_20200101_000000.sqlite.gpg"


@pytest.fixture
def shop(app, tmp_path, gpg_homes):
    """A SQLite target with one old verified backup (made by the written procedure) and one pre-restore copy."""
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "shop.db") as conn:
        conn.execute("CREATE TABLE t (id int)")
    (data / "shop.db.pre_restore_20240101000000").write_bytes((data / "shop.db").read_bytes())
    folder = tmp_path / "backups"
    folder.mkdir()
    out = io.BytesIO()
    gpg_homes[0].encrypt((data / "shop.db").read_bytes(), out, [RECIPIENT])
    (folder / OLD).write_bytes(out.getvalue())
    catalog = Catalog(folder)
    catalog.record_verification(catalog.get(OLD), how="restore-test", ok=True, detail="restores", job_id=None)

    def write(protected: bool = False, extra: str = "") -> None:
        write_targets_file(
            app,
            f"""{extra}
[targets.shop]
protected = {str(protected).lower()}
[targets.shop.repo]
path = "{tmp_path}"
[targets.shop.database]
url = "sqlite:///{data / "shop.db"}"
key_tables = ["t"]
[targets.shop.backups]
dir = "{folder}"
gpg_home = "{gpg_homes[0].home}"
recipients = ["{RECIPIENT}"]
rpo_minutes = 60
""",
        )

    write()
    return write


def test_the_tab_lists_backups_with_state_and_a_late_rpo(as_role, shop, tmp_path):
    page = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    assert OLD in page and "not made by Rewind" in page
    assert 'class="badge badge-ok">verified' in page
    assert "older than the RPO" in page and "badge-bad" in page  # the newest verified backup is years old
    assert (
        '<code>shop.db.pre_restore_20240101000000</code> — pre-restore, <time datetime="2024-01-01T00:00:00Z"' in page
    )
    assert re.search(rf"Last restore-tested backup: <code>{re.escape(OLD)}</code>, tested 0 min ago", page)
    assert names(page) == ["Sign out"] and "Back up now" not in page  # a viewer sees, never acts
    assert re.search(r'<div class="table-scroll">\s*<table class="grid backups">', page)  # no page-wide scroll
    # a long name breaks in its cell, after an underscore where it can (static/css); copied, it is the name
    assert '<code class="file">backup_<wbr>20200101_<wbr>000000.sqlite.gpg</code>' in page
    size = (tmp_path / "backups" / OLD).stat().st_size
    assert f'<td class="nowrap">{size} B</td>' in page and "0.0 MB" not in page  # not rounded to nothing
    assert not re.search(r"\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", page)  # no raw ISO stamp in the State column
    assert re.search(r'<span class="hint">\w[\w-]*, <time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', page)
    overview = as_role(Role.VIEWER).get("/backups").get_data(as_text=True)
    assert "/targets/shop/backups" in overview and "late" in overview


def test_admin_sees_restore_with_a_confirmation_naming_target_and_backup(as_role, shop, tmp_path):
    shop(protected=True)
    second = "backup_20200102_000000.sqlite.gpg"
    (tmp_path / "backups" / second).write_bytes((tmp_path / "backups" / OLD).read_bytes())
    page = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    assert re.search(rf'data-confirm="Restore {re.escape(OLD)} on shop\?', page)
    assert "Type <kbd>shop</kbd> to confirm" in page  # protected: the name must be typed
    assert "Undo restore<" in page and "Back up now" in page
    # every row's buttons and typed names say which backup or copy they act on (QA: a screen reader's list of them)
    assert repeated_names(page) == {}
    copy = "shop.db.pre_restore_20240101000000"
    assert {f"Restore {second}", f"Undo restore {copy}", f"Back up this copy {copy}"} <= set(names(page))
    assert f"Type shop to confirm the undo to {copy}" in names(page, "label")


def test_the_restore_question_warns_of_a_backup_that_is_not_known_good(as_role, shop, tmp_path):
    """The dialog is what a person reads before saying yes: a backup that failed or was never verified says so there."""
    folder = tmp_path / "backups"
    (folder / "backup_20210101_000000.sqlite.gpg").write_bytes((folder / OLD).read_bytes())
    (folder / "backup_20220101_000000.sqlite.gpg").write_bytes(b"not OpenPGP at all")
    catalog = Catalog(folder)
    failed = catalog.get("backup_20220101_000000.sqlite.gpg")
    catalog.record_verification(failed, how="quick", ok=False, detail="not encrypted", job_id=None)
    page = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    questions = dict(re.findall(r'data-confirm="Restore (\S+) on shop\? ([^"]*)"', page))
    assert questions["backup_20220101_000000.sqlite.gpg"].startswith("It failed its last verification: the restore")
    assert questions["backup_20210101_000000.sqlite.gpg"].startswith("It was never verified: the restore checks")
    assert questions[OLD].startswith("It is restored into a scratch database first"), "a verified one: no warning"


def test_the_restore_question_says_the_app_is_not_healthy_now(app, as_role, shop):
    """A restore swaps back unless the app is healthy after it: an app already failing (the monitor's last answer)
    is said in the question, so a cause elsewhere is looked at first."""
    admin = as_role(Role.ADMIN)
    page = admin.get("/targets/shop/backups").get_data(as_text=True)
    assert "is not healthy now" not in page  # no health check: nothing to say
    shop(extra=f'[targets.shop.health]\nurl = "http://127.0.0.1:{free_port()}/health"')  # nothing listens there
    with app.app_context():
        engine(app).health.probe_all()
    page = admin.get("/targets/shop/backups").get_data(as_text=True)
    question = re.search(rf'data-confirm="Restore {re.escape(OLD)} on shop\? ([^"]*)"', page).group(1)
    assert question.startswith("shop is not healthy now (connection refused): after the swap it must be, or the")


def test_an_operator_cannot_restore(app, as_role, shop):
    client = as_role(Role.OPERATOR)
    response = post(client, "/jobs", {"runbook": "restore_backup", "target": "shop", "backup": OLD})
    assert response.status_code == 403
    assert "it needs the admin role to run “Restore a backup”" in response.get_data(as_text=True)  # its name, not id
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []


@pytest.mark.parametrize(
    "bad, said",
    [
        ("../backups/" + OLD, "is not a backup name: a backup is a file name of the backup folder ending in .gpg"),
        ("/etc/passwd", "is not a backup name"),
        ("nope.sqlite.gpg", "there is no backup nope.sqlite.gpg in "),
    ],
)
def test_a_backup_name_outside_the_catalog_is_refused_and_audited(app, as_role, shop, bad, said):
    response = post(as_role(Role.ADMIN), "/jobs", {"runbook": "restore_backup", "target": "shop", "backup": bad})
    assert response.status_code == 400
    assert said in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []
        refusal = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert refusal.action == "job.queued" and refusal.outcome == "denied"


def test_a_protected_target_needs_its_name_typed(app, as_role, shop):
    shop(protected=True)
    client = as_role(Role.ADMIN)
    response = post(client, "/jobs", {"runbook": "restore_backup", "target": "shop", "backup": OLD, "confirm": "x"})
    assert response.status_code == 400 and "type its name" in response.get_data(as_text=True)
    response = post(client, "/jobs", {"runbook": "restore_backup", "target": "shop", "backup": OLD, "confirm": "shop"})
    assert response.status_code == 302
    with app.app_context():
        (job,) = db.session.scalars(select(Job)).all()
        assert (job.runbook, job.params["backup"]) == ("restore_backup", OLD)


def test_the_cleanup_button_keeps_unsaved_copies_and_a_protected_target_needs_its_name_typed(app, as_role, shop):
    shop(protected=True)
    client = as_role(Role.ADMIN)
    page = client.get("/targets/shop/backups").get_data(as_text=True)
    (form,) = [f for f in page.split("<form")[1:] if 'value="cleanup_restores"' in f]
    assert 'name="spare_unsaved" value="yes"' in form and "Type <kbd>shop</kbd> to confirm" in form
    assert "no backup holds is kept" in form
    assert 'class="danger">Drop copies older than' in form  # it drops databases: it looks as destructive as it is
    fields = {"runbook": "cleanup_restores", "target": "shop", "older_than_hours": "24"}
    response = post(client, "/jobs", fields)
    assert response.status_code == 400 and "type its name" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []
    response = post(client, "/jobs", {**fields, "confirm": "shop"})
    assert response.status_code == 302
    with app.app_context():
        (job,) = db.session.scalars(select(Job)).all()
        assert job.params["spare_unsaved"] == "yes"  # the default: copies no backup holds are kept


def test_a_backup_left_unfinished_is_offered_to_the_clean_up_when_no_restore_copy_is_there(
    app, as_role, shop, tmp_path
):
    """The tab names the half-written file and says the clean-up removes it: the button must then be there."""
    (tmp_path / "data" / "shop.db.pre_restore_20240101000000").unlink()
    left = tmp_path / "backups" / ".shop_20240101_000000.db.gpg.partial"
    left.write_bytes(b"x" * 4096)
    an_hour_ago = left.stat().st_mtime - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    page = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    assert "a backup left unfinished" in page and "clean-up" in page
    (form,) = [f for f in page.split("<form")[1:] if 'value="cleanup_restores"' in f]
    assert 'class="danger">Remove 1 unfinished backup file<' in form
    assert "Remove 1 unfinished backup file of shop?" in form
    assert 'value="cleanup_restores"' not in as_role(Role.OPERATOR).get("/targets/shop/backups").get_data(as_text=True)
    left.unlink()
    page = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    assert 'value="cleanup_restores"' not in page, "nothing to clean up, no button"


def test_cli_lists_the_catalog_and_the_rpo(app, shop, tmp_path):
    """A late RPO is a check that found a problem (exit 1), as drift is for `schema status`: cron can alert on it."""
    result = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert result.exit_code == 1, result.output
    assert OLD in result.output and "verified" in result.output and "not made by Rewind" in result.output
    assert result.output.splitlines()[-1].endswith("RPO 60 min: LATE")
    folder = tmp_path / "backups"
    fresh = f"backup_{datetime.now(UTC):%Y%m%d_%H%M%S}.sqlite.gpg"
    (folder / fresh).write_bytes((folder / OLD).read_bytes())
    Catalog(folder).record_verification(Catalog(folder).get(fresh), how="quick", ok=True, detail="ok", job_id=None)
    on_time = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert on_time.exit_code == 0, on_time.output
    assert (
        on_time.output.splitlines()[-1].startswith(f"newest verified: {fresh} (") and "RPO 60 min: ok" in on_time.output
    )
    missing = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "nowhere"])
    assert missing.exit_code == 6 and missing.stderr.startswith("rewind: there is no target 'nowhere'")
    assert missing.stdout == ""


def test_cli_of_a_target_without_backups_says_how_to_add_them(app):
    result = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "staging"])
    assert result.exit_code == 6 and result.stdout == ""
    assert result.stderr == "rewind: staging has no backups configured — add [targets.staging.backups] with dir = …\n"


def test_the_overview_and_dashboard_card_show_the_backup_age_against_the_rpo(as_role, shop):
    """Late is said in words as well as in red (QA: the card read "newest verified 7 min ago (RPO 5 min)" in a red
    badge, and only the colour, or the sum, said the RPO was missed)."""
    client = as_role(Role.VIEWER)
    for url in ("/targets/shop", "/dashboard/cards"):
        page = client.get(url).get_data(as_text=True)
        line = re.search(r'<span class="badge badge-(\w+)">(newest verified [^<]*)', page)
        assert line and line.group(1) == "bad", (url, page)  # years old: red
        assert re.fullmatch(rf"newest verified \d+ d ago, older than the RPO of 60 min: {OLD}; .*", line.group(2)), line
    assert '<option value="backups">' in client.get("/targets/shop/timeline").get_data(as_text=True)


def verified_at(folder, when: datetime) -> str:
    """A verified backup named for `when` (a copy of OLD's file): its name."""
    name = f"backup_{when:%Y%m%d_%H%M%S}.sqlite.gpg"
    (folder / name).write_bytes((folder / OLD).read_bytes())
    Catalog(folder).record_verification(Catalog(folder).get(name), how="quick", ok=True, detail="ok", job_id=None)
    return name


def test_a_backup_dated_in_the_future_is_of_unknown_age_not_the_freshest(app, as_role, shop, tmp_path):
    """A clock skew between hosts: a verified backup named 61 minutes ahead showed "0 min old", within the RPO."""
    folder = tmp_path / "backups"
    catalog = Catalog(folder)  # the only verified backup is the future-dated one
    catalog.record_verification(catalog.get(OLD), how="quick", ok=False, detail="corrupt", job_id=None)
    ahead = f"backup_{datetime.now(UTC) + timedelta(minutes=61):%Y%m%d_%H%M%S}.sqlite.gpg"
    (folder / ahead).write_bytes((folder / OLD).read_bytes())
    Catalog(folder).record_verification(Catalog(folder).get(ahead), how="quick", ok=True, detail="ok", job_id=None)
    words = "dated 61 min in the future: check the clocks of this host and the one that made it"
    client = as_role(Role.VIEWER)
    tab = client.get("/targets/shop/backups").get_data(as_text=True)
    rpo = tab[tab.index('<p id="rpo">') :].split("</p>")[0]
    assert f'<code>{ahead}</code>, <span class="badge badge-warn">age unknown</span> {words}' in rpo
    assert "not known to be within the RPO" in rpo and "badge-ok" not in rpo and "min old" not in rpo
    row = tab[tab.index(f'<code class="file">{ahead.replace("_", "_<wbr>")}</code>') :].split("</tr>")[0]
    assert '<span class="badge badge-warn">in the future</span>' in row and words in row
    for url in ("/targets/shop", "/dashboard/cards"):
        page = client.get(url).get_data(as_text=True)
        assert f'<span class="badge badge-warn">newest verified {ahead} is {words} (RPO 60 min)' in page, url
    index = client.get("/backups").get_data(as_text=True)
    assert words in index and '<span class="badge badge-warn">age unknown</span> 60 min' in index
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert listed.exit_code == 1, "no backup is known to be within the RPO: cron is told"
    assert listed.output.splitlines()[-1] == f"newest verified: {ahead} ({words}); RPO 60 min: AGE UNKNOWN"


def test_a_future_dated_backup_does_not_hide_a_verified_one_from_five_minutes_ago(app, as_role, shop, tmp_path):
    """QA: a skewed backup dated 61 min ahead was taken as the newest, so the RPO read AGE UNKNOWN though a backup
    verified 5 minutes ago was there: the age and verdict are that one's; the future-dated one is a warning apart."""
    folder = tmp_path / "backups"
    now = datetime.now(UTC)
    recent = verified_at(folder, now - timedelta(minutes=5))
    ahead = verified_at(folder, now + timedelta(minutes=61))
    words = "dated 61 min in the future: check the clocks of this host and the one that made it"
    client = as_role(Role.VIEWER)
    tab = client.get("/targets/shop/backups").get_data(as_text=True)
    rpo = tab[tab.index('<p id="rpo">') :].split("</p>")[0]
    assert re.search(rf"<code>{recent}</code>, [56] min old", rpo), rpo
    assert '<span class="badge badge-ok">within the RPO</span>' in rpo and "age unknown" not in rpo
    warning = tab[tab.index('id="future-backup"') :].split("</p>")[0]
    assert f"the verified backup <code>{ahead}</code> is {words}" in warning
    assert f"so the age above is that of <code>{recent}</code>" in warning
    for url in ("/targets/shop", "/dashboard/cards"):
        page = client.get(url).get_data(as_text=True)
        line = re.search(r'<span class="badge badge-(\w+)">newest verified ([^<]*)', page)
        assert line and line.group(1) == "warn", (url, line and line.group())  # within the RPO, but a clock is off
        assert re.match(rf"[56] min ago \(RPO 60 min\): {recent}; {ahead} is {words}", html.unescape(line.group(2)))
    index = client.get("/backups").get_data(as_text=True)
    assert f"<code>{recent}</code>," in index and '<span class="badge badge-ok">ok</span> 60 min' in index
    assert f"<code>{ahead}</code> is {words}" in index and "age unknown" not in index
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert listed.exit_code == 0, listed.output
    *_, warned, verdict = listed.output.splitlines()
    assert warned == f"warning: {ahead} is verified but {words}; its age is unknown"
    assert re.fullmatch(rf"newest verified: {recent} \([56] min old\); RPO 60 min: ok", verdict), verdict


def test_an_operator_backs_up_a_kept_copy_from_its_button(app, as_role, shop):
    client = as_role(Role.OPERATOR)
    page = client.get("/targets/shop/backups").get_data(as_text=True)
    assert 'value="shop.db.pre_restore_20240101000000"' in page
    assert "Back up this copy shop.db.pre_restore_20240101000000" in names(page)  # which copy, said to all
    assert "Undo restore<" not in page  # undo stays the admin's
    assert "Back up this copy" not in as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    copy = "shop.db.pre_restore_20240101000000"
    response = post(client, "/jobs", {"runbook": "backup_copy", "target": "shop", "copy": copy})
    assert response.status_code == 302
    with app.app_context():
        (job,) = db.session.scalars(select(Job)).all()
        assert (job.runbook, job.params["copy"], job.actor_name) == ("backup_copy", copy, "operator")
        queued = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert queued.action == "job.queued" and queued.outcome == "ok"
    # The timeline's "Backups and restores" filter shows it (it was only under "All jobs")
    backups_only = client.get("/targets/shop/timeline?kind=backups").get_data(as_text=True)
    assert re.search(rf'<tr id="event-{queued.id}" data-kind="backups"', backups_only)


def test_each_kept_copy_says_whether_a_backup_holds_it(app, as_role, shop, tmp_path):
    copy = "shop.db.pre_restore_20240101000000"
    client = as_role(Role.OPERATOR)

    def said() -> str:
        """The copy's line on the tab, as words."""
        page = client.get("/targets/shop/backups").get_data(as_text=True)
        row = page.split(f"<li><code>{copy}</code>")[1].split("</li>")[0]
        return " ".join(re.sub(r"<[^>]+>", " ", row).split()).replace(" ,", ",").replace(" :", ":")

    assert "— no backup holds it yet Back up this copy" in said()
    held = tmp_path / "backups" / "shop_20240101_010000.sqlite.gpg"  # what Back up this copy makes
    held.write_bytes((tmp_path / "backups" / OLD).read_bytes())
    catalog = Catalog(tmp_path / "backups")
    catalog.save(catalog.get(held.name), copy=copy)
    assert f"no backup holds it yet: {held.name} is not verified yet" in said()
    catalog.record_verification(catalog.get(held.name), how="quick", ok=True, detail="ok", job_id=None)
    assert f"backed up {held.name}, verified" in said()
    assert "Back up this copy" not in said(), "a copy a verified backup holds is offered no second backup"


def test_a_scratch_copy_left_by_a_restore_says_it_was_filled_from_a_backup(app, as_role, shop, tmp_path):
    """QA: the scratch copy a swapped-back restore keeps read "no backup holds it yet", as if rows lived nowhere
    else; it was filled from a backup, and the clean-up drops it without backing it up."""
    scratch = "shop.db.restore_20240101000000"
    (tmp_path / "data" / scratch).write_bytes((tmp_path / "data" / "shop.db").read_bytes())
    page = as_role(Role.OPERATOR).get("/targets/shop/backups").get_data(as_text=True)
    row = " ".join(re.sub(r"<[^>]+>", " ", page.split(f"<li><code>{scratch}</code>")[1].split("</li>")[0]).split())
    assert "filled from a backup a restore's scratch copy: the clean-up drops it without backing it up" in row, row
    assert "no backup holds it yet" not in row and f"Back up this copy {scratch}" in names(page)


@pytest.mark.parametrize("bad", ["shop.db", "../data/shop.db.pre_restore_20240101000000", "shop.db.restore_1"])
def test_backing_up_anything_but_a_kept_copy_is_refused_and_audited(app, as_role, shop, bad):
    response = post(as_role(Role.OPERATOR), "/jobs", {"runbook": "backup_copy", "target": "shop", "copy": bad})
    assert response.status_code == 400 and "is not a restore copy of shop" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []
        refusal = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert refusal.action == "job.queued" and refusal.outcome == "denied"


def test_backing_up_a_copy_without_a_csrf_token_is_refused(app, as_role, shop):
    client = as_role(Role.OPERATOR)
    copy = "shop.db.pre_restore_20240101000000"
    response = client.post("/jobs", data={"runbook": "backup_copy", "target": "shop", "copy": copy})
    assert response.status_code == 400 and "Nothing was changed" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Job)).all() == []


@pytest.mark.parametrize("data_target", ["sqlite"], indirect=True)
def test_a_restore_s_own_page_offers_its_undo_until_it_is_undone_then_names_the_undo(
    app, users, as_role, runner, data_target
):
    from tests.backups.test_runbooks import backup_now, copies
    from tests.deployments.test_runbooks import run
    from tests.targetpage.test_views import finished

    restore, _ = run(app, "restore_backup", data_target.name, backup=backup_now(app, data_target))
    assert restore.state == "succeeded", restore.result
    (pre,) = copies(data_target)
    admin = as_role(Role.ADMIN)
    page = admin.get(f"/jobs/{restore.id}").get_data(as_text=True)
    assert 'id="restore-undone"' not in page
    undo = form_of(page, "Undo restore")  # the Backups tab's own form: same runbook, fields and confirmation
    assert 'action="/jobs"' in undo and 'name="csrf_token"' in undo
    assert 'name="runbook" value="undo_restore"' in undo and f'name="pre_restore" value="{pre}"' in undo
    assert f'data-confirm="Put {pre} back as the live database of {data_target.name}?' in undo
    assert 'name="confirm"' not in undo, "the target is not protected"
    for role in (Role.VIEWER, Role.OPERATOR):
        seen = as_role(role).get(f"/jobs/{restore.id}").get_data(as_text=True)
        assert pre in seen and "Undo restore<" not in seen  # undo stays the admin's

    response = post(admin, "/jobs", {"runbook": "undo_restore", "target": data_target.name, "pre_restore": pre})
    assert finished(app, response.headers["Location"]) == "succeeded"
    with app.app_context():
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "job.queued")).all()[-1].outcome == "ok"
    after = admin.get(f"/jobs/{restore.id}").get_data(as_text=True)
    assert 'id="job-finished"' in after and "Undo restore<" not in after, "already undone"
    # QA: once undone, the page still read "… now runs on the restored copy … undo puts it back", its next steps
    # gone without a word: opened from the timeline, the restore read as still in force. It says which undo.
    undo_id = int(response.headers["Location"].rsplit("/", 1)[1])
    (undone,) = copies(data_target)
    for role in (Role.VIEWER, Role.ADMIN):
        page = html.unescape(as_role(role).get(f"/jobs/{restore.id}").get_data(as_text=True))
        said = page.split('id="restore-undone"')[1].split("</section>")[0]
        assert f'<a href="/jobs/{undo_id}">Job #{undo_id}</a> undid this restore' in said
        assert f"put <code>{pre}</code> back as the live database of {data_target.name}" in said
        assert f"kept the database this restore had put in place as <code>{undone}</code>" in said
        assert 'id="next-steps"' not in page and "Undo restore<" not in page
    # The same Undo from a page drawn before it (QA: "… is not a pre-restore copy (there are: …)"): said as done.
    again = post(admin, "/jobs", {**_hidden(undo), "next": f"/jobs/{restore.id}"}, follow_redirects=True)
    assert f"{pre} was already put back by job #{undo_id}: nothing was changed" in html.unescape(
        again.get_data(as_text=True)
    )


def _restore_job(app, state: str = "succeeded") -> int:
    with app.app_context():
        job = Job(runbook="restore_backup", target="shop", mutates=True, actor_name="admin", state=state)
        job.result = "shop now runs on shop.db.restore_20240101000000 (renamed to shop.db); the replaced database is "
        job.result += "kept as shop.db.pre_restore_20240101000000 — undo puts it back."
        db.session.add(job)
        db.session.commit()
        return job.id


def test_the_undo_on_a_protected_target_s_restore_page_needs_the_name_typed(app, as_role, shop):
    shop(protected=True)
    job_id = _restore_job(app)
    undo = form_of(as_role(Role.ADMIN).get(f"/jobs/{job_id}").get_data(as_text=True), "Undo restore")
    assert 'value="shop.db.pre_restore_20240101000000"' in undo and "Type <kbd>shop</kbd> to confirm" in undo
    assert f'name="next" value="/jobs/{job_id}"' in undo  # a refusal comes back to this page


def test_a_restore_page_offers_no_undo_once_its_copy_is_gone_or_if_it_failed(app, as_role, shop, tmp_path):
    failed = _restore_job(app, state="failed")
    assert "Undo restore<" not in as_role(Role.ADMIN).get(f"/jobs/{failed}").get_data(as_text=True)
    job_id = _restore_job(app)
    admin = as_role(Role.ADMIN)
    assert "Undo restore<" in admin.get(f"/jobs/{job_id}").get_data(as_text=True)
    (tmp_path / "data" / "shop.db.pre_restore_20240101000000").unlink()  # dropped by the cleanup
    page = admin.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'id="job-finished"' in page and 'id="next-steps"' not in page


def test_the_tab_and_the_cli_name_unlisted_files_damaged_manifests_and_empty_backups(app, as_role, shop, tmp_path):
    folder = tmp_path / "backups"
    (folder / "backup_20240101_000000.sql.gpg").write_bytes(b"")
    (folder / "shop_20240102_000000.dump.gpg").write_bytes(b"\x85x")
    (folder / "shop_20240102_000000.dump.gpg.json").write_text(json.dumps({"time": "yesterday", "made_by": "rewind"}))
    (folder / "by hand.sql.gpg").write_bytes(b"x")
    os.close(os.open(os.fsencode(folder) + b"/latin1_\xe9.sql.gpg", os.O_CREAT | os.O_WRONLY))
    response = as_role(Role.VIEWER).get("/targets/shop/backups")
    assert response.status_code == 200  # a manifest's time that is no date was a 500
    page = response.get_data(as_text=True)
    assert "2 files of" in page and "<code>by hand.sql.gpg</code>: its name is not one Rewind accepts" in page
    assert "<code>latin1_\\xe9.sql.gpg</code>" in page
    page = page.replace("<wbr>", "")  # the break points a listed name offers after its underscores
    assert re.search(r"shop_20240102_000000\.dump\.gpg</code> <span class=\"badge badge-warn\">manifest damaged", page)
    assert re.search(r"backup_20240101_000000\.sql\.gpg</code>.*\s*<span class=\"badge badge-bad\">empty file", page)
    result = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert result.exit_code == 1, result.output  # the fixture's newest verified backup is years old: RPO late
    assert "not listed: by hand.sql.gpg: its name is not one Rewind accepts" in result.output
    assert "not listed: latin1_\\xe9.sql.gpg" in result.output
    lines = result.stdout.splitlines()
    damaged = lines.index(next(line for line in lines if line.endswith(" shop_20240102_000000.dump.gpg")))
    assert lines[damaged + 1].startswith(" " * 17 + "(manifest damaged: its manifest")
    empty = lines.index(next(line for line in lines if line.endswith(" backup_20240101_000000.sql.gpg")))
    assert lines[empty].split()[2:5] == ["0", "B", "plain"]  # the size, then the format
    assert lines[empty + 1 : empty + 3] == [" " * 17 + "(not made by Rewind)", " " * 17 + "(empty file)"]
    rows = [line for line in lines if line[:1].isdigit() or line.startswith("TIME")]
    assert len(rows) == 4 and all(len(line) <= 80 for line in rows), result.stdout


def test_a_verified_backup_whose_file_changed_on_disk_is_no_longer_shown_as_verified(app, as_role, shop, tmp_path):
    """A file cut short or replaced after it passed is not the file that passed: not green, not the RPO's."""
    path = tmp_path / "backups" / OLD
    recorded = path.stat().st_size
    path.write_bytes(path.read_bytes()[: recorded // 2])  # a copy cut short, over the verified one
    page = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    assert 'class="badge badge-ok">verified' not in page
    assert '<span class="badge badge-bad">changed since verified</span>' in page
    assert f"{recorded // 2} bytes now, {recorded} when verified: verify it again" in page
    assert re.search(r'<p id="rpo">Newest verified backup:\s*none', page)
    assert "Last restore-tested backup: none" in page
    assert "no verified backup yet" in as_role(Role.VIEWER).get("/targets/shop").get_data(as_text=True)
    result = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert result.exit_code == 1, result.output  # the fixture's newest verified backup is years old: RPO late
    assert re.search(rf"sqlite +changed +{re.escape(OLD)}\n", result.output)
    assert f"(changed since verified: {recorded // 2} bytes now, {recorded} then; verify it again)" in result.output
    assert "newest verified: none" in result.output


def test_a_manifest_written_with_another_offset_is_shown_in_utc(app, as_role, shop, tmp_path):
    """The columns say UTC: a manifest that records its times at +02:00 (written by hand, or by another tool)
    is shown turned to UTC, not with its own clock's hours."""
    manifest = tmp_path / "backups" / f"{OLD}.json"
    recorded = json.loads(manifest.read_text())
    recorded["time"] = "2024-03-01T02:30:00+02:00"
    recorded["verified"]["at"] = "2024-03-01T03:45:00+02:00"
    manifest.write_text(json.dumps(recorded))
    page = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    assert (
        '<td><time datetime="2024-03-01T00:30:00Z" title="2024-03-01 00:30:00 UTC">2024-03-01 00:30:00 UTC</time></td>'
        in page
    )
    assert 'restore-test, <time datetime="2024-03-01T01:45:00Z"' in page and "02:30" not in page and "03:45" not in page
    result = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert result.output.splitlines()[1].startswith("2024-03-01 00:30 "), result.output


def test_a_mistyped_name_comes_back_beside_the_button_that_was_pressed(app, as_role, shop):
    """On a protected target, a refused Restore, Undo or clean-up shows what was typed and why beside its own
    field (aria-invalid, described by the reason), not only in the note at the top of the tab."""
    shop(protected=True)
    admin = as_role(Role.ADMIN)
    tab = "/targets/shop/backups"
    copy = "shop.db.pre_restore_20240101000000"
    for fields, button in [
        ({"runbook": "restore_backup", "backup": OLD}, "Restore"),
        ({"runbook": "undo_restore", "pre_restore": copy}, "Undo restore"),
        ({"runbook": "cleanup_restores", "older_than_hours": "24", "spare_unsaved": "yes"}, "Drop copies older than"),
    ]:
        response = post(admin, "/jobs", {**fields, "target": "shop", "confirm": "shp", "next": tab})
        assert response.status_code == 303 and response.headers["Location"] == tab
        page = admin.get(tab).get_data(as_text=True)
        refused = [f for f in page.split("<form")[1:] if f'value="{fields["runbook"]}"' in f]
        assert len(refused) == 1, button
        assert (
            'value="shp" size="12" required pattern="shop" title="Type shop exactly" autocomplete="off"' in refused[0]
        )
        assert 'spellcheck="false" aria-invalid="true"' in refused[0]
        assert "shop is protected: type its name, shop, to confirm" in refused[0]
        assert 'value="shp"' not in admin.get(tab).get_data(as_text=True), "shown once, not on every later view"
    job_id = _restore_job(app)
    response = post(
        admin,
        "/jobs",
        {"runbook": "undo_restore", "target": "shop", "pre_restore": copy, "confirm": "shp", "next": f"/jobs/{job_id}"},
    )
    undo = form_of(admin.get(response.headers["Location"]).get_data(as_text=True), "Undo restore")
    assert 'value="shp"' in undo and 'aria-invalid="true"' in undo
    with app.app_context():
        assert db.session.scalars(select(Job.runbook)).all() == ["restore_backup"]  # only the one made by hand here


def test_a_restore_s_next_steps_say_until_when_undo_is_possible_and_offer_to_back_the_copy_up(
    app, as_role, shop, tmp_path
):
    """Undo ends when the scheduler drops the copy: the page that watched the restore says when, and lets an
    operator keep the replaced rows in a backup first."""
    job_id = _restore_job(app)
    copy = "shop.db.pre_restore_20240101000000"
    page = as_role(Role.OPERATOR).get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f'kept as <code>{copy}</code> until <time datetime="2024-01-02T00:00:00Z"' in page
    assert "(24 h, <code>backups.keep_copies_hours</code>): undo is possible until then" in page
    assert "backs it up (no backup holds its rows yet) and drops it" in page
    back_up = form_of(page, "Back up this copy")
    assert 'name="runbook" value="backup_copy"' in back_up and f'name="copy" value="{copy}"' in back_up
    assert "Undo restore<" not in page and "An admin can put it back" in page
    admin = as_role(Role.ADMIN).get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Undo restore<" in admin and "Back up this copy</button>" in admin
    viewer = as_role(Role.VIEWER).get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "until <time" in viewer and "<button" not in viewer.split('id="next-steps"')[1].split("</section>")[0]
    held = tmp_path / "backups" / "shop_20240101_010000.sqlite.gpg"  # what Back up this copy makes
    held.write_bytes((tmp_path / "backups" / OLD).read_bytes())
    catalog = Catalog(tmp_path / "backups")
    catalog.record_verification(
        catalog.save(catalog.get(held.name), copy=copy), how="quick", ok=True, detail="ok", job_id=None
    )
    page = as_role(Role.OPERATOR).get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "drops it; a backup holds its rows." in page and "Back up this copy</button>" not in page


def test_what_a_restore_rolls_back_is_read_from_live_when_asked(app, as_role, runner, data_target):
    """In the backup (its manifest), live now, and the rows written after it: added, or old and changed since."""
    from tests.backups.test_runbooks import backup_now

    stamp = "text" if data_target.engine == "sqlite" else "timestamptz"
    data_target.execute(f'ALTER TABLE "user" ADD COLUMN updated_at {stamp}')
    name = backup_now(app, data_target)
    data_target.execute('DELETE FROM "user" WHERE id <= 5')
    data_target.execute('INSERT INTO "user" VALUES (?, ?, ?, NULL)', (100, "late", "2099-01-01 00:00:00+00"))
    data_target.execute('UPDATE "user" SET updated_at = ? WHERE id = 6', ("2099-01-01 00:00:00+00",))
    admin = as_role(Role.ADMIN)

    tab = admin.get(f"/targets/{data_target.name}/backups").get_data(as_text=True)
    url = f"/targets/{data_target.name}/backups/{name}/rolls-back"
    assert f'hx-get="{url}" hx-trigger="toggle once"' in tab  # read when opened, not with the tab
    response = admin.get(url)
    assert response.status_code == 200
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.get_data(as_text=True)))
    assert "restoring it now rolls back at least 2 rows written to the key tables after it" in text, text
    assert "and an unknown number in orders" in text
    assert "It brings back at least 4 rows deleted since (user 4)." in text
    assert re.search(r"user 20 16 2 ", text) and re.search(r"orders 20 20 unknown ", text), text

    result = app.test_cli_runner().invoke(args=["rewind", "backups", "rolls-back", data_target.name, name])
    assert result.exit_code == 0, result.output
    assert re.search(r"^user +20 +16 +2$", result.output, re.M), result.output
    assert result.output.splitlines()[-1] == "and brings back at least 4 row(s) deleted since it"
    assert result.output.splitlines()[-2] == (
        f"restoring {name} now rolls back at least 2 row(s) written after it; unknown in orders (no time column or "
        "count to tell)"
    )
    with app.app_context():  # only read: nothing queued, nothing changed
        assert [j.runbook for j in db.session.scalars(select(Job))] == ["backup"]

    # Orders added after the backup (no time column): live holds more than the backup counted, so they are seen.
    data_target.execute_all([("INSERT INTO orders VALUES (?, ?, ?)", (300 + i, 1, 5)) for i in range(3)])
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", admin.get(url).get_data(as_text=True)))
    assert "rolls back at least 5 rows" in text and re.search(r"orders 20 23 3 ", text), text


def test_what_a_restore_rolls_back_is_the_admins_and_names_only_backups_of_the_folder(app, as_role, shop):
    url = f"/targets/shop/backups/{OLD}/rolls-back"
    assert as_role(Role.OPERATOR).get(url).status_code == 403
    admin = as_role(Role.ADMIN)
    page = admin.get(url).get_data(as_text=True)
    assert re.search(r"<th scope=\"row\"><code>t</code></th>\s*<td>unknown</td>\s*<td>0</td>\s*<td>unknown</td>", page)
    missing = admin.get("/targets/shop/backups/backup_20990101_000000.sqlite.gpg/rolls-back")
    assert missing.status_code == 404 and "there is no backup backup_20990101_000000.sqlite.gpg" in missing.get_data(
        as_text=True
    )
    assert admin.get("/targets/shop/backups/..%2Fshop.db/rolls-back").status_code == 404
    assert admin.get(f"/targets/nowhere/backups/{OLD}/rolls-back").status_code == 404
    cli = app.test_cli_runner()
    gone = cli.invoke(args=["rewind", "backups", "rolls-back", "shop", "backup_20990101_000000.sqlite.gpg"])
    assert gone.exit_code == 6 and gone.stderr.startswith("rewind: there is no backup backup_20990101_000000"), (
        gone.output
    )
    nowhere = cli.invoke(args=["rewind", "backups", "rolls-back", "nowhere", OLD])
    assert nowhere.exit_code == 6 and nowhere.stderr.startswith("rewind: there is no target 'nowhere'")


def test_what_a_restore_rolls_back_says_when_live_cannot_be_read(app, as_role, shop, tmp_path):
    (tmp_path / "data" / "shop.db").write_bytes(b"not a database, " * 64)
    page = as_role(Role.ADMIN).get(f"/targets/shop/backups/{OLD}/rolls-back").get_data(as_text=True)
    assert 'class="field-error" role="alert">Could not count: ' in page and "not a database" in page


def test_an_undo_of_a_copy_older_than_the_last_swap_says_it_goes_back_past_it(app, as_role, shop, tmp_path):
    """Two restores (or a restore and an undo) later, the oldest pre-restore copy is still offered: putting it back
    skips over the later swap, so its row and its question say which job swapped since, found from the jobs (that
    swap's own copy may be gone: dropped, or the empty one made in place of a missing live)."""
    data = tmp_path / "data"
    (data / "shop.db.pre_restore_20250601000000").write_bytes((data / "shop.db").read_bytes())
    with app.app_context():  # the restore that made the 2025 copy, and a later one whose copy is gone
        for began in (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)):
            job = Job(runbook="restore_backup", target="shop", mutates=True, actor_name="admin", state="succeeded")
            job.started_at = (began - timedelta(seconds=1)).replace(tzinfo=None)
            job.swapped_at = (began + timedelta(seconds=20)).replace(tzinfo=None)
            job.finished_at = (began + timedelta(seconds=30)).replace(tzinfo=None)
            db.session.add(job)
        db.session.commit()
        later = max(j.id for j in db.session.scalars(select(Job)))
    page = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    old = page[page.index("<code>shop.db.pre_restore_20240101000000</code>") :].split("</li>")[0]
    new = page[page.index("<code>shop.db.pre_restore_20250601000000</code>") :].split("</li>")[0]
    for row in (old, new):  # both predate the July swap
        assert "older than the last swap" in row and f">job #{later}</a> swapped the database since" in row
        assert f'data-confirm="Live has been swapped again since: job #{later} (2025-07-01 00:00 UTC)' in row
    with app.app_context():
        db.session.delete(db.session.get(Job, later))
        db.session.commit()
    page = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    new = page[page.index("<code>shop.db.pre_restore_20250601000000</code>") :].split("</li>")[0]
    assert "older than the last swap" not in new and 'data-confirm="Put shop.db.pre_restore_20250601000000 back' in new
    old = page[page.index("<code>shop.db.pre_restore_20240101000000</code>") :].split("</li>")[0]
    assert "older than the last swap" in old  # the June restore came after the 2024 copy


def test_a_long_verification_failure_is_folded_so_the_state_column_stays_narrow(as_role, shop, tmp_path):
    catalog = Catalog(tmp_path / "backups")
    why = "gpg: decryption failed: No secret key; " + "pg_restore: error: input file does not appear to be valid " * 6
    catalog.record_verification(catalog.get(OLD), how="quick", ok=False, detail=why, job_id=None)
    page = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    assert '<span class="badge badge-bad">failed verification</span>' in page
    folded = re.search(r'<details class="why"><summary>(.*?)</summary>(.*?)</details>', page, re.S)
    assert folded and folded.group(1).endswith("…") and len(folded.group(1)) <= 111
    assert folded.group(2) == why  # whole, once opened


def _swap_job(app, at: datetime, state: str = "succeeded") -> int:
    """A restore's job row as it stands after renaming live, `at` that moment."""
    with app.app_context():
        job = Job(runbook="restore_backup", target="shop", mutates=True, actor_name="admin", state=state)
        job.started_at = (at - timedelta(seconds=20)).replace(tzinfo=None)
        job.swapped_at = at.replace(tzinfo=None)
        job.swapped_out = f"shop.db.pre_restore_{at - timedelta(seconds=19):%Y%m%d%H%M%S}"
        job.finished_at = (at + timedelta(seconds=10)).replace(tzinfo=None)
        db.session.add(job)
        db.session.commit()
        return job.id


def _hidden(form: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))


def test_an_undo_from_a_page_drawn_before_a_later_swap_is_refused_and_queues_nothing(app, as_role, shop, runner):
    """The undo's question named the swaps it goes back past when the page was drawn; a restore made since (here
    one that was killed after renaming: it still counts) would be undone too, unsaid. Refused at the door, in the
    shell unless the swap is named, and in the job's check step when the swap came while the undo was queued."""
    copy = "shop.db.pre_restore_20240101000000"
    first = _swap_job(app, datetime(2025, 6, 1, tzinfo=UTC))
    admin = as_role(Role.ADMIN)
    drawn = form_of(admin.get("/targets/shop/backups").get_data(as_text=True), "Undo restore")
    assert _hidden(drawn)["seen_swap"] == str(first) and f"Live has been swapped again since: job #{first}" in drawn
    later = _swap_job(app, datetime(2025, 7, 1, tzinfo=UTC), state="interrupted")

    response = post(admin, "/jobs", {**_hidden(drawn), "next": "/targets/shop/backups"}, follow_redirects=True)
    said = f"live has been swapped since {copy} was made: job #{later} put another database in place (2025-07-01"
    page = html.unescape(response.get_data(as_text=True))
    assert said in page and "Look at the Backups tab again and confirm there" in page
    assert "add seen_swap" not in page and "from the shell" not in page  # QA: no shell words on a page
    shell = ["rewind", "run", "shop", "undo_restore", f"pre_restore={copy}", "--as", "admin"]
    cli = app.test_cli_runner().invoke(args=shell)
    assert (
        cli.exit_code != 0 and said in cli.output and f"from the shell, add seen_swap={later} to go back" in cli.output
    ), cli.output
    with app.app_context():
        assert db.session.scalars(select(Job.id).where(Job.runbook == "undo_restore")).all() == []

    # Drawn again, the question names the later swap, and the form goes through; a swap made while it waits in
    # the queue (behind a running job) still stops it, at its check step, before anything is touched.
    runner.stop(wait=True)
    fresh = form_of(admin.get("/targets/shop/backups").get_data(as_text=True), "Undo restore")
    assert _hidden(fresh)["seen_swap"] == str(later) and f"since: job #{later}" in fresh
    queued = post(admin, "/jobs", {**_hidden(fresh), "next": "/targets/shop/backups"})
    assert queued.status_code == 302 and queued.headers["Location"].startswith("/jobs/")
    newest = _swap_job(app, datetime(2025, 8, 1, tzinfo=UTC))
    with app.app_context():
        undo = db.session.scalars(select(Job.id).where(Job.runbook == "undo_restore")).one()
    again = engine(app).start_runner()
    try:
        job, _ = finished(app, undo)
    finally:
        again.stop(wait=True)
    assert job.state == "failed" and f"job #{newest} put another database in place" in job.result, job.result
    assert "nothing was changed" in job.result


def test_what_a_restore_rolls_back_says_no_rows_when_nothing_was_written_after_it(app, as_role, runner, shop, tmp_path):
    """QA read "rolls back at least 0 rows … they stay readable there": nothing to roll back is said as such."""
    from tests.deployments.test_runbooks import run

    with sqlite3.connect(tmp_path / "data" / "shop.db") as conn:
        conn.execute("ALTER TABLE t ADD COLUMN created_at text")
        conn.execute("INSERT INTO t VALUES (1, '2020-01-01 00:00:00')")
    job, _ = run(app, "backup", "shop")
    assert job.state == "succeeded", job.result
    with app.app_context():
        name = Catalog(tmp_path / "backups").newest_verified().id
    page = as_role(Role.ADMIN).get(f"/targets/shop/backups/{name}/rolls-back").get_data(as_text=True)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert "restoring it now rolls back no rows written to the key tables after it" in text, text
    assert "at least 0" not in text and "stay readable" not in text
    cli = app.test_cli_runner().invoke(args=["rewind", "backups", "rolls-back", "shop", name])
    assert f"restoring {name} now rolls back no rows written after it" in cli.output, cli.output


def test_a_restore_s_page_and_an_undo_s_log_say_a_later_swap_it_goes_back_past(app, as_role, shop, runner):
    """QA: only the Undo button's question said that a later restore had swapped live since; the restore's own page
    now says it too, and an undo confirmed past it says so in its log, the job's own record."""
    restore = _restore_job(app)
    later = _swap_job(app, datetime(2025, 7, 1, tzinfo=UTC))
    admin = as_role(Role.ADMIN)
    page = admin.get(f"/jobs/{restore}").get_data(as_text=True)
    note = page[page.index('id="swapped-since-restore"') :].split("</p>")[0]
    assert f">job #{later}</a>" in note and "Undoing this restore goes back past it too." in note
    undo = form_of(page, "Undo restore")
    assert _hidden(undo)["seen_swap"] == str(later)
    response = post(admin, "/jobs", {**_hidden(undo), "next": f"/jobs/{restore}"})
    _, view = finished(app, int(response.headers["Location"].rsplit("/", 1)[1]))  # it may fail later: shop has no app
    said = "this undo goes back past that swap too, as confirmed"
    text = "\n".join(line for _, _, line in view.lines)
    assert f"live was swapped again since shop.db.pre_restore_20240101000000 was made (job #{later}," in text, text
    assert said in text


def test_on_a_protected_target_the_shell_refuses_an_unseen_swap_before_asking_for_the_name(app, as_role, shop):
    """Review: the shell asked for the typed name first, then refused the undo for a swap it had not shown."""
    shop(protected=True)
    later = _swap_job(app, datetime(2025, 7, 1, tzinfo=UTC))
    args = ["rewind", "run", "shop", "undo_restore", "pre_restore=shop.db.pre_restore_20240101000000", "--as", "admin"]
    result = app.test_cli_runner().invoke(args=args, input="shop\n")
    assert result.exit_code == 6, result.output
    assert "Type shop" not in result.output and "type its name" not in result.output, result.output
    assert f"job #{later} put another database in place" in result.output, result.output


def test_while_a_job_holds_the_target_the_tab_greys_what_it_would_refuse_and_says_which_job(app, users, as_role, shop):
    """QA: the buttons stayed active and were refused when pressed, under a notice that read as if changes queued.
    A quick Verify only reads the backup, so it stays."""
    from app.audit.store import Actor
    from app.jobs import runbook as runbooks
    from app.jobs import service

    with app.app_context():
        held = service.enqueue(runbooks.get("test.sleep"), "shop", {"seconds": 60}, Actor(users[Role.ADMIN], "admin"))
        job_id = held.id
    page = as_role(Role.ADMIN).get("/targets/shop/backups").get_data(as_text=True)
    assert (
        f"job #{job_id}</a> (Sleep on a target, queued) is changing shop; other changes can start once it ends." in page
    )
    words = f"Wait for job #{job_id} (Sleep on a target, queued) to end."
    for label in ("Back up now", "Drop copies older"):  # one each: the why beside it
        end = page.index(f">{label}")
        button = page[page.rindex("<button", 0, end) : page.index("</form>", end)]
        assert " disabled>" in button[: button.index(">") + 1], (label, button)
        assert f'<span class="hint why-disabled">{words}</span>' in button, (label, button)
    for label in ("Restore-test", "Restore", "Undo restore", "Back up this copy"):  # in every row: the notice says it
        end = page.index(f">{label}")
        button = page[page.rindex("<button", 0, end) : page.index("</form>", end)]
        assert ' disabled aria-describedby="busy-notice">' in button[: button.index(">") + 1], (label, button)
        assert "why-disabled" not in button, (label, button)
    assert page.count(words) == 2, "said beside the two single buttons only"
    end = page.index(">Verify<")
    assert " disabled" not in page[page.rindex("<button", 0, end) : end], "a quick verify only reads: it stays"


def test_the_scratch_copy_a_running_restore_fills_is_listed_as_its_work_not_a_copy_to_back_up(
    app, as_role, shop, tmp_path
):
    """QA: it read "no backup holds it yet" with a Back up this copy button, beside the restore filling it."""
    from app.backups.restore import STAMP
    from app.clock import utcnow

    started = utcnow()
    with app.app_context():
        job = Job(runbook="restore_backup", target="shop", mutates=True, actor_name="admin", state="running")
        job.started_at = started
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    scratch = f"shop.db.restore_{started:{STAMP}}"
    (tmp_path / "data" / scratch).write_bytes((tmp_path / "data" / "shop.db").read_bytes())
    page = as_role(Role.OPERATOR).get("/targets/shop/backups").get_data(as_text=True)
    row = page[page.index(f"<code>{scratch}</code>") :]
    row = row[: row.index("</li>")]
    assert (
        "being filled</span>" in row and f'<a href="/jobs/{job_id}">job #{job_id}</a>, the restore running now' in row
    )
    assert "no backup holds it yet" not in row and "Back up this copy" not in row
    older = page[page.index("<code>shop.db.pre_restore_20240101000000</code>") :]
    assert "being filled" not in older[: older.index("</li>")], "only the copy made since the restore started"


def test_what_a_backup_dated_in_the_future_rolls_back_is_unknown_not_no_rows(app, as_role, shop, tmp_path):
    """QA: a plain dump named by a host whose clock ran 61 min ahead read "restoring it now rolls back no rows written
    to the key tables after it", beside a row written a moment ago: every row of live is stamped before a time in the
    future. Its time tells nothing, so how many rows it rolls back is unknown, and the page and the CLI say why."""
    with sqlite3.connect(tmp_path / "data" / "shop.db") as conn:
        conn.execute("ALTER TABLE t ADD COLUMN created_at text")
        conn.execute("INSERT INTO t VALUES (1, ?)", (f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}",))
    ahead = verified_at(tmp_path / "backups", datetime.now(UTC) + timedelta(minutes=61))
    page = as_role(Role.ADMIN).get(f"/targets/shop/backups/{ahead}/rolls-back").get_data(as_text=True)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    words = "the backup is dated 61 min in the future: check the clocks of this host and the one that made it"
    assert "no rows" not in text and "at least 0" not in text, text
    assert (
        f"restoring it now rolls back an unknown number of rows written to the key tables after it, in t ({words}; "
        "its time cannot tell which rows came after it)."
    ) in text, text
    cli = app.test_cli_runner().invoke(args=["rewind", "backups", "rolls-back", "shop", ahead])
    assert cli.exit_code == 0, cli.output
    assert cli.output.splitlines()[-1] == (
        f"restoring {ahead} now rolls back an unknown number of rows written after it: unknown in t ({words}; its "
        "time cannot tell which rows came after it)"
    ), cli.output


def test_the_cli_says_why_a_backup_failed_and_which_are_dated_in_the_future_as_the_tab_does(app, shop, tmp_path):
    """QA: `backups list` showed "failed" with no reason, and a file dated an hour ahead with no word of it, where the
    tab says both: a person choosing a backup from a shell had to go and find the failed job."""
    folder = tmp_path / "backups"
    catalog = Catalog(folder)
    catalog.record_verification(catalog.get(OLD), how="quick", ok=False, detail="it does not decrypt", job_id=None)
    ahead = f"backup_{datetime.now(UTC) + timedelta(minutes=61):%Y%m%d_%H%M%S}.sqlite.gpg"
    (folder / ahead).write_bytes((folder / OLD).read_bytes())
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    lines = [line.strip() for line in listed.output.splitlines()]
    assert lines[lines.index(next(x for x in lines if x.endswith(ahead))) + 2] == (
        "(dated 61 min in the future: check the clocks of this host and the one that made it)"
    ), listed.output
    old_row = lines.index(next(x for x in lines if x.endswith(OLD)))
    assert lines[old_row + 2] == "(failed quick verification: it does not decrypt)", listed.output


def test_a_checkpoint_names_the_newest_verified_backup_the_tab_names_not_one_dated_in_the_future(app, shop, tmp_path):
    """QA: with a verified plain dump dated ahead of this host's clock, a restore's checkpoints read "newest verified
    backup: backup_…_030007.sql.gpg (taken … 03:00 UTC)" at 02:55, while the tab named the real newest and said the
    other's age is unknown."""
    from app.backups.captures import BACKUP

    folder = tmp_path / "backups"
    now = datetime.now(UTC)
    recent = verified_at(folder, now - timedelta(minutes=5))
    verified_at(folder, now + timedelta(minutes=61))
    with app.app_context():
        assert BACKUP.take(current_targets().open("shop"))["file"] == recent


def test_the_tab_says_a_backup_s_size_as_the_cli_and_the_job_logs_do(app, as_role, shop, tmp_path):
    """QA: the same 12350-byte backup read "12.3 kB" on the tab and "12.1 KiB" in `backups list` (and the restore's
    log counts in MiB): two figures for one file, side by side during an incident."""
    name = "backup_20210101_000000.sqlite.gpg"
    (tmp_path / "backups" / name).write_bytes(b"\x85" * 12350)
    page = as_role(Role.VIEWER).get("/targets/shop/backups").get_data(as_text=True)
    row = page[page.index(name.replace("_", "_<wbr>")) :].split("</tr>")[0]
    assert '<td class="nowrap">12.1 KiB</td>' in row and "kB" not in row, row
    listed = app.test_cli_runner().invoke(args=["rewind", "backups", "list", "shop"])
    assert re.search(rf" 12\.1 KiB .* {name}$", listed.output, re.M), listed.output
