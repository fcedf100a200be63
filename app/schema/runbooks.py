"""Schema runbooks (upgrade, downgrade) and the schema part of every checkpoint.

Revisions are checked against the migrations folder and alembic_version
before a job is queued: unknown, ambiguous, already applied or not applied
revisions never reach `flask db`. After the command, alembic_version alone
says whether it worked.
"""

from __future__ import annotations

from app.auth.roles import Role
from app.checkpoints.captures import Capture
from app.checkpoints.captures import register as register_capture
from app.jobs import steps
from app.jobs.context import JobContext
from app.jobs.engine import current_targets
from app.jobs.runbook import CONFIRM, Param, ParamError, Runbook, Step, StepFailed, confirm_protected, register
from app.schema import backup_first
from app.schema.destroys import DowngradePlan, plan_downgrade, revisions_word
from app.schema.migrate import apply
from app.schema.state import read_state, unversioned_drift
from app.targets.errors import TargetError
from app.targets.migrations import folder_files, read_folder
from app.targets.revision_graph import RevisionError, RevisionGraph
from app.targets.schema_db import current_revisions, unversioned_tables
from app.targets.target import Target

# --- the checkpoint's schema part ----------------------------------------------------


def _take(target: Target) -> dict | None:
    database = target.config.database
    if database is None or database.migrations is None:
        return None
    return {"revisions": sorted(current_revisions(database.url))}


SCHEMA = register_capture(
    Capture(
        "schema", "Schema", _take, lambda v: ", ".join(v["revisions"]) or "no revision applied", moved_by_start=True
    )
)


# --- reading what a parameter is checked against ---------------------------------------


def _migrations(target_name: str | None, param: str = "revision") -> tuple[Target, RevisionGraph, set[str]]:
    target = current_targets().open(target_name)
    database = target.config.database
    if database is None or database.migrations is None:
        raise ParamError(
            "target", f"{target_name} has no migrations: set database.migrations in [targets.{target_name}.database]"
        )
    try:
        return target, read_folder(database.migrations), current_revisions(database.url)
    except TargetError as exc:
        raise ParamError(param, exc.message) from None


def _refuse(exc: RevisionError) -> ParamError:
    text = exc.message
    if exc.choices:
        text += f"; choose one of: {', '.join(exc.choices)}"
        return ParamError("revision", text)
    return ParamError("revision", exc.in_words())


def _code_behind(graph: RevisionGraph, current: set[str]) -> None:
    if unknown := graph.unknown(current):
        raise ParamError(
            "revision",
            f"the database is at {', '.join(unknown)}, which the deployed code does not have: "
            "flask db cannot run until code and schema agree — deploy a commit that has it",
        )


def _unversioned(t: Target, current: set[str]) -> None:
    """No alembic_version table, yet tables: an upgrade from nothing would create them again; refused."""
    if current:
        return
    try:
        tables = unversioned_tables(t.config.database.url)
    except TargetError as exc:
        raise ParamError("revision", exc.message) from None
    if tables:
        raise ParamError("revision", f"{unversioned_drift(tables)} Nothing was changed.")


def upgrade_revision(value: str, target: str | None) -> str:
    """'heads', or the full id of a pending revision ('head' only when there is one head)."""
    t, graph, current = _migrations(target)
    _code_behind(graph, current)
    _unversioned(t, current)
    spec = (value or "heads").strip()
    try:
        if spec == "head":
            if len(graph.heads) > 1:
                raise RevisionError(
                    f"head is ambiguous: the migrations have {len(graph.heads)} heads",
                    choices=[*graph.heads, "heads"],
                )
            spec = graph.heads[0] if graph.heads else spec
        rev = "heads" if spec == "heads" else graph.resolve(spec)
        graph.upgrade_plan(current, rev)
    except RevisionError as exc:
        raise _refuse(exc) from None
    return rev


def downgrade_revision(value: str, target: str | None) -> str:
    """The full id of an applied revision to go down to, or 'base'; '-1' is one step, refused when ambiguous."""
    _t, graph, current = _migrations(target)
    _code_behind(graph, current)
    spec = (value or "").strip()
    try:
        rev = graph.one_step_down(current) if spec == "-1" else ("base" if spec == "base" else graph.resolve(spec))
        graph.downgrade_plan(current, rev)
    except RevisionError as exc:
        raise _refuse(exc) from None
    return rev


