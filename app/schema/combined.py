"""Downgrade then reset: the way back past a migration, code and schema together.

When a reset would leave the code behind the schema, the schema must go
down first, while migration scripts that know the current revision still
exist: those of the deployed commit, or, when a revert or reset already
deleted the revision's file, of the newest commit that still has it. They
are read from git into a temporary folder, so what runs is what that commit
holds; then the code is reset (to the deployed commit itself, to realign a
schema that is ahead of the code), restarted and verified — schema included.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from app.auth.roles import Role
from app.deployments import runbooks as code
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.runbook import Param, ParamError, Runbook, Step, StepFailed, register
from app.schema import backup_first, gate
from app.schema import runbooks as schema_runbooks
from app.schema.migrate import apply
from app.targets import registry
from app.targets.errors import TargetError
from app.targets.git import GitError
from app.targets.migrations import extract


def _commit(value: str, target: str | None) -> str:
    try:
        return registry.current().open(target).git().resolve(value)
    except GitError as exc:
        raise ParamError("commit", exc.message) from None


def _verdict(target_name: str | None, params: dict) -> gate.GateVerdict:
    target = registry.current().open(target_name)
    verdict = gate.check(target, "reset", params)
    if verdict is None:
        raise TargetError(f"{target_name} has no migrations (database.migrations): a plain reset will do")
    if not verdict.refused:
        raise TargetError(f"{verdict.message}: nothing to downgrade first, a plain reset will do")
    if verdict.plan is None:
        raise TargetError(f"{verdict.message} — {verdict.fix}")
    if len(verdict.plan.rows_after) > 1:
        raise TargetError(
            f"{verdict.message}, and going down leaves several heads ({', '.join(sorted(verdict.plan.rows_after))}): "
            "downgrade each branch with the schema downgrade runbook, then reset"
        )
    return verdict


def _check(params: dict, target: str | None) -> None:
    try:
        verdict = _verdict(target, params)
    except TargetError as exc:
        raise ParamError("commit", exc.message) from None
    plan = verdict.plan
    backup_first.check_params(params, target, plan.destroys_data, plan.summary(), "the downgrade before the reset")
    code._confirm_protected(params, target)


def plan(ctx: JobContext) -> None:
    with steps.adapter_errors(ctx):
        verdict = _verdict(ctx.target, ctx.params)
    to = next(iter(verdict.plan.rows_after), "base")
    ctx.state.update(downgrade_to=to, rows_after=sorted(verdict.plan.rows_after), scripts_from=verdict.scripts_from)
    ctx.log(f"{verdict.message}; plan: {verdict.fix}")
    for line in verdict.plan.lines():
        ctx.log(line)
    backup_first.note_losses(ctx, verdict.plan.destroys_data, verdict.plan.summary(), to)
    ctx.progress(1.0, f"down to {to}")


def downgrade_with_scripts_of_the_deployed_commit(ctx: JobContext) -> None:
    target = steps.target_of(ctx)
    to, sha = ctx.state["downgrade_to"], ctx.state["scripts_from"]
    with tempfile.TemporaryDirectory(prefix="rewind-scripts-") as temp, steps.adapter_errors(ctx):
        folder = extract(target.git(), sha, target.config.database.migrations, Path(temp))
        ctx.log(f"the migration scripts come from commit {sha[:12]}, which has the database's revision")
        rows = apply(target, "downgrade", to, set(ctx.state["rows_after"]), ctx, directory=folder)
    ctx.did(f"downgraded {ctx.target}'s database to {', '.join(sorted(rows)) or 'base'}")
    ctx.progress(1.0, to)


def reset_after_downgrade(ctx: JobContext) -> None:
    try:
        code.reset_branch(ctx)
    except StepFailed as exc:
        raise StepFailed(
            f"{exc} The database was already downgraded to {ctx.state['downgrade_to']}: "
            "reset the code by hand, or upgrade the schema back"
        ) from None
    ctx.set_result(f"{ctx.result or ''}{backup_first.backup_note(ctx)}".strip())


register(
    Runbook(
        name="downgrade_then_reset",
        title="Downgrade the schema, then reset the code",
        description="When a reset would leave the code behind the schema: take a verified backup when the downgrade "
        "destroys data, downgrade with the deployed commit's scripts, tag the head, reset, restart, verify code and "
        "schema.",
        role=Role.ADMIN,
        mutates=True,
        params=(
            Param("commit", "Commit", check=_commit),
            backup_first.BACKUP_CONFIRMED,
            backup_first.SKIP_BACKUP,
            Param("confirm", "Type the target name to confirm", required=False, default=""),
        ),
        check=_check,
        steps=(
            Step("plan", "What the downgrade destroys", plan),
            schema_runbooks.BACKUP,
            schema_runbooks.VERIFY_BACKUP,
            code.CHECKPOINT,
            Step("downgrade", "Downgrade the schema", downgrade_with_scripts_of_the_deployed_commit),
            Step("tag", "Tag the current head", code.tag_old_head),
            Step("reset", "Reset the code", reset_after_downgrade),
            code.RESTART,
            code.VERIFY,
        ),
    )
)
