"""Rewind's own health as a job: the ops database, the audit chain, and the tools rollbacks need.

Read-only, safe to run at any time, and a quick way to see the job engine work.
"""

from __future__ import annotations

import shutil

from sqlalchemy import func, select, text

from app.audit import store
from app.audit.models import AuditEvent
from app.auth.roles import Role
from app.extensions import db
from app.jobs.context import JobContext
from app.jobs.runbook import Runbook, Step, StepFailed, register

TOOLS = (("git", "--version"), ("gpg", "--version"), ("pg_dump", "--version"), ("psql", "--version"))


def check_ops_database(ctx: JobContext) -> None:
    db.session.execute(text("SELECT 1"))
    events = db.session.scalar(select(func.count()).select_from(AuditEvent))
    ctx.log(f"ops database reachable ({db.engine.dialect.name}); {events} audit events")
    ctx.progress(1.0, "reachable")


def check_audit_chain(ctx: JobContext) -> None:
    total = db.session.scalar(select(func.count()).select_from(AuditEvent)) or 1

    def observe(count: int) -> None:
        ctx.progress(count / total, f"{count} of {total} rows")
        ctx.check_cancelled()

    verdict = store.verify(observe=observe)
    if not verdict.intact:
        raise StepFailed(f"the audit chain is broken: {verdict.problem.message}")
    ctx.log(f"audit chain intact: {verdict.checked} rows, head {verdict.head}")
    ctx.progress(1.0, f"{verdict.checked} rows intact")


def check_tools(ctx: JobContext) -> None:
    missing = []
    for index, (tool, flag) in enumerate(TOOLS, start=1):
        if shutil.which(tool) is None:
            missing.append(tool)
            ctx.log(f"{tool}: not found on PATH", "err")
        else:
            ctx.run([tool, flag])
        ctx.progress(index / len(TOOLS), tool)
    ctx.verified(not missing, "all tools found" if not missing else f"missing: {', '.join(missing)}")
    ctx.set_result("Rewind is healthy." if not missing else f"Rewind works, but these tools are missing: {missing}")


SELFCHECK = register(
    Runbook(
        name="selfcheck",
        title="Self-check",
        description="Checks Rewind's ops database, its audit chain, and the tools rollbacks use.",
        role=Role.OPERATOR,
        mutates=False,
        needs_target=False,
        steps=(
            Step("ops_db", "Ops database", check_ops_database),
            Step("audit", "Audit chain", check_audit_chain),
            Step("tools", "Tools", check_tools),
        ),
    )
)
