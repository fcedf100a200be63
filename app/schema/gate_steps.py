"""The schema gate and the upgrade after a code change, as steps and checks of the code runbooks.

Revert, reset and deploy use these: a check before queueing that refuses a
change leaving the code behind the schema (with the plan), the same gate
again when the job runs (an admin may override it with a typed reason,
audited), and `flask db upgrade` after the code change and before the
restart when the new code brings revisions.
"""

from __future__ import annotations

from sqlalchemy import select

from app.audit.store import Actor, record_and_commit
from app.auth.models import User
from app.auth.roles import Role
from app.extensions import db
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.models import Job
from app.jobs.runbook import Param, ParamError, Step, StepFailed
from app.schema import gate
from app.schema.migrate import apply
from app.schema.state import unversioned_drift
from app.targets.errors import TargetError
from app.targets.migrations import read_folder
from app.targets.schema_db import current_revisions, unversioned_tables
from app.targets.target import Target

GATE_OVERRIDE = Param(
    "gate_override",
    "Override the schema gate (admins: type the reason)",
    required=False,
    default="",
    help="only when the code must move past the schema anyway; audited with the reason",
    role=Role.ADMIN,
    role_refusal="only an admin can override the schema gate",
)
_MAIN_PARAM = {"revert": "commits", "reset": "commit", "deploy": "ref"}


def gate_check(runbook: str):
    """A Runbook.check: refuse a code change that would leave the code behind the schema, with the plan."""

    def check(params: dict, target: str | None) -> None:
        if (params.get("gate_override") or "").strip():
            return  # only an admin may give a reason: service.enqueue checks it against the job's actor
        try:
            verdict = gate.check(current_targets().open(target), runbook, params)
        except TargetError as exc:
            raise ParamError(_MAIN_PARAM[runbook], cannot_compare_words(exc.in_words())) from None
        if verdict is not None and verdict.refused:
            raise ParamError(_MAIN_PARAM[runbook], refused_words(runbook, verdict))

    return check


def refused_words(runbook: str, verdict: gate.GateVerdict) -> str:
    """What a refused form says (its flash, its audit row): the page with the refusal's panel knows them too."""
    combined = {"reset": "downgrade_then_reset", "revert": "downgrade_then_revert"}.get(runbook)
    both = f" The runbook {combined} does both." if combined and verdict.plan else ""
    return f"{verdict.said}.{both} An admin can override the gate with a typed reason."


def cannot_compare_words(why: str) -> str:
    return (
        f"the schema gate cannot compare the code with the database: {why}; "
        "fix that, or an admin can override the gate with a typed reason"
    )


def _actor_is_admin(ctx: JobContext) -> tuple[Actor, bool]:
    job = db.session.get(Job, ctx.job_id)
    actor = Actor(job.actor_id, job.actor_name)
    if job.actor_id is None:  # Rewind itself (a schedule, a test harness): no person to check
        return actor, True
    user = db.session.scalar(select(User).where(User.id == job.actor_id))
    return actor, bool(user and user.can(Role.ADMIN))


def gate_step(runbook: str):
    """The gate again when the job runs (things may have moved since it was queued), before the code changes."""

    def run(ctx: JobContext) -> None:
        target = steps.target_of(ctx)
        reason = (ctx.params.get("gate_override") or "").strip()
        try:
            verdict = gate.check(target, runbook, ctx.params)
        except TargetError as exc:
            if not reason:
                raise StepFailed(
                    f"the schema gate cannot compare the code with the database: {exc.in_words()}"
                ) from None
            verdict = None
            ctx.log(f"the schema gate cannot compare: {exc.in_words()}", "err")
        if verdict is None and not reason:
            ctx.skip(f"{ctx.target} has no migrations (database.migrations): nothing to compare")
        if verdict is not None and not verdict.refused:
            ctx.log(f"schema gate: {verdict.message}")
            ctx.progress(1.0, "code and schema stay together")
            return
        if not reason:
            raise StepFailed(f"{verdict.said}.")
        actor, admin = _actor_is_admin(ctx)
        if not admin:
            raise StepFailed(f"only an admin can override the schema gate; {actor.name} is not one")
        refused = verdict.said if verdict is not None else "gate could not compare"
        record_and_commit(
            "schema.gate_override",
            actor=actor,
            target=ctx.target,
            details={"job_id": ctx.job_id, "runbook": runbook, "reason": reason, "refused": refused},
        )
        ctx.log(f"SCHEMA GATE OVERRIDDEN by {actor.name}: {reason} (it said: {refused})", "err")
        ctx.progress(1.0, "overridden")

    return run


