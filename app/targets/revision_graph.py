"""The Alembic revision graph as plain data: heads, branches, merges, what is applied, and walks between revisions.

Pure: it never reads a file or a database. The reader (migrations.py) builds
it from a migrations folder or a commit; the database's `alembic_version`
rows come from elsewhere. Order comes only from `down_revision` edges, never
from dates. `depends_on` makes a revision need another one applied first but,
as in Alembic, does not make it an ancestor in the version table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.targets.errors import TargetError


class RevisionError(TargetError):
    """A revision that cannot be used as asked: unknown, ambiguous, or not applied."""

    def __init__(self, message: str, *, fix: str = "", choices: Iterable[str] = ()) -> None:
        super().__init__(message, fix=fix)
        self.choices = tuple(choices)


class GraphError(TargetError):
    """The migrations folder does not form a usable graph (a missing down_revision, a cycle)."""


@dataclass(frozen=True)
class Revision:
    id: str
    down: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    message: str = ""
    file: str = ""  # the file name inside the versions folder
    branch_labels: tuple[str, ...] = ()

    @property
    def is_merge(self) -> bool:
        return len(self.down) > 1

    @property
    def is_base(self) -> bool:
        return not self.down


@dataclass
class RevisionGraph:
    revisions: dict[str, Revision] = field(default_factory=dict)

    @classmethod
    def of(cls, revisions: Iterable[Revision]) -> RevisionGraph:
        graph = cls({r.id: r for r in revisions})
        for rev in sorted(graph.revisions.values(), key=lambda r: r.id):
            for parent in (*rev.down, *rev.depends_on):
                if parent not in graph.revisions:
                    raise GraphError(
                        f"revision {rev.id} ({rev.file}) names {parent} as its parent, but no migration file has it",
                        fix="restore the missing migration file or fix down_revision",
                    )
        graph._check_acyclic()
        return graph

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}
        for start in self.revisions:
            stack = [(start, iter(self._parents(start)))]
            if state.get(start):
                continue
            state[start] = 1
            while stack:
                node, parents = stack[-1]
                nxt = next(parents, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    raise GraphError(f"the revisions form a cycle through {nxt}", fix="fix down_revision in its file")
                elif not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, iter(self._parents(nxt))))

    def _parents(self, rev: str) -> tuple[str, ...]:
        r = self.revisions[rev]
        return (*r.down, *r.depends_on)

    def __contains__(self, rev: str) -> bool:
        return rev in self.revisions

    def __len__(self) -> int:
        return len(self.revisions)

    # --- shape ---------------------------------------------------------------------

    def children(self, rev: str) -> list[str]:
        return sorted(r.id for r in self.revisions.values() if rev in r.down)

    @property
    def heads(self) -> list[str]:
        """Revisions no other revision builds on (down_revision only, as Alembic counts heads)."""
        parents = {p for r in self.revisions.values() for p in r.down}
        return sorted(r for r in self.revisions if r not in parents)

    @property
    def bases(self) -> list[str]:
        return sorted(r.id for r in self.revisions.values() if r.is_base)

    def branch_points(self) -> list[str]:
        return [r for r in self.newest_first() if len(self.children(r)) > 1]

    def merges(self) -> list[str]:
        return [r for r in self.newest_first() if self.revisions[r].is_merge]

    def ancestors(self, rev: str, *, include_self: bool = True) -> set[str]:
        """Everything that must be applied for `rev` to be applied (down_revision and depends_on)."""
        seen: set[str] = set()
        todo = [rev] if include_self else list(self._parents(rev))
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            todo.extend(self._parents(node))
        return seen

    def descendants(self, rev: str) -> set[str]:
        """Everything built on `rev`, through down_revision or depends_on (not `rev` itself)."""
        return {r for r in self.revisions if r != rev and rev in self.ancestors(r)}

    def newest_first(self) -> list[str]:
        """A topological order, heads first, ties by id so the order is stable."""
        placed: list[str] = []
        done: set[str] = set()
        remaining = set(self.revisions)
        while remaining:
            ready = sorted(r for r in remaining if all(p in done for p in self._parents(r)))
            placed.extend(ready)
            done.update(ready)
            remaining.difference_update(ready)
        return placed[::-1]

    # --- against the database ------------------------------------------------------

    def unknown(self, current: Iterable[str]) -> list[str]:
        """Rows of alembic_version this code has no file for: the code is behind the schema."""
        return sorted(c for c in current if c not in self.revisions)

    def applied(self, current: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for rev in current:
            if rev in self.revisions:
                found |= self.ancestors(rev)
        return found

    def pending(self, current: Iterable[str]) -> list[str]:
        applied = self.applied(current)
        return [r for r in self.newest_first() if r not in applied]

    def version_rows(self, applied: set[str]) -> set[str]:
        """What alembic_version holds when exactly `applied` is applied: the applied revisions none builds on."""
        below = {p for r in applied for p in self.revisions[r].down}
        return {r for r in applied if r not in below}

    # --- naming revisions ----------------------------------------------------------

    def resolve(self, spec: str) -> str:
        """A full revision id from a full id or a unique prefix (as Alembic accepts)."""
        spec = (spec or "").strip()
        if not spec:
            raise RevisionError("no revision given", choices=self.newest_first())
        if spec in self.revisions:
            return spec
        found = sorted(r for r in self.revisions if r.startswith(spec))
        if len(found) == 1:
            return found[0]
        if found:
            raise RevisionError(
                f"revision {spec!r} is ambiguous: it starts {', '.join(found)}",
                fix="give more characters",
                choices=found,
            )
        raise RevisionError(
            f"there is no revision {spec!r} in the migrations folder",
            fix=f"choose one of {', '.join(self.newest_first()) or 'none (the folder is empty)'}",
            choices=self.newest_first(),
        )

    def one_step_down(self, current: Iterable[str]) -> str:
        """Where `downgrade -1` goes: the one parent of the one current revision, or 'base'.

        Several current heads, or a merge revision, leave Alembic to guess which
        branch to take down: refused with the revisions to choose from instead.
        """
        rows = sorted(current)
        if not rows:
            raise RevisionError("the database has no revision applied: there is nothing to downgrade")
        if len(rows) > 1:
            raise RevisionError(
                f"downgrade -1 is ambiguous: the database is at {len(rows)} heads ({', '.join(rows)})",
                fix="choose the revision to go down to",
                choices=self._down_choices(rows),
            )
        (head,) = rows
        if head not in self.revisions:
            raise RevisionError(f"the database is at {head}, which these migrations do not have")
        rev = self.revisions[head]
        if rev.is_merge:
            raise RevisionError(
                f"downgrade -1 is ambiguous: {head} merges {', '.join(rev.down)}",
                fix="choose which branch to go down to",
                choices=rev.down,
            )
        return rev.down[0] if rev.down else "base"

    def _down_choices(self, rows: list[str]) -> list[str]:
        choices: list[str] = []
        for row in rows:
            if row in self.revisions:
                choices.extend(p for p in self.revisions[row].down if p not in choices)
        return choices or ["base"]

    def downgrade_plan(self, current: Iterable[str], to: str) -> tuple[list[str], set[str]]:
        """The revisions whose downgrade() runs (newest first) and the alembic_version rows after it.

        `to` must be applied already ('base' takes everything down).
        """
        current = set(current)
        applied = self.applied(current)
        if to == "base":
            keep: set[str] = set()
        else:
            if to not in applied:
                raise RevisionError(
                    f"revision {to} is not applied, so the database cannot be downgraded to it",
                    fix="choose an applied revision",
                    choices=[r for r in self.newest_first() if r in applied],
                )
            keep = applied - self.descendants(to)
        order, rows = self.retreat(current, keep)
        if not order:
            raise RevisionError(f"the database is already at {to}: there is nothing to downgrade")
        return order, rows

    def downgrade_argument(self, order: Iterable[str], rows_after: set[str]) -> str:
        """What `flask db downgrade` takes to run exactly `order`'s downgrades, leaving `rows_after`.

        Alembic's `downgrade X` takes down what is built on X, nothing else: with two heads applied, going down to
        one of them does nothing at all. When what must go is one branch above a revision that stays (a second
        head), `R@-N` takes that branch down alone: Alembic counts the N steps down from the applied head of R's
        branch (not from R), so N is the length of the chain to go, R its lowest revision.
        """
        removed = set(order)
        to = next(iter(sorted(rows_after)), "base")
        if to == "base" or len(rows_after) > 1 or removed <= self.descendants(to):
            return to
        roots = [r for r in removed if not set(self.revisions[r].down) & removed]
        # One line of revisions above R, no fork: the steps down from its head end just below R.
        above = [self.revisions[r].down for r in removed if r not in roots]
        chain = all(len(down) == 1 for down in above) and len({down[0] for down in above}) == len(above)
        if len(roots) == 1 and len(self.revisions[roots[0]].down) == 1 and not self.revisions[roots[0]].depends_on:
            return f"{roots[0]}@-{len(removed)}" if chain else to
        return to

    def retreat(self, current: Iterable[str], keep: Iterable[str]) -> tuple[list[str], set[str]]:
        """Going down until only `keep` (and what it needs) stays applied: downgrades newest first, rows after."""
        applied = self.applied(current)
        kept = set()
        for rev in keep:
            if rev in applied:
                kept |= self.ancestors(rev)
        removed = applied - kept
        return [r for r in self.newest_first() if r in removed], self.version_rows(kept)

    def upgrade_plan(self, current: Iterable[str], to: str) -> tuple[list[str], set[str]]:
        """The revisions whose upgrade() runs (oldest first) and the alembic_version rows after it."""
        applied = self.applied(current)
        wanted = set(self.revisions) if to == "heads" else self.ancestors(to)
        added = wanted - applied
        if not added:
            if to == "heads":  # said of the database, not as if "heads" were a revision's name
                raise RevisionError(
                    f"the database is already at the code's heads ({', '.join(self.heads)}): "
                    "there is nothing to upgrade"
                )
            raise RevisionError(f"revision {to} is already applied: there is nothing to upgrade")
        order = [r for r in reversed(self.newest_first()) if r in added]
        return order, self.version_rows(applied | added)
