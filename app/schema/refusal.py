"""The gate's refusal of a reset, shown where the reset was asked for, with the way through it.

When the deployments page posts a reset the gate refuses, the page comes
back with the refused form (app.jobs.formstate); this reads the gate's
verdict on that same commit again, so the page can spell out the plan and
offer the combined runbook (downgrade, then reset) for that commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.jobs import runbook as runbooks
from app.jobs.formstate import FormState
from app.schema import gate
from app.targets.errors import TargetError
from app.targets.target import Target

COMBINED = "downgrade_then_reset"


@dataclass(frozen=True)
class GateRefusal:
    commit: str
    verdict: gate.GateVerdict
    form: FormState  # the refused form: the reset's, or the combined runbook's when that was refused too

    @property
    def asks_backup(self) -> bool:
        """The combined runbook asks for the backup confirmation (while it takes no backup itself)."""
        return any(p.name == "backup_confirmed" for p in runbooks.get(COMBINED).params)


def refused_reset(target: Target, form: FormState) -> GateRefusal | None:
    """The gate's plan for the reset this page just had refused, or None (no such refusal, or no plan to offer)."""
    commit = form.value("commit")
    if not commit or form.target != target.name:
        return None
    if not (form.runbook == "reset" and form.error("commit")) and form.runbook != COMBINED:
        return None
    try:
        verdict = gate.check(target, "reset", {"commit": target.git().resolve(commit)})
    except TargetError:
        return None  # the page's flash says why the reset was refused
    if verdict is None or not verdict.refused or verdict.plan is None:
        return None
    return GateRefusal(commit, verdict, form)
