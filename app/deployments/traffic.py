"""Which blue/green slot serves a target's traffic, read once for the Deployments tab, the overview line, the CLI
and checkpoints, so all four say the same thing in the same words."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.roles import Role
from app.deployments import bluegreen
from app.jobs import runbook as runbooks
from app.jobs.engine import current_targets

RUNBOOK = "bluegreen"


@dataclass(frozen=True)
class Traffic:
    target: str
    slots: dict[str, str]  # slot -> its health URL, in the targets file's order
    live: str | None  # the slot serving now; None when it cannot be told
    how: str  # how `live` is known, or why it cannot be
    role: Role  # who may switch it: the runbook's role

    @property
    def idle(self) -> list[str]:
        """The slots traffic can be switched to: every slot but the live one (all of them when it is unknown)."""
        return [slot for slot in self.slots if slot != self.live]

    @property
    def words(self) -> str:
        """One line: "blue", or "unknown — why"."""
        return self.live if self.live is not None else f"unknown — {self.how}"


def traffic_of(target: str) -> Traffic | None:
    """The target's traffic now; None when it has no [targets.NAME.bluegreen] section.

    Never raises for the target's state: an unreadable link or state file is `live=None` with the reason
    (bluegreen.live_slot).
    """
    config = current_targets().config(target).bluegreen
    if config is None:
        return None
    live = bluegreen.live_slot(target)
    return Traffic(target, dict(config.slots), live.slot, live.how, runbooks.get(RUNBOOK).role)
