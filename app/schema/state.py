"""A target's migration state: the deployed code's revisions against the database's alembic_version, and drift in words.

Read without importing the application: the graph from the migrations
folder of the deployed working copy, the current revision(s) from the
database's alembic_version table. Drift is said with what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from app.jobs.steps import register_state_check
from app.statuses import RevisionState
from app.targets.errors import TargetError
from app.targets.git import Commit, GitError
from app.targets.migrations import folder_in_repo, read_folder
from app.targets.revision_graph import RevisionGraph
from app.targets.schema_db import current_revisions, unversioned_tables
from app.targets.target import Target

CODE_BEHIND = "code_behind_schema"
SCHEMA_BEHIND = "schema_behind_code"
SEVERAL_HEADS = "several_heads"
UNVERSIONED = "tables_without_alembic_version"


@dataclass(frozen=True)
class Drift:
    kind: str
    words: str
    fix: str
    runbook: str | None = None  # the runbook that fixes it, when there is one
    params: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.words} {self.fix}"


@dataclass(frozen=True)
class Row:
    id: str
    message: str
    file: str
    state: RevisionState
    current: bool
    head: bool
    down: tuple[str, ...]
    depends_on: tuple[str, ...]
    merge: bool
    branch_point: bool
    added_by: Commit | None


@dataclass
class SchemaState:
    target: str
    configured: bool
    graph: RevisionGraph | None = None
    current: set[str] | None = None
    problem: str | None = None
    problem_in_code: bool = False  # the problem is the migrations folder's (the code), not the database's
    rows: list[Row] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    unversioned: list[str] = field(default_factory=list)  # tables of a database with no alembic_version table

    @property
    def heads(self) -> list[str]:
        return self.graph.heads if self.graph else []

    @property
    def matches(self) -> bool:
        """The database at every head of the code. Several heads, all applied, match: an app may branch its
        migrations on purpose (the drift still says so), and upgrade and deploy verification must agree."""
        return self.configured and self.problem is None and all(d.kind == SEVERAL_HEADS for d in self.drift)

    def lines(self) -> list[str]:
        """The state as plain text: the CLI prints it, jobs log it."""
        if not self.configured:
            return [f"{self.target}: no migrations configured (database.migrations)"]
        if self.problem:
            return [f"{self.target}: cannot read the migration state: {self.problem}"]
        current = ", ".join(sorted(self.current)) or "none (no revision applied)"
        out = [f"current: {current}", f"heads:   {', '.join(self.heads) or 'none'}"]
        if self.matches:
            out.append("code and schema match")
        for drift in self.drift:
            out.append(f"DRIFT: {drift.words}")
            out.append(f"  what to do: {drift.fix}")
        return out


def describe_revision(graph: RevisionGraph | None, rev: str) -> str:
    if graph is not None and rev in graph.revisions and graph.revisions[rev].message:
        return f"{rev} ({graph.revisions[rev].message})"
    return rev


def unversioned_drift(tables: list[str]) -> Drift:
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return Drift(
        UNVERSIONED,
        f"The database has {len(tables)} table(s) ({shown}) but no alembic_version table: Alembic cannot tell "
        "which revisions made them, and `flask db upgrade` would try to create them again.",
        "Check that database.url names the application's database. If it does, find the revision its tables "
        "match and record it by hand with `flask db stamp REVISION` in the application's environment.",
    )


def drift_of(
    graph: RevisionGraph,
    current: set[str],
    added: dict[str, Commit] | None = None,
    unversioned: list[str] | None = None,
) -> list[Drift]:
    """What is wrong between this code's revisions and the database's rows, each with its fix."""
    found = []
    if unversioned and graph.revisions:  # before the first revision (`flask db init` over create_all) all is well
        found.append(unversioned_drift(unversioned))
    unknown = graph.unknown(current)
    if unknown:
        origin = ""
        if added:
            commits = {c.short for name, c in added.items() for rev in unknown if _names_revision(name, rev)}
            if commits:
                origin = f" (its file was added by commit {', '.join(sorted(commits))})"
        found.append(
            Drift(
                CODE_BEHIND,
                f"The database is at {', '.join(unknown)}, a revision the deployed code does not have{origin}: "
                "the code is behind the schema, and `flask db upgrade` or `flask db current` will fail.",
                "Deploy a commit that has this revision again, or downgrade the database first with the "
                "migration scripts of the commit that has it, then change the code.",
            )
        )
    pending = graph.pending(current)
    if pending and not unknown and not unversioned:
        found.append(
            Drift(
                SCHEMA_BEHIND,
                f"The deployed code has {len(pending)} revision(s) the database lacks: "
                f"{', '.join(describe_revision(graph, r) for r in pending)}: the schema is behind the code.",
                "Upgrade the database to the code's head(s).",
                runbook="schema_upgrade",
                params={"revision": "heads"},
            )
        )
    if len(graph.heads) > 1:
        found.append(
            Drift(
                SEVERAL_HEADS,
                f"The migrations have {len(graph.heads)} heads ({', '.join(graph.heads)}): "
                "`flask db upgrade` without a revision refuses to choose.",
                "Add a merge revision in the application (`flask db merge heads`) and deploy it, "
                "or upgrade to each head by name.",
            )
        )
    return found


def _realign(drift: Drift, target: Target) -> Drift:
    """Code behind schema: the combined runbook, reset to the deployed commit itself, realigns them."""
    try:
        head = target.git().head()
    except GitError:
        return drift
    return replace(
        drift,
        fix=drift.fix + " “Downgrade then reset” to the deployed commit does the latter with the scripts of "
        "the newest commit that has the revision.",
        runbook="downgrade_then_reset",
        # the head shown, as the Deployments tab's forms carry it: pressed after the code moved on, the reset to
        # this commit would take back someone's deploy; refused instead (deployments/seenhead.py)
        params={"commit": head, "seen_head": head},
    )


def _file_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _names_revision(path: str, rev: str) -> bool:
    """Alembic names a revision's file `<rev>_<slug>.py`: the id then `_` or `.`, never a longer id it prefixes."""
    name = _file_of(path)
    return name.startswith(rev) and name[len(rev) : len(rev) + 1] in ("_", ".")


