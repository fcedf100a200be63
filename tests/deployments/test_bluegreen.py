"""Blue/green switch with a symlink swap between two real slot servers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.jobs import runbook as runbooks
from app.jobs.runbook import ParamError
from app.targets.health import HealthCheck
from tests.conftest import wait_for
from tests.deployments.test_runbooks import run
from tests.support.targets import SERVER


def test_switch_to_a_healthy_idle_slot(app, runner, slots):
    _, link, dirs = slots
    job, _ = run(app, "bluegreen", slot="green")
    assert job.state == "succeeded", job.result
    assert Path(os.readlink(link)) == dirs["green"]
    assert "blue is left untouched for at least 90 minutes" in job.result
    # a button on a page drawn before that switch: the refusal names who switched
    with app.app_context(), pytest.raises(ParamError) as refused:
        runbooks.get("bluegreen").parse_params({"slot": "green"}, "staging")
    said = str(refused.value)
    assert f"green already serves staging's traffic (switched by {job.actor_name} in job #{job.id}, 20" in said, said
    assert said.endswith(" UTC); nothing was changed"), said


def test_unhealthy_idle_slot_is_refused_and_nothing_switches(app, runner, slots):
    servers, link, dirs = slots
    servers["green"].kill()
    servers["green"].wait()
    job, view = run(app, "bluegreen", slot="green")
    assert job.state == "failed"
    assert "the idle slot green is unhealthy" in job.result
    assert Path(os.readlink(link)) == dirs["blue"]
    assert [s.state for s in view.steps][1:] == ["failed", "not_run", "not_run"]


def test_an_idle_slot_is_judged_by_the_target_s_health_json_not_a_bare_200(app, runner, slots):
    """health.json says {status = "healthy"}: a slot answering 200 {"status": "starting"} must not take the traffic."""
    servers, link, dirs = slots
    servers["green"].kill()
    servers["green"].wait()
    port = int(app_slot_port(app, "green"))
    server = dirs["green"] / "server.py"
    server.write_text(
        SERVER.format(status="starting", greeting="green").replace('200 if STATUS == "healthy" else 500', "200")
    )
    servers["green"] = subprocess.Popen([sys.executable, str(server), str(port)])
    wait_for(lambda: HealthCheck(f"http://127.0.0.1:{port}/health").probe().ok)  # a bare 200 it does answer
    job, _ = run(app, "bluegreen", slot="green")
    assert job.state == "failed"
    assert "the idle slot green is unhealthy" in job.result and "starting" in job.result, job.result
    assert Path(os.readlink(link)) == dirs["blue"]


def app_slot_port(app, slot: str) -> str:
    from app.jobs.engine import current_targets

    with app.app_context():
        return current_targets().config("staging").bluegreen.slots[slot].rsplit(":", 1)[1].split("/")[0]


def test_a_link_that_is_a_real_folder_is_refused_with_the_fix_and_left_alone(app, runner, slots):
    _, link, _ = slots
    link.unlink()
    link.mkdir()
    (link / "index.html").write_text("live")
    job, _ = run(app, "bluegreen", slot="green")
    assert job.state == "failed"
    assert f"bluegreen.link {link} is a real folder, not a symlink; traffic was not switched" in job.result
    assert "internal error" not in job.result
    assert (link / "index.html").read_text() == "live" and not link.is_symlink()
    assert not link.with_name(link.name + ".rewind-new").exists()


def test_unknown_slot_is_refused(app, slots):
    with app.app_context(), pytest.raises(ParamError, match="staging has no slot 'purple': choose one of blue, green"):
        runbooks.get("bluegreen").parse_params({"slot": "purple"}, "staging")


def test_a_switch_that_fails_verification_says_to_switch_back(app, runner, slots):
    _, link, dirs = slots
    with app.app_context():
        from app.jobs.engine import current_targets

        current_targets().open("staging").process().stop()
    job, view = run(app, "bluegreen", slot="green")
    assert job.state == "failed" and job.verification == "failed"
    assert Path(os.readlink(link)) == dirs["green"], "the switch happened; verification failed after it"
    (failed,) = [s for s in view.steps if s.state == "failed"]
    assert failed.error.startswith("staging did not become healthy: the application is not running")
    # QA: it named "Switch blue/green traffic", a button there is not; the panel's is "Switch traffic to blue"
    assert ". Next: switch traffic back to blue (Switch traffic to blue on the Deployments tab), or fix the cause" in (
        failed.error
    )
    assert "\n" not in failed.error


def test_with_a_link_the_link_is_the_truth_not_what_rewind_last_switched_to(app, runner, slots):
    """A link moved by hand to no slot's folder: no slot is said to serve, and a switch back to blue is allowed."""
    from app.deployments import bluegreen

    _, link, dirs = slots
    job, _ = run(app, "bluegreen", slot="green")
    assert job.state == "succeeded", job.result
    elsewhere = link.parent / "hotfix"
    elsewhere.mkdir()
    link.unlink()
    link.symlink_to(elsewhere)  # Rewind's state file still says green
    with app.app_context():
        assert bluegreen.live_slot("staging") == bluegreen.LiveSlot(
            None, f"{link} points at {elsewhere}, none of the slots' folders"
        )
        assert runbooks.get("bluegreen").parse_params({"slot": "green"}, "staging")["slot"] == "green"
    link.unlink()
    link.symlink_to(os.path.relpath(dirs["blue"], link.parent))  # a relative link, as `ln -s blue current` makes
    with app.app_context():
        assert bluegreen.live_slot("staging") == bluegreen.LiveSlot("blue", f"{link} points at {dirs['blue']}")


def test_with_a_switch_command_the_live_slot_is_what_rewind_last_switched_to(app, runner, slots, code_target):
    from app.deployments import bluegreen
    from app.jobs.engine import current_targets
    from tests.support.targets import write_targets_file

    with app.app_context():
        urls = current_targets().config("staging").bluegreen.slots
        state = current_targets().open("staging").state_dir / "active-slot"
    folder = slots[1].parent
    switch = folder / "switch.py"  # a real switch command: it writes down the slot it was given
    switch.write_text("import pathlib, sys\npathlib.Path(sys.argv[0]).with_name('switched').write_text(sys.argv[1])\n")
    write_targets_file(
        app,
        code_target.toml()
        + f'\n[targets.staging.bluegreen]\nslots = {{ blue = "{urls["blue"]}", green = "{urls["green"]}" }}\n'
        + f'switch = ["{sys.executable}", "{switch}"]\n',
    )
    with app.app_context():
        unknown = bluegreen.live_slot("staging")
    assert unknown.slot is None and "Rewind has not switched it yet" in unknown.how
    job, _ = run(app, "bluegreen", slot="green")
    assert job.state == "succeeded", job.result
    assert (folder / "switched").read_text() == "green"
    with app.app_context():
        assert bluegreen.live_slot("staging").slot == "green"
    status = app.test_cli_runner().invoke(args=["rewind", "traffic", "status", "staging"])
    # one pair of brackets (QA: "(as Rewind last switched it (bluegreen.switch does not say …))")
    said = "staging: green serves traffic (as Rewind last switched it; bluegreen.switch does not say which slot serves)"
    assert status.exit_code == 0 and status.output.splitlines()[0] == said, status.output
    state.write_text("purple\n")  # a slot since renamed in the targets file
    with app.app_context():
        assert bluegreen.live_slot("staging") == bluegreen.LiveSlot(
            None, "Rewind last switched it to 'purple', which is no longer one of its slots"
        )
