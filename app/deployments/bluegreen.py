"""Blue/green traffic switch: check the idle slot, switch atomically, verify, leave the old slot alone."""

from __future__ import annotations

import os
from pathlib import Path

from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.runbook import ParamError, StepFailed
from app.targets import registry
from app.targets.config import PROBE_TIMEOUT_S, BlueGreenConfig
from app.targets.health import HealthCheck


def _config(target: str | None) -> BlueGreenConfig:
    config = registry.current().config(target).bluegreen
    if config is None:
        raise ParamError("target", f"{target} has no [targets.{target}.bluegreen] section")
    return config


def _state_file(target: str) -> Path:
    return registry.current().open(target).state_dir / "active-slot"


def active_slot(target: str) -> str | None:
    """The live slot: where the link points, or what Rewind last switched to."""
    config = _config(target)
    if config.link is not None and config.link.is_symlink():
        live = Path(os.readlink(config.link))
        for slot, directory in config.slot_dirs.items():
            if live == directory or live.resolve() == directory.resolve():
                return slot
    state = _state_file(target)
    return state.read_text().strip() if state.exists() else None


def check_slot(value: str, target: str | None) -> str:
    config = _config(target)
    if value not in config.slots:
        raise ParamError("slot", f"{target} has no slot {value!r}: choose one of {', '.join(config.slots)}")
    if value == active_slot(target):
        raise ParamError("slot", f"{value} already serves {target}'s traffic")
    return value


def _idle_check(target: str, url: str) -> HealthCheck:
    """The slot's URL judged as the target's health is (status, JSON fields, CA file, probe timeout).

    A bare 200 is not enough: a slot answering {"status": "starting"} would take the traffic, then fail verification.
    """
    health = registry.current().config(target).health
    if health is None:
        return HealthCheck(url, timeout_s=10, request_timeout_s=PROBE_TIMEOUT_S)
    return HealthCheck(
        url,
        expect_status=health.status,
        expect_json=health.json,
        timeout_s=10,
        request_timeout_s=health.probe_timeout,
        ca_file=health.ca_file,
    )


def check_idle_slot(ctx: JobContext) -> None:
    slot = ctx.params["slot"]
    probe = _idle_check(ctx.target, _config(ctx.target).slots[slot]).probe()
    ctx.log(f"{slot}: {probe}")
    if not probe.ok:
        raise StepFailed(f"the idle slot {slot} is unhealthy ({probe.reason}); traffic was not switched")
    ctx.state["previous_slot"] = active_slot(ctx.target)
    ctx.progress(1.0, f"{slot} healthy")


def _swap_link(link: Path, to: Path) -> None:
    """A new link beside the old one, renamed over it: readers see the old slot or the new, never neither.

    A folder where the link should be, or a folder Rewind may not write, is said with its fix, traffic unmoved.
    """
    if link.exists() and not link.is_symlink():
        raise StepFailed(
            f"bluegreen.link {link} is a real {'folder' if link.is_dir() else 'file'}, not a symlink; traffic was not "
            f"switched — move it into the live slot's folder and make {link} a symlink to that folder"
        )
    temp = link.with_name(link.name + ".rewind-new")
    try:
        temp.unlink(missing_ok=True)
        temp.symlink_to(to)
        os.replace(temp, link)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StepFailed(
            f"cannot point {link} at {to}: {exc.strerror or exc}; traffic was not switched — "
            f"let Rewind's user write {link.parent}, or set bluegreen.switch to a command that switches"
        ) from None


def switch_traffic(ctx: JobContext) -> None:
    slot = ctx.params["slot"]
    config = _config(ctx.target)
    if config.switch:
        ctx.run([*config.switch, slot], timeout=120, env=steps.target_of(ctx).command_env())
    else:
        _swap_link(config.link, config.slot_dirs[slot])
        ctx.log(f"{config.link} -> {config.slot_dirs[slot]}")
    state = _state_file(ctx.target)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(slot + "\n")
    ctx.did(f"switched {ctx.target}'s traffic to {slot}")
    previous = ctx.state.get("previous_slot") or "the previous slot"
    ctx.set_result(
        f"Traffic on {ctx.target} now goes to {slot}; {previous} is left untouched for at least "
        f"{config.keep_previous_minutes} minutes so the switch can be undone."
    )
    ctx.progress(1.0, slot)


def verify_switch(ctx: JobContext) -> None:
    """Verify the target on its new slot; on failure the next step is to switch back, which the old slot allows."""
    back = ctx.state.get("previous_slot")
    to = f"to {back} " if back else ""
    steps.verify(ctx, next_step=f"Next: switch traffic back {to}(Switch blue/green traffic), or fix the cause")