def read_state(target: Target, *, commits: bool = False) -> SchemaState:
    """The migration state of a target now; every failure to read is kept as `problem`, never raised."""
    database = target.config.database
    state = SchemaState(target.name, configured=bool(database and database.migrations))
    if not state.configured:
        return state
    try:
        state.graph = read_folder(database.migrations)
    except TargetError as exc:  # the deployed code's own folder: a defect of the code, which a rollback mends
        state.problem, state.problem_in_code = exc.message, True
        return state
    try:
        state.current = current_revisions(database.url)
        if not state.current:
            state.unversioned = unversioned_tables(database.url)
    except TargetError as exc:
        state.problem = exc.message
        return state
    added: dict[str, Commit] = {}
    if commits:
        try:
            repo = target.git()
            added = repo.added_by(folder_in_repo(repo, database.migrations) + "/versions")
        except (GitError, TargetError):
            added = {}
    state.drift = drift_of(state.graph, state.current, added, state.unversioned)
    if any(d.kind == CODE_BEHIND for d in state.drift):
        state.drift = [_realign(d, target) if d.kind == CODE_BEHIND else d for d in state.drift]
    state.rows = _rows(state.graph, state.current, added)
    return state


def _rows(graph: RevisionGraph, current: set[str], added: dict[str, Commit]) -> list[Row]:
    applied = graph.applied(current)
    by_file = {_file_of(name): commit for name, commit in added.items()}
    heads, branch_points = set(graph.heads), set(graph.branch_points())
    rows = [
        Row(
            id=rev,
            message="",
            file="",
            state=RevisionState.UNKNOWN,
            current=True,
            head=False,
            down=(),
            depends_on=(),
            merge=False,
            branch_point=False,
            added_by=None,
        )
        for rev in graph.unknown(current)
    ]
    for rev in graph.newest_first():
        r = graph.revisions[rev]
        rows.append(
            Row(
                id=rev,
                message=r.message,
                file=r.file,
                state=RevisionState.APPLIED if rev in applied else RevisionState.PENDING,
                current=rev in current,
                head=rev in heads,
                down=r.down,
                depends_on=r.depends_on,
                merge=r.is_merge,
                branch_point=rev in branch_points,
                added_by=by_file.get(r.file),
            )
        )
    return rows


def check_schema(target: Target) -> tuple[bool | None, str]:
    """For verification: the database at every head of the deployed code's migrations (SchemaState.matches),
    or the drift in words; None when the state cannot be read (the database gone or unreachable)."""
    state = read_state(target)
    if not state.configured:
        return True, ""
    if state.problem and state.problem_in_code:  # review: a broken folder sent people to restore the database
        return False, f"the deployed code's migrations cannot be read: {state.problem}"
    if state.problem:
        return None, f"the migration state cannot be read: {state.problem}"
    if state.matches:
        return True, f"schema at head {', '.join(sorted(state.current)) or '(no revisions)'}"
    return False, " ".join(str(d) for d in state.drift if d.kind != SEVERAL_HEADS)


register_state_check("schema", check_schema)  # "verified" includes: the database matches the deployed code
