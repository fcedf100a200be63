"""The gate's refusal of a reset or a revert, shown where it was asked for, with the way through it.

When the deployments page posts a reset or revert the gate refuses, the page
comes back with the refused form (app.jobs.formstate); this reads the gate's
verdict on that same change again, so the page can spell out the plan and
offer the combined runbook (downgrade, then reset or revert) for it, with
what it does about a backup (app.schema.backup_first).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.jobs import runbook as runbooks
from app.jobs.formstate import FormState
from app.schema import gate
from app.schema.gate_steps import cannot_compare_words, refused_words
from app.targets.errors import TargetError
from app.targets.target import Target

COMBINED = {"reset": "downgrade_then_reset", "revert": "downgrade_then_revert"}
PARAM = {"reset": "commit", "revert": "commits"}


@dataclass(frozen=True)
class GateRefusal:
    verb: str  # reset or revert
    value: str  # the commit (reset) or the commits (revert) as the form sent them
    verdict: gate.GateVerdict | None  # None: the gate could not compare (cannot_compare says why)
    form: FormState  # the refused form: the code runbook's, or the combined runbook's when that was refused too
    backups_configured: bool
    protected: bool
    cannot_compare: str = ""
    also_revert: str = ""  # a revert that splits the migrations: the commit to revert with it (the page offers both)

    @property
    def together(self) -> str:
        """The commits of the revert that keeps the migrations whole, as the revert form takes them."""
        return f"{self.value} {self.also_revert}" if self.also_revert else ""

    @property
    def shown(self) -> str:
        """The commit(s) in short, for the page."""
        return ", ".join(sha[:12] for sha in self.value.replace(",", " ").split())

    @property
    def combined(self) -> str:
        return COMBINED[self.verb]

    @property
    def flashed(self) -> dict[str, str]:
        """The refused form's flash, said in brief: the panel below it says the rest (base.html's page_says)."""
        said = refused_words(self.verb, self.verdict) if self.verdict else cannot_compare_words(self.cannot_compare)
        change = f"{self.verb} {'to' if self.verb == 'reset' else 'of'} {self.shown}"
        return {said: f"the schema gate stopped the {change}: why, and the way past it, are said below"}

    @property
    def param(self) -> str:
        return PARAM[self.verb]

    @property
    def backup(self) -> str | None:
        """What the combined runbook does about a backup: take, confirm (the admin has one), refused, or None."""
        if self.verdict is None or self.verdict.plan is None or not self.verdict.plan.destroys_data:
            return None
        if self.backups_configured:
            return "take"
        return "refused" if self.protected else "confirm"


def refused_change(target: Target, form: FormState) -> GateRefusal | None:
    """The gate's refusal of the reset or revert this page just had refused, or None (no such refusal)."""
    verb = next((v for v, combined in COMBINED.items() if form.runbook in (v, combined)), None)
    if verb is None or form.target != target.name:
        return None
    value = form.value(PARAM[verb])
    # A refused override (a wrong typed name) comes back to its form too, with the error beside it.
    overriding = form.runbook == verb and bool(form.value("gate_override").strip())
    if not value or (form.runbook == verb and not form.error(PARAM[verb]) and not overriding):
        return None
    try:
        verdict = verdict_on(target, verb, value)
    except runbooks.ParamError:
        return None  # the page's flash says why the form was refused
    except TargetError as exc:  # the gate refuses what it cannot compare: the override is the admin's way past
        also = exc.with_commit if isinstance(exc, gate.RevertSplitsMigrations) else None
        return refusal(target, verb, value, None, form, cannot_compare=exc.in_words(), also_revert=also or "")
    return refusal(target, verb, value, verdict, form)


def verdict_on(target: Target, verb: str, value: str) -> gate.GateVerdict | None:
    """The gate's verdict on a reset or revert whose commit(s) are given as its form sends them.

    Raises ParamError when the form itself would be refused, TargetError when the gate cannot compare.
    """
    (param,) = [p for p in runbooks.get(verb).params if p.name == PARAM[verb]]
    return gate.check(target, verb, {PARAM[verb]: param.parse(value, target.name)})


def refusal(
    target: Target,
    verb: str,
    value: str,
    verdict: gate.GateVerdict | None,
    form: FormState,
    *,
    cannot_compare: str = "",
    also_revert: str = "",
) -> GateRefusal | None:
    """The gate's refusal, with or without a plan, or because it cannot compare (why); None when it allows.

    Without a plan (no commit's scripts know the database's revision, or a downgrade cannot be undone) the
    refusal still comes with its fix and an admin's override."""
    if not cannot_compare and (verdict is None or not verdict.refused):
        return None
    backups, protected = target.config.backups is not None, target.config.protected
    return GateRefusal(verb, value, verdict, form, backups, protected, cannot_compare, also_revert)


def planned(
    target: Target, verb: str, value: str, verdict: gate.GateVerdict | None, form: FormState
) -> GateRefusal | None:
    """The combined runbook's offer when the gate refuses with a plan; None when it allows, or has no plan."""
    found = refusal(target, verb, value, verdict, form)
    return found if found is not None and verdict.plan is not None else None
