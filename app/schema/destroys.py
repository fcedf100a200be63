"""What a downgrade would destroy: the operations of every downgrade() on the way down, and what they hold now.

Read before anything runs, from the migration files' source (never run) and
with read-only counts from the target database, so the person confirming a
downgrade sees "drops user.token: 2 non-null values", not just a revision id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.targets.errors import TargetError
from app.targets.migration_ops import Operation, downgrade_operations
from app.targets.revision_graph import RevisionGraph
from app.targets.schema_db import count


@dataclass(frozen=True)
class Loss:
    operation: Operation
    held: int | None  # rows of a dropped table, non-null values of a dropped/retyped column; None: absent or unknown

    @property
    def destroys(self) -> bool:
        if not self.operation.loses_data:
            return False
        if self.operation.kind == "execute":
            return True  # raw SQL: Rewind cannot tell, so it counts as destructive
        return bool(self.held)

    def __str__(self) -> str:
        op = self.operation
        where = ".".join(p for p in (op.table, op.column) if p)
        if op.kind == "drop_table":
            text = f"drops table {where}"
        elif op.kind == "drop_column":
            text = f"drops {where}"
        elif op.kind == "alter_column":
            text = f"alters {where}" + (f" ({op.detail})" if op.detail else "")
        elif op.kind == "execute":
            return f"runs raw SQL: {op.detail}"
        elif op.kind == "raises":
            return f"cannot be downgraded: its downgrade() raises {op.detail} (line {op.line})"
        elif op.kind == "empty":
            return (
                "its downgrade() does nothing: alembic_version moves down, but what its upgrade() made stays "
                "(upgrading again may fail on it)"
            )
        else:  # drop_index, drop_constraint: the detail already names what ("index ix_user_name")
            verb, _, noun = op.kind.partition("_")
            what = op.detail if op.detail.startswith(noun + " ") else f"{noun} {op.detail}".strip()
            return f"{verb} {what} on {where or '?'}"
        if op.kind in ("drop_table", "drop_column") or "type" in op.detail:
            if self.held is None:
                text += ", not in the database now"
            elif op.kind == "drop_table":
                text += f", holding {self.held} row{'s' * (self.held != 1)}"
            else:
                text += f", holding {self.held} non-null value{'s' * (self.held != 1)}"
        return text


class IrreversibleDowngrade(TargetError):
    """A revision on the way down has a downgrade() that raises: refused before anything runs."""

    def __init__(self, revision: str, file: str, operation: Operation) -> None:
        # what to do is in the message itself: every door (a form, the confirmation page, a job) shows the message
        super().__init__(
            f"{revision} cannot be downgraded: its downgrade() in {file} raises {operation.detail} "
            f"(line {operation.line}); nothing was changed. Restore a backup taken before {revision} was applied, "
            "or move forward with a new migration instead"
        )
        self.revision = revision


def revisions_word(revisions: Iterable[str]) -> str:
    """Revisions as a form carries them (the downgrade review's `expect`): sorted, comma-separated; 'base' for none."""
    return ",".join(sorted(revisions)) or "base"


@dataclass
class DowngradePlan:
    to: str
    order: list[str]  # revisions whose downgrade() runs, newest first
    rows_after: set[str]
    losses: dict[str, list[Loss]] = field(default_factory=dict)  # per revision
    rows_before: set[str] = field(default_factory=set)  # alembic_version when the plan was read

    @property
    def reviewed_at(self) -> str:
        """Where the database was when this plan was read, as the review page's form carries it."""
        return revisions_word(self.rows_before)

    @property
    def destroys_data(self) -> bool:
        return any(loss.destroys for losses in self.losses.values() for loss in losses)

    def summary(self) -> str:
        """The destructive part in a few words, e.g. "drops user.token: 2 non-null values"."""
        bad = [str(loss) for losses in self.losses.values() for loss in losses if loss.destroys]
        return "; ".join(bad) if bad else "destroys no data"

    def lines(self, graph: RevisionGraph | None = None) -> list[str]:
        out = []
        for rev in self.order:
            message = graph.revisions[rev].message if graph is not None and rev in graph.revisions else ""
            out.append(f"downgrade {rev}" + (f" ({message})" if message else "") + ":")
            losses = self.losses.get(rev, [])
            out.extend(f"  {'DESTROYS ' if loss.destroys else ''}{loss}" for loss in losses)
            if not losses:
                out.append("  no table, column, type, constraint or index dropped; no raw SQL")
        return out


def plan_downgrade(
    url: str, graph: RevisionGraph, current: set[str], to: str, sources: dict[str, str], *, keep: set[str] | None = None
) -> DowngradePlan:
    """The downgrade to `to` (or down to what `keep` needs), its operations, and what they hold now.

    `sources` maps revision file names to their text (a folder's or a commit's).
    """
    if keep is not None:
        order, rows = graph.retreat(current, keep)
    else:
        order, rows = graph.downgrade_plan(current, to)
    plan = DowngradePlan(to, order, rows, rows_before=set(current))
    for rev in order:
        source = sources.get(graph.revisions[rev].file, "")
        losses = []
        for op in downgrade_operations(rev, source):
            if op.kind == "raises":
                raise IrreversibleDowngrade(rev, graph.revisions[rev].file, op)
            held = None
            if op.table and op.kind in ("drop_table", "drop_column", "alter_column"):
                if op.kind == "drop_table":
                    held = count(url, op.table)
                elif op.column:
                    held = count(url, op.table, op.column)
            losses.append(Loss(op, held))
        plan.losses[rev] = losses
    return plan
