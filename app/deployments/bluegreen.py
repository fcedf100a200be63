"""Blue/green traffic switch: check the idle slot, switch atomically, verify, leave the old slot alone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.runbook import ParamError, StepFailed
from app.statuses import JobState
from app.targets.config import PROBE_TIMEOUT_S, BlueGreenConfig
from app.targets.health import HealthCheck


def _config(target: str | None) -> BlueGreenConfig:
    config = current_targets().config(target).bluegreen
    if config is None:
        raise ParamError("target", f"{target} has no [targets.{target}.bluegreen] section")
    return config


def _state_file(target: str) -> Path:
    return current_targets().open(target).state_dir / "active-slot"


@dataclass(frozen=True)
class LiveSlot:
    slot: str | None  # the slot serving now; None when it cannot be told
    how: str  # how it was told, or why it cannot be


def live_slot(target: str) -> LiveSlot:
    """Which slot serves, and how that is known.

    With bluegreen.link the link is the truth: a link pointing at no slot's folder (or missing, or a real folder)
    means no slot is known to serve, whatever Rewind last switched to. A switch command reports nothing back, so
    there only what Rewind last switched to is known. An unreadable link or state file is said, not raised.
    """
    config = _config(target)
    try:
        if config.link is not None:
            return _by_link(config)
        state = _state_file(target)
        if not state.exists():
            return LiveSlot(None, "Rewind has not switched it yet, and bluegreen.switch does not say which slot serves")
        slot = state.read_text().strip()
    except (OSError, ValueError) as exc:
        return LiveSlot(None, f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
    if slot not in config.slots:
        return LiveSlot(None, f"Rewind last switched it to {slot!r}, which is no longer one of its slots")
    return LiveSlot(slot, "as Rewind last switched it; bluegreen.switch does not say which slot serves")


def _by_link(config: BlueGreenConfig) -> LiveSlot:
    link = config.link
    if not link.is_symlink():
        kind = "is a real folder" if link.is_dir() else ("is a file" if link.exists() else "does not exist")
        return LiveSlot(None, f"bluegreen.link {link} {kind}, not a symlink to a slot's folder")
    points = Path(os.readlink(link))
    for slot, directory in config.slot_dirs.items():
        if points == directory or (link.parent / points).resolve() == directory.resolve():
            return LiveSlot(slot, f"{link} points at {directory}")
    return LiveSlot(None, f"{link} points at {points}, none of the slots' folders")


def active_slot(target: str) -> str | None:
    """The live slot, or None when it cannot be told (see live_slot)."""
    return live_slot(target).slot


def check_slot(value: str, target: str | None) -> str:
    config = _config(target)
    if value not in config.slots:
        raise ParamError("slot", f"{target} has no slot {value!r}: choose one of {', '.join(config.slots)}")
    if value == active_slot(target):
        raise ParamError("slot", f"{value} already serves {target}'s traffic{_switched_by(target, value)}")
    return value


def _switched_by(target: str, slot: str) -> str:
    """Who put `slot` live, when Rewind's last switch of the target did: the refusal of a button on a page drawn
    before that switch names it, so the person knows someone else acted, not that the page was wrong."""
    done = (JobState.SUCCEEDED.value, JobState.WARNING.value)
    last = db.session.scalars(
        select(Job)
        .where(Job.runbook == "bluegreen", Job.target == target, Job.state.in_(done))
        .order_by(Job.id.desc())
        .limit(1)
    ).first()
    if last is None or last.params.get("slot") != slot or last.finished_at is None:
        return ""
    when = f"{last.finished_at:%Y-%m-%d %H:%M} UTC"
    return f" (switched by {last.actor_name} in job #{last.id}, {when}); nothing was changed"


def _idle_check(target: str, url: str) -> HealthCheck:
    """The slot's URL judged as the target's health is (status, JSON fields, CA file, probe timeout).

    A bare 200 is not enough: a slot answering {"status": "starting"} would take the traffic, then fail verification.
    """
    health = current_targets().config(target).health
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
    # the button the person will find: "Switch traffic to blue" in the Deployments tab's Traffic panel
    where = (
        f"to {back} (Switch traffic to {back} on the Deployments tab)"
        if back
        else "(the Deployments tab's Traffic panel)"
    )
    steps.verify(ctx, next_step=f"Next: switch traffic back {where}, or fix the cause")