def _stale_review(target: str | None, seen: str, now: set[str], *, when: str = "the downgrade's review showed") -> str:
    return (
        f"{target}'s database is now at {revisions_word(now).replace(',', ', ')}, not at {seen.replace(',', ', ')} as "
        f"{when}: nothing was changed; review the downgrade again"
    )


def _expect_reviewed(value: str, target: str | None) -> str:
    """At queue time: the database is still where the review page showed it. Moved since (someone upgraded), the
    same revision would run downgrade() functions the person never saw listed."""
    _t, _graph, current = _migrations(target, "expect")
    seen = revisions_word({rev.strip() for rev in value.split(",") if rev.strip() and rev.strip() != "base"})
    if seen != revisions_word(current):
        raise ParamError("expect", _stale_review(target, seen, current))
    return seen


EXPECT_REVIEWED = Param(
    "expect",
    "Revisions reviewed",
    required=False,
    default="",
    check=_expect_reviewed,
    help="the database's revisions the review page showed: refused if they have moved since (from the shell, optional)",
)


def downgrade_plan(target: Target, to: str) -> tuple[RevisionGraph, DowngradePlan]:
    database = target.config.database
    graph = read_folder(database.migrations)
    current = current_revisions(database.url)
    return graph, plan_downgrade(database.url, graph, current, to, folder_files(database.migrations))


def _check_downgrade(params: dict, target: str | None) -> None:
    try:
        _graph, plan = downgrade_plan(current_targets().open(target), params["revision"])
    except TargetError as exc:
        raise ParamError("revision", exc.message) from None
    backup_first.check_params(params, target, plan.destroys_data, plan.summary(), "this downgrade")
    confirm_protected(params, target, " the downgrade")


# --- steps ---------------------------------------------------------------------------------


def _log_state(ctx: JobContext, target: Target) -> None:
    for line in read_state(target).lines():
        ctx.log(line)


def upgrade(ctx: JobContext) -> None:
    target = steps.target_of(ctx)
    revision = ctx.params["revision"]
    with steps.adapter_errors(ctx):
        graph = read_folder(target.config.database.migrations)
        current = current_revisions(target.config.database.url)
        try:
            order, expected = graph.upgrade_plan(current, revision)
        except RevisionError as exc:
            raise StepFailed(f"the database changed since the job was queued: {exc.message}") from None
        ctx.log(f"upgrading through {len(order)} revision(s), oldest first: {', '.join(order)}")
        rows = apply(target, "upgrade", revision, expected, ctx)
    ctx.did(f"upgraded {ctx.target}'s database to {', '.join(sorted(rows))}")
    ctx.set_result(f"{ctx.target}'s database is at {', '.join(sorted(rows))}.")
    ctx.progress(1.0, ", ".join(sorted(rows)))


PLAN_READ_AT = "downgrade_plan_read_at"  # alembic_version as show_losses read its plan (revisions_word)


def show_losses(ctx: JobContext) -> None:
    """Before the downgrade: every operation on the way down, and what the dropped tables and columns hold now."""
    target = steps.target_of(ctx)
    seen = ctx.params.get("expect") or ""
    with steps.adapter_errors(ctx):
        if seen and seen != revisions_word(now := current_revisions(target.config.database.url)):
            raise StepFailed(_stale_review(ctx.target, seen, now, when="the review showed when this job was queued"))
        graph, plan = downgrade_plan(target, ctx.params["revision"])
    ctx.state[PLAN_READ_AT] = plan.reviewed_at  # the downgrade step runs this plan, or nothing
    for line in plan.lines(graph):
        ctx.log(line)
    backup_first.note_losses(ctx, plan.destroys_data, plan.summary(), ctx.params["revision"])
    ctx.progress(1.0, plan.summary())


