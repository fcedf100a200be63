"""The Traffic panel of the Deployments tab, the overview and card line, the checkpoint part and
`flask rewind traffic status`, on two real slot servers and a real symlink."""

import html
import os
import re
from pathlib import Path

from sqlalchemy import func, select

from app.audit.store import Actor
from app.auth.roles import Role
from app.checkpoints.models import Checkpoint
from app.extensions import db
from app.jobs import runbook as runbooks
from app.jobs import service
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.statuses import ExitStatus
from tests.deployments.conftest import bluegreen_toml
from tests.support.apps import csrf_token
from tests.support.jobs import finished
from tests.support.pages import form_fields
from tests.support.targets import write_targets_file

PAGE = "/targets/staging/deployments"


def jobs(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Job))


def panel(page: str) -> str:
    start = page.index('id="traffic"')
    return page[start : page.index("</section>", start)]


def test_the_panel_shows_the_live_slot_and_its_button_switches_traffic(app, users, as_role, runner, slots):
    _, link, dirs = slots
    client = as_role(Role.OPERATOR)
    page = client.get(PAGE).get_data(as_text=True)
    shown = panel(page)
    assert '<span class="badge badge-info">blue serves traffic</span>' in shown
    assert f"{link} points at {dirs['blue']}" in shown
    with app.app_context():
        urls = current_targets().config("staging").bluegreen.slots
    assert f"<strong>green</strong> <code>{urls['green']}</code>" in shown
    assert "Switch traffic to blue</button>" not in shown, "no switch to the slot already serving"
    action, fields = form_fields(page, "Switch traffic to green")
    assert action == "/jobs" and fields["csrf_token"], "posted through the one job-start path, with its token"
    assert {k: v for k, v in fields.items() if k != "csrf_token"} == {
        "runbook": "bluegreen",
        "target": "staging",
        "next": PAGE,
        "slot": "green",
    }, "staging is not protected: no typed name"
    confirm = re.search(r'<form [^>]*data-confirm="([^"]+)"[^>]*>(?:(?!</form>).)*Switch traffic to green', page, re.S)
    assert "traffic to green?" in html.unescape(confirm.group(1)) and "blue is left running" in html.unescape(
        confirm.group(1)
    )

    response = client.post(action, data=fields)
    assert response.status_code == 302, response.get_data(as_text=True)
    job, _ = finished(app, int(response.headers["Location"].rsplit("/", 1)[1]), timeout=30)
    assert (job.runbook, job.state, job.params["slot"]) == ("bluegreen", "succeeded", "green"), job.result
    assert Path(os.readlink(link)) == dirs["green"]
    after = panel(client.get(PAGE).get_data(as_text=True))
    assert '<span class="badge badge-info">green serves traffic</span>' in after
    assert "Switch traffic to blue</button>" in after and "Switch traffic to green</button>" not in after
    with app.app_context():
        (checkpoint,) = db.session.scalars(select(Checkpoint).where(Checkpoint.job_id == job.id)).all()
        assert checkpoint.captures["traffic"] == {"live": "blue", "how": f"{link} points at {dirs['blue']}"}


def test_an_unknown_slot_is_refused_and_nothing_is_queued(app, users, as_role, slots):
    client = as_role(Role.OPERATOR)
    action, fields = form_fields(client.get(PAGE).get_data(as_text=True), "Switch traffic to green")
    back = client.post(action, data={**fields, "slot": "purple"})
    assert back.status_code == 303 and back.headers["Location"] == PAGE, "back to the tab it came from"
    said = client.get(PAGE).get_data(as_text=True)
    assert "staging has no slot &#39;purple&#39;: choose one of blue, green" in said
    no_page = client.post(action, data={**fields, "slot": "purple", "next": ""})
    assert no_page.status_code == 400 and "staging has no slot &#39;purple&#39;" in no_page.get_data(as_text=True)
    assert jobs(app) == 0


def test_a_viewer_sees_the_live_slot_without_a_button_and_a_posted_switch_is_forbidden(app, users, as_role, slots):
    _, fields = form_fields(as_role(Role.OPERATOR).get(PAGE).get_data(as_text=True), "Switch traffic to green")
    viewer = as_role(Role.VIEWER)
    page = viewer.get(PAGE).get_data(as_text=True)
    shown = panel(page)
    assert "blue serves traffic" in shown and "<strong>green</strong>" in shown
    assert "<button" not in shown and 'name="slot"' not in shown
    assert "Switching traffic is for the operator role and above." in shown
    response = viewer.post("/jobs", data={**fields, "csrf_token": csrf_token(viewer)})
    assert response.status_code == 403
    assert jobs(app) == 0


def test_a_busy_target_disables_the_switch_naming_the_job_and_refuses_a_posted_one(app, users, as_role, slots):
    client = as_role(Role.OPERATOR)
    action, fields = form_fields(client.get(PAGE).get_data(as_text=True), "Switch traffic to green")
    with app.app_context():  # no runner: the restart stays queued and holds the target
        busy = service.enqueue(runbooks.get("restart"), "staging", {}, Actor(None, "oncall")).id
    shown = panel(client.get(PAGE).get_data(as_text=True))
    button = shown[shown.rindex("<button", 0, shown.index(">Switch traffic to green</button>")) :]
    assert button.startswith('<button type="submit" disabled>')
    assert f"Wait for job #{busy} (Restart, queued) to end." in shown
    refused = client.post(action, data=fields)
    assert refused.status_code == 303
    said = client.get(PAGE).get_data(as_text=True)
    assert f"staging is busy: job #{busy} (Restart, started by oncall) is queued" in said
    assert jobs(app) == 1


