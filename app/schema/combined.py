"""Downgrade then reset (or revert): the way back past a migration, code and schema together.

When a reset or a revert would leave the code behind the schema, the schema must go
down first, while migration scripts that know the current revision still
exist: those of the deployed commit, or, when a revert or reset already
deleted the revision's file, of the newest commit that still has it. They
are read from git into a temporary folder, so what runs is what that commit
holds; then the code is reset (to the deployed commit itself, to realign a
schema that is ahead of the code) or the commits are reverted, and the
application is restarted and verified — schema included.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from app.auth.roles import Role
from app.deployments import runbooks as code
from app.deployments import seenhead
from app.deployments import steps as code_steps
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.runbook import CONFIRM, Param, ParamError, Runbook, Step, StepFailed, confirm_protected, register
from app.schema import backup_first, gate
from app.schema import runbooks as schema_runbooks
from app.schema.migrate import apply
from app.targets.errors import TargetError
from app.targets.git import GitError
from app.targets.migrations import extract


def _commit(value: str, target: str | None) -> str:
    try:
        return current_targets().open(target).git().resolve(value)
    except GitError as exc:
        raise ParamError("commit", exc.in_words()) from None


_MAIN_PARAM = {"reset": "commit", "revert": "commits"}


def _verdict(target_name: str | None, params: dict, verb: str = "reset") -> gate.GateVerdict:
    target = current_targets().open(target_name)
    verdict = gate.check(target, verb, params)
    if verdict is None:
        raise TargetError(f"{target_name} has no migrations (database.migrations): a plain {verb} will do")
    if not verdict.refused:
        raise TargetError(f"{verdict.message}: nothing to downgrade first, a plain {verb} will do")
    if verdict.plan is None:
        raise TargetError(verdict.said)
    if len(verdict.plan.rows_after) > 1:
        raise TargetError(
            f"{verdict.message}, and going down leaves several heads ({', '.join(sorted(verdict.plan.rows_after))}): "
            f"downgrade each branch with the schema downgrade runbook, then {verb}"
        )
    return verdict


def _check_for(verb: str):
    def check(params: dict, target: str | None) -> None:
        try:
            verdict = _verdict(target, params, verb)
        except TargetError as exc:
            raise ParamError(_MAIN_PARAM[verb], exc.in_words()) from None
        plan, what = verdict.plan, f"the downgrade before the {verb}"
        backup_first.check_params(params, target, plan.destroys_data, plan.summary(), what)
        confirm_protected(params, target, f" the downgrade and the {verb}")

    return check


def _plan_for(verb: str):
    def plan(ctx: JobContext) -> None:
        with steps.adapter_errors(ctx):
            # The checkout must take the code change before the schema goes down: a lock file, someone's rebase,
            # a hot-fix found only at the reset would leave the database downgraded under the old code.
            code_steps.git_of(ctx).ready_to_change(verb)
            verdict = _verdict(ctx.target, ctx.params, verb)
        to = next(iter(verdict.plan.rows_after), "base")
        ctx.state.update(
            downgrade_to=to,
            downgrade_arg=verdict.downgrade_arg or to,
            rows_after=sorted(verdict.plan.rows_after),
            scripts_from=verdict.scripts_from,
        )
        ctx.log(f"{verdict.message}; plan: {verdict.fix}")
        for line in verdict.plan.lines():
            ctx.log(line)
        backup_first.note_losses(ctx, verdict.plan.destroys_data, verdict.plan.summary(), to)
        ctx.progress(1.0, f"down to {to}")

    return plan


def downgrade_with_scripts_of_the_deployed_commit(ctx: JobContext) -> None:
    target = steps.target_of(ctx)
    to, sha = ctx.state["downgrade_to"], ctx.state["scripts_from"]
    with tempfile.TemporaryDirectory(prefix="rewind-scripts-") as temp, steps.adapter_errors(ctx):
        folder = extract(target.git(), sha, target.config.database.migrations, Path(temp))
        ctx.log(f"the migration scripts come from commit {sha[:12]}, which has the database's revision")
        rows = apply(
            target, "downgrade", ctx.state["downgrade_arg"], set(ctx.state["rows_after"]), ctx, directory=folder
        )
    ctx.did(f"downgraded {ctx.target}'s database to {', '.join(sorted(rows)) or 'base'}")
    ctx.progress(1.0, to)


def _after_downgrade(code_step, verb: str):
    """The code change once the schema is down; its failure says the database already moved."""

    def run(ctx: JobContext) -> None:
        try:
            code_step(ctx)
        except StepFailed as exc:
            raise StepFailed(
                f"{exc} The database was already downgraded to {ctx.state['downgrade_to']}: "
                f"{verb} the code by hand, or upgrade the schema back"
            ) from None
        ctx.set_result(f"{ctx.result or ''}{backup_first.backup_note(ctx)}".strip())

    return run


def release_after_downgrade(ctx: JobContext) -> None:
    code_steps.release(ctx, schema_at=ctx.state["downgrade_to"])


reset_after_downgrade = _after_downgrade(code.reset_branch, "reset")
DOWNGRADE = Step("downgrade", "Downgrade the schema", downgrade_with_scripts_of_the_deployed_commit)
RELEASE = Step("release", "Run the release commands", release_after_downgrade)


register(
    Runbook(
        name="downgrade_then_reset",
        title="Downgrade the schema, then reset the code",
        description="When a reset would leave the code behind the schema: take a verified backup when the downgrade "
        "destroys data, downgrade with the deployed commit's scripts, tag the head, reset, run the release commands, "
        "restart, verify code and schema.",
        role=Role.ADMIN,
        mutates=True,
        params=(
            seenhead.SEEN_HEAD,  # first: on a stale page, the moved head is what to say
            Param("commit", "Commit", check=_commit),
            backup_first.BACKUP_CONFIRMED,
            backup_first.SKIP_BACKUP,
            CONFIRM,
        ),
        check=_check_for("reset"),
        steps=(
            code.HEAD,
            Step("plan", "What the downgrade destroys", _plan_for("reset")),
            schema_runbooks.BACKUP,
            schema_runbooks.VERIFY_BACKUP,
            code.CHECKPOINT,
            DOWNGRADE,
            Step("tag", "Tag the current head", code.tag_old_head),
            Step("reset", "Reset the code", reset_after_downgrade),
            RELEASE,
            code.RESTART,
            code.VERIFY,
        ),
    )
)
register(
    Runbook(
        name="downgrade_then_revert",
        title="Downgrade the schema, then revert commits",
        description="When a revert would remove revisions the database is at: take a verified backup when the "
        "downgrade destroys data, downgrade with the deployed commit's scripts (which still have them), revert, "
        "run the release commands, restart, verify code and schema; push if a remote is set.",
        role=Role.ADMIN,
        mutates=True,
        params=(
            seenhead.SEEN_HEAD,
            Param("commits", "Commits", check=code._commits, help="one or more commit ids, 7-40 hex characters"),
            backup_first.BACKUP_CONFIRMED,
            backup_first.SKIP_BACKUP,
            CONFIRM,
        ),
        check=_check_for("revert"),
        steps=(
            code.HEAD,
            Step("plan", "What the downgrade destroys", _plan_for("revert")),
            schema_runbooks.BACKUP,
            schema_runbooks.VERIFY_BACKUP,
            code.CHECKPOINT,
            DOWNGRADE,
            Step("revert", "Revert the commits", _after_downgrade(code.revert_commits, "revert")),
            RELEASE,
            code.RESTART,
            code.VERIFY,
            code.PUSH,
        ),
    )
)