def downgrade(ctx: JobContext) -> None:
    target = steps.target_of(ctx)
    to = ctx.params["revision"]
    with steps.adapter_errors(ctx):
        graph = read_folder(target.config.database.migrations)
        current = current_revisions(target.config.database.url)
        # Moved by hand since the plan was listed (a backup can take minutes): the same revision would run
        # downgrade() functions the job never listed, nor took a backup for.
        if (listed := ctx.state.get(PLAN_READ_AT)) is not None and listed != revisions_word(current):
            raise StepFailed(_stale_review(ctx.target, listed, current, when="this job listed its plan"))
        try:
            order, expected = graph.downgrade_plan(current, to)
        except RevisionError as exc:
            raise StepFailed(f"the database changed since the job was queued: {exc.message}") from None
        ctx.log(f"downgrading {len(order)} revision(s), newest first: {', '.join(order)}")
        rows = apply(target, "downgrade", to, expected, ctx)
    now = ", ".join(sorted(rows)) or "base (no revision)"
    ctx.did(f"downgraded {ctx.target}'s database to {now}")
    ctx.state[MOVED_DOWN] = True
    ctx.set_result(f"{ctx.target}'s database is at {now}.{backup_first.backup_note(ctx)}")
    ctx.progress(1.0, now)


SCHEMA_BACK = (
    "Next: move the schema back to the revision the checkpoint recorded (upgrade or downgrade), "
    "or fix the cause and verify again"
)


# Set by the downgrade step: the schema was moved behind the code on purpose, so a drift left is the person's next step.
MOVED_DOWN = "schema_moved_down"

CODE_TO_MATCH = (
    "Next: bring them together: move the code on the Deployments tab (revert or reset), "
    "or the schema on the Migrations tab."
)


def verify_app(ctx: JobContext) -> None:
    """Health (and smoke test); then the schema against the code, said in words. Known good only when both match."""
    passed, detail = steps.check_health(ctx, state_checks=False)
    if not passed:
        ctx.verified(False, detail)
        raise steps.unhealthy(ctx, detail, SCHEMA_BACK)
    target = steps.target_of(ctx)
    state = read_state(target)
    _log_state(ctx, target)
    if state.matches:
        steps.verify_passed(ctx, f"{detail}; code and schema match")
        return
    drift = " ".join(d.words for d in state.drift) or state.problem or ""
    ctx.verified(True, f"{detail}; the schema does not match the deployed code yet: {drift}")
    ctx.log("not marked known good: code and schema differ", "err")
    if ctx.state.get(MOVED_DOWN):
        # Healthy, yet not where the target should stay: a plain "succeeded" would read as done. (An upgrade to
        # a chosen pending revision is a step on the way; its next step is the next upgrade, not a warning.)
        ctx.warn(f"{drift} {CODE_TO_MATCH}")


CHECKPOINT = Step("checkpoint", "Record a checkpoint", steps.checkpoint)
VERIFY = Step("verify", "Verify health and schema", verify_app)
# Before the checkpoint, so the checkpoint names the fresh backup as the newest verified one.
BACKUP = Step("backup", "Back up before the downgrade", backup_first.backup_first)
VERIFY_BACKUP = Step("verify_backup", "Verify the backup", backup_first.verify_first)

register(
    Runbook(
        name="schema_upgrade",
        title="Upgrade the schema",
        description="flask db upgrade to the heads or a chosen revision, then check alembic_version and health.",
        role=Role.OPERATOR,
        mutates=True,
        params=(
            Param(
                "revision",
                "Revision",
                required=False,
                default="heads",
                check=upgrade_revision,
                help="heads, head, or a pending revision id",
            ),
        ),
        steps=(CHECKPOINT, Step("upgrade", "Upgrade", upgrade), VERIFY),
    )
)
register(
    Runbook(
        name="schema_downgrade",
        title="Downgrade the schema",
        description="List what the downgrade destroys, take a verified backup first when it destroys data, "
        "flask db downgrade, then check alembic_version and health.",
        role=Role.ADMIN,
        mutates=True,
        params=(
            Param("revision", "Down to revision", check=downgrade_revision, help="-1, base, or an applied revision id"),
            EXPECT_REVIEWED,
            backup_first.BACKUP_CONFIRMED,
            backup_first.SKIP_BACKUP,
            CONFIRM,
        ),
        check=_check_downgrade,
        steps=(
            Step("losses", "What the downgrade destroys", show_losses),
            BACKUP,
            VERIFY_BACKUP,
            CHECKPOINT,
            Step("downgrade", "Downgrade", downgrade),
            VERIFY,
        ),
    )
)