def migrate_after_code_change(ctx: JobContext) -> None:
    """After the code change, before the restart: upgrade to the new code's heads when migrate_on_deploy is on."""
    target = steps.target_of(ctx)
    database = target.config.database
    if database is None or database.migrations is None:
        ctx.skip("no migrations configured (database.migrations)")
    if not database.migrate_on_deploy:
        ctx.skip("database.migrate_on_deploy is off: the application migrates itself; verification checks the schema")
    with steps.adapter_errors(ctx):
        graph = read_folder(database.migrations)
        current = current_revisions(database.url)
    if graph.unknown(current):
        ctx.skip(f"the database is at {', '.join(graph.unknown(current))}, which this code lacks: not upgrading")
    if not graph.pending(current):
        ctx.skip("the database already has every revision of this code")
    with steps.adapter_errors(ctx):
        unversioned = [] if current else unversioned_tables(database.url)
    if unversioned:  # an upgrade from nothing would create its tables again
        raise StepFailed(f"{str(unversioned_drift(unversioned)).rstrip('.')}{_put_code_back(ctx, target)}")
    _order, expected = graph.upgrade_plan(current, "heads")
    ctx.log(f"upgrading to the new code's heads: {', '.join(graph.pending(current)[::-1])}")
    try:
        with steps.adapter_errors(ctx):
            rows = apply(target, "upgrade", "heads", expected, ctx)
    except StepFailed as exc:
        raise StepFailed(f"{exc}{_put_code_back(ctx, target)}") from None
    ctx.did(f"upgraded {ctx.target}'s database to {', '.join(sorted(rows))}")
    ctx.progress(1.0, ", ".join(sorted(rows)))


def code_back_refusal(target: Target, start: str) -> str | None:
    """Why putting the code back at `start` would leave it behind the schema (the deploy upgraded it), or None.

    The gate refuses that to a person; an automatic rollback must not do it behind their back either: the old
    code would restart against revisions it does not have, and `flask db` could no longer run in its checkout.
    A gate that cannot compare does not stop the rollback (it would have gone ahead before the gate existed).
    """
    try:
        verdict = gate.check(target, "reset", {"commit": start})
    except TargetError:
        return None
    if verdict is None or not verdict.refused:
        return None
    combined = f"; “Downgrade then reset” to {start[:12]} does both" if verdict.plan else ""
    return f"{verdict.said}{combined}"


def _put_code_back(ctx: JobContext, target: Target) -> str:
    """After a failed upgrade in a deploy: the old commit back as auto_rollback says; the app was never restarted."""
    if "auto_rollback" not in ctx.params:
        return ". The code is changed but the application was not restarted: roll the code back by hand."
    choice = ctx.params.get("auto_rollback") or "default"
    if not (target.config.auto_rollback if choice == "default" else choice == "on"):
        return (
            ". Automatic rollback is off: the new code is checked out but the application was not restarted — "
            "reset to the previous commit by hand."
        )
    from app.deployments import steps as code

    start = code.start_commit(ctx)
    refusal = code_back_refusal(target, start)
    if refusal:  # the upgrade got part-way: the old code would be behind the revisions it did apply
        return (
            f". The code was not put back: {refusal}. The new code stays checked out, as the schema needs, but the "
            "application was not restarted: it still runs the old code — finish or undo the migration before its "
            "next restart"
        )
    repo = code.git_of(ctx)
    try:
        with steps.adapter_errors(ctx):
            tag = repo.tag_safety(prefix="rewind/failed-deploy")
            repo.reset_hard(start, sink=ctx)
    except StepFailed as exc:  # said after the failed upgrade, never instead of it
        return (
            f". Then putting the code back to {start[:12]} failed too: {exc}. The new code is checked out but the "
            f"application was not restarted — put the code back by hand before its next restart"
        )
    ctx.did(f"put the code back to {start[:12]}")
    put_back = f". The code was put back to {start[:12]} (the failed deploy is kept as tag {tag})"
    # The new commit's release wrote its files (built assets, installed dependencies): the old commit's release
    # writes them again, so the checkout is what the running application was started from.
    try:
        steps.run_release_commands(ctx, target)
    except steps.ReleaseFailed as exc:
        return (
            f"{put_back}, but its release commands failed again: {exc}; the application was never restarted, "
            "so it still runs the old code — run them by hand before its next restart"
        )
    return f"{put_back}; the application was never restarted, so it still runs the old code"


MIGRATE = Step("migrate", "Upgrade the schema (migrate_on_deploy)", migrate_after_code_change)