def test_a_switch_without_the_csrf_token_is_refused(app, users, as_role, slots):
    client = as_role(Role.OPERATOR)
    action, fields = form_fields(client.get(PAGE).get_data(as_text=True), "Switch traffic to green")
    del fields["csrf_token"]
    response = client.post(action, data=fields)
    assert response.status_code == 400 and "Nothing was changed" in response.get_data(as_text=True)
    assert jobs(app) == 0


def test_a_protected_target_asks_for_its_name_typed(app, users, as_role, runner, slots, code_target):
    _, link, dirs = slots
    with app.app_context():
        urls = current_targets().config("staging").bluegreen.slots
    write_targets_file(app, code_target.toml(protected=True) + bluegreen_toml(urls, link, dirs))
    client = as_role(Role.OPERATOR)
    page = client.get(PAGE).get_data(as_text=True)
    action, fields = form_fields(page, "Switch traffic to green")
    assert fields["confirm"] == "" and 'pattern="staging"' in panel(page)
    client.post(action, data=fields)
    said = client.get(PAGE).get_data(as_text=True)
    assert "staging is protected: type its name, staging, to confirm the traffic switch" in said
    assert jobs(app) == 0
    response = client.post(action, data={**fields, "confirm": "staging"})
    job, _ = finished(app, int(response.headers["Location"].rsplit("/", 1)[1]), timeout=30)
    assert job.state == "succeeded" and Path(os.readlink(link)) == dirs["green"]


def test_the_overview_and_the_card_say_which_slot_serves_or_why_it_is_unknown(app, users, as_role, slots):
    _, link, _ = slots
    client = as_role(Role.VIEWER)
    overview = client.get("/targets/staging").get_data(as_text=True)
    assert '<dt>Traffic</dt>\n    <dd><span class="badge badge-info">blue</span></dd>' in overview
    cards = client.get("/dashboard/cards").get_data(as_text=True)
    assert 'Traffic: <span class="badge badge-info">blue</span>' in cards
    link.unlink()
    link.mkdir()  # someone replaced the link by a folder: no slot is known to serve
    unknown = f"unknown — bluegreen.link {link} is a real folder, not a symlink to a slot&#39;s folder"
    assert f'Traffic: <span class="badge badge-warn">{unknown}</span>' in client.get("/dashboard/cards").get_data(
        as_text=True
    )
    assert f'<span class="badge badge-warn">{unknown}</span>' in client.get("/targets/staging").get_data(as_text=True)
    shown = panel(client.get(PAGE).get_data(as_text=True))
    assert '<span class="badge badge-warn">unknown</span> which slot serves traffic' in shown
    # QA: every slot said "idle" beside "unknown which slot serves traffic", as if none served; any of them may
    assert "idle" not in shown and shown.count('<span class="badge badge-neutral">unknown</span>') == 2


def test_a_target_without_blue_green_shows_no_traffic(app, users, as_role, code_target):
    client = as_role(Role.OPERATOR)
    assert 'id="traffic"' not in client.get(PAGE).get_data(as_text=True)
    assert "Traffic" not in client.get("/targets/staging").get_data(as_text=True)
    assert "Traffic:" not in client.get("/dashboard/cards").get_data(as_text=True)


def test_cli_status_names_the_live_slot_and_the_switch_command(app, users, slots):
    _, link, dirs = slots
    with app.app_context():
        urls = current_targets().config("staging").bluegreen.slots
    result = app.test_cli_runner().invoke(args=["rewind", "traffic", "status", "staging"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"staging: blue serves traffic ({link} points at {dirs['blue']})",
        f"  blue   live  {urls['blue']}",
        f"  green  idle  {urls['green']}",
        "switch: flask rewind run staging bluegreen slot=green --as USER",
    ]


def test_cli_status_of_an_unknown_slot_exits_1_with_the_reason(app, users, slots):
    _, link, _ = slots
    with app.app_context():
        urls = current_targets().config("staging").bluegreen.slots
    link.unlink()
    link.symlink_to("/nowhere")
    result = app.test_cli_runner().invoke(args=["rewind", "traffic", "status", "staging"])
    assert result.exit_code == ExitStatus.ERROR
    lines = result.output.splitlines()
    assert (
        lines[0]
        == f"staging: which slot serves traffic is unknown — {link} points at /nowhere, none of the slots' folders"
    )
    assert lines[1:3] == [f"  {slot:<5}  unknown  {url}" for slot, url in urls.items()]  # not "idle", either
    assert lines[-1] == "switch: flask rewind run staging bluegreen slot=blue|green --as USER"


def test_cli_status_refuses_an_unknown_target_and_one_without_slots(app, code_target):
    cli = app.test_cli_runner()
    missing = cli.invoke(args=["rewind", "traffic", "status", "mars"])
    assert missing.exit_code == ExitStatus.REFUSED and missing.stderr.startswith("rewind: there is no target 'mars'")
    plain = cli.invoke(args=["rewind", "traffic", "status", "staging"])
    assert plain.exit_code == ExitStatus.REFUSED
    assert plain.stderr.strip() == (
        "rewind: staging has no blue/green slots: add [targets.staging.bluegreen] to the targets file"
    )
