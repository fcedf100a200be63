"""The schema gate: before revert, reset or deploy changes the code, compare the revisions the resulting commit knows
with the database's current revision.

Code that would fall behind the schema (the resulting commit lacks a
revision the database is at) is refused with the plan spelled out; code
that would move ahead (a deploy adds revisions) is allowed, and the deploy
upgrades after the code change. The resulting commit's migrations are read
from git, never from the working tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from app.schema.destroys import DowngradePlan, IrreversibleDowngrade, plan_downgrade
from app.targets.errors import TargetError
from app.targets.git import Commit, GitRepo
from app.targets.migrations import MigrationsError, files_at, folder_in_repo, read_files
from app.targets.revision_graph import RevisionGraph
from app.targets.schema_db import current_revisions
from app.targets.target import Target

VERBS = {"revert": "revert", "reset": "reset", "deploy": "deploy"}


class GateRefused(TargetError):
    """Changing the code this way would leave it behind the database's schema."""

    def __init__(self, verdict: GateVerdict) -> None:
        super().__init__(verdict.message, fix=verdict.fix)
        self.verdict = verdict


class RevertSplitsMigrations(MigrationsError):
    """A revert takes out a migration that one it keeps builds on. `with_commit`: the commit that added the kept
    one, whose revert in the same job keeps the graph whole (the page offers that revert); None when not found."""

    def __init__(self, message: str, *, fix: str, with_commit: str | None) -> None:
        super().__init__(message, fix=fix)
        self.with_commit = with_commit


@dataclass
class GateVerdict:
    commit: str  # what the resulting code is, in words ("commit 1a2b3c4d5e6f")
    current: set[str]
    behind: list[str] = field(default_factory=list)  # database revisions the resulting code lacks
    ahead: list[str] = field(default_factory=list)  # revisions of the resulting code the database lacks
    plan: DowngradePlan | None = None
    scripts_from: str | None = None  # the commit whose migration scripts can take the database down
    downgrade_arg: str = ""  # what `flask db downgrade` takes to run the plan (see RevisionGraph.downgrade_argument)
    message: str = ""
    fix: str = ""

    @property
    def refused(self) -> bool:
        return bool(self.behind)

    @property
    def said(self) -> str:
        """The refusal as flashes, job logs and results give it: what is wrong, then the plan or the fix."""
        return f"{self.message}. {'Plan' if self.plan is not None else 'No downgrade Rewind can run'}: {self.fix}"


def _files_after_revert(repo: GitRepo, shas: list[str], folder) -> dict[str, str]:
    """The revision files the branch would hold once these commits are reverted (newest first)."""
    files = files_at(repo, repo.head(), folder)
    for sha in shas:
        parents = repo.commit(sha).parents
        after = files_at(repo, sha, folder)
        before = files_at(repo, parents[0], folder) if parents else {}
        for name in set(after) - set(before):
            files.pop(name, None)
        for name in set(before) - set(after):
            files[name] = before[name]
        for name in set(before) & set(after):
            if before[name] != after[name]:
                files[name] = before[name]
    return files


def _revert_breaks_graph(target: Target, after: dict[str, str], what: str) -> MigrationsError | None:
    """Why a revert's revision files form no graph, when the revert itself is the cause: it takes out a migration
    that a migration it keeps builds on. Said so, with what would work; None when the head's graph is broken too."""
    repo = target.git()
    folder = target.config.database.migrations
    try:
        now = read_files(files_at(repo, repo.head(), folder), "the deployed code")
    except MigrationsError:
        return None
    removed = {r.id: r for r in now.revisions.values() if r.file not in after}
    for rev in sorted(now.revisions.values(), key=lambda r: r.id):
        lost = [p for p in (*rev.down, *rev.depends_on) if p in removed]
        if rev.file in after and lost:
            gone = removed[lost[0]]
            adder = _added_by(repo, folder).get(rev.file)
            which = f"{adder.short} (which added {rev.file})" if adder else f"the commit that added {rev.file}"
            return RevertSplitsMigrations(
                f"{what} takes out migration {gone.id} ({gone.message or gone.file}), which migration {rev.id} "
                f"({rev.message or rev.file}) builds on, and the revert keeps {rev.id}",
                fix=f"revert {which} too, in the same revert; or take the database below "
                f"{gone.id} first (downgrade), then revert both",
                with_commit=adder.sha if adder else None,
            )
    return None


def _added_by(repo: GitRepo, folder) -> dict[str, Commit]:
    """Revision file name -> the branch's commit that added it (none found: the file came by a merge or a squash)."""
    try:
        added = repo.added_by(folder_in_repo(repo, folder) + "/versions")
    except TargetError:
        return {}
    return {path.rsplit("/", 1)[-1]: commit for path, commit in added.items()}


def _files_after_merge(repo: GitRepo, ref: str, folder) -> dict[str, str]:
    """The revision files the branch would hold once `ref` is merged: the head's, changed as `ref` changed them
    since their merge base (a fast-forward: exactly `ref`'s).

    Not the union of both: a branch that reverted a migration, or squashed old ones, deletes revision files,
    and the deploy must be gated on the code as it will be, without them.
    """
    head = repo.head()
    ours, theirs = files_at(repo, head, folder), files_at(repo, ref, folder)
    base = repo.merge_base(head, ref)
    if base is None:  # unrelated histories: git refuses the merge anyway
        return ours | theirs
    before = files_at(repo, base, folder)
    files = {name: text for name, text in ours.items() if name not in before or name in theirs}
    files.update({name: text for name, text in theirs.items() if before.get(name) != text})
    return files


def resulting_files(target: Target, runbook: str, params: dict) -> tuple[str, dict[str, str]]:
    """(the resulting code in words, its revision files) for a code runbook's parameters."""
    repo = target.git()
    folder = target.config.database.migrations
    if runbook == "reset":
        return f"commit {params['commit'][:12]}", files_at(repo, params["commit"], folder)
    if runbook == "deploy":
        return f"the deploy of {params['ref'][:12]}", _files_after_merge(repo, params["ref"], folder)
    if runbook == "revert":
        shas = list(params["commits"])
        return f"the revert of {', '.join(s[:12] for s in shas)}", _files_after_revert(repo, shas, folder)
    raise ValueError(f"the schema gate does not know runbook {runbook!r}")


def check(target: Target, runbook: str, params: dict) -> GateVerdict | None:
    """The gate's verdict on a code change; None when the target has no migrations to compare."""
    database = target.config.database
    if database is None or database.migrations is None:
        return None
    what, files = resulting_files(target, runbook, params)
    try:
        after = read_files(files, what)
    except MigrationsError as exc:
        if runbook != "revert":
            raise
        raise _revert_breaks_graph(target, files, what) or exc from None
    current = current_revisions(database.url)
    verdict = GateVerdict(commit=what, current=current)
    verdict.behind = after.unknown(current)
    verdict.ahead = [r for r in after.pending(current) if not verdict.behind]
    verb = VERBS[runbook]
    if not verdict.behind:
        if verdict.ahead:
            verdict.message = (
                f"{what} adds {len(verdict.ahead)} revision(s) the database lacks: {', '.join(verdict.ahead)}"
            )
        else:
            verdict.message = f"{what} knows the database's revision ({', '.join(sorted(current)) or 'none'})"
        return verdict
    # The code would fall behind: plan the downgrade with scripts that know the current revision.
    behind = ", ".join(verdict.behind)
    try:
        sha, source, sources = scripts_for(target, current)
    except TargetError as exc:
        verdict.message = (
            f"the database is at {behind}, which neither {what} nor the deployed code has: "
            f"the code is already behind the schema"
        )
        verdict.fix = f"{exc.message} — deploy a commit that has this revision"
        return verdict
    keep = source.applied(current) & set(after.revisions)
    try:
        verdict.plan = plan_downgrade(database.url, source, current, "", sources, keep=keep)
    except IrreversibleDowngrade as exc:
        verdict.message = f"the database is at {_named(source, behind)}, which {what} does not have"
        verdict.fix = f"the database cannot be taken down to what it has: {exc.message}"
        return verdict
    verdict.scripts_from = sha
    verdict.downgrade_arg = source.downgrade_argument(verdict.plan.order, verdict.plan.rows_after)
    to = ", ".join(sorted(verdict.plan.rows_after)) or "base"
    verdict.message = (
        f"the database is at {_named(source, behind)}, which {what} does not have: "
        f"the code would fall behind the schema"
    )
    deployed = target.git().head()
    scripts = "" if sha == deployed else f" with the migration scripts of commit {sha[:12]}"
    verdict.fix = f"downgrade to {to} first{scripts} ({verdict.plan.summary()}), then {verb}"
    return verdict


def scripts_for(target: Target, current: set[str]) -> tuple[str, RevisionGraph, dict[str, str]]:
    """The newest commit whose migration scripts know every current revision: the deployed one if it does.

    After a revert or reset deleted a revision file, its scripts live on in an
    older commit (or a safety tag); the downgrade must run with those. The
    commits that add or remove a revision are tried newest first by place in
    history, never by date (a rebase leaves dates out of order): first those
    of the deployed branch, whose scripts are the ones the database was
    migrated with, then other branches and tags (a branch as it was before its
    rebase may hold the same revision with another down_revision). A commit
    that removed a script is followed by its parent, which holds the script's
    last version, changes after it was added included.
    """
    repo = target.git()
    folder = target.config.database.migrations
    for sha in _candidates(repo, folder, current):
        files = files_at(repo, sha, folder)
        try:
            graph = read_files(files, f"commit {sha[:12]}")
        except MigrationsError:
            continue
        if current and not graph.unknown(current):
            return sha, graph, files
    raise MigrationsError(f"no commit of the repository has migration scripts for {', '.join(sorted(current))}")


def _candidates(repo: GitRepo, folder, current: set[str]) -> Iterator[str]:
    """scripts_for()'s commits to try, in its order, each once, each fact read only when the commits before it
    failed: the deployed head first (most often it has the scripts: no history is searched), then the commits that
    add or remove a current revision, those of the branch first (`contains`, asked as they come), each followed by
    its first parent (`commit`, read only once the commit itself failed)."""
    head = repo.head()
    yield head
    tried = {head}
    hits: list[str] = []
    for rev in sorted(current):
        hits += [sha for sha in repo.commits_mentioning(rev, folder_in_repo(repo, folder)) if sha not in hits]

    def with_parent(sha: str) -> Iterator[str]:
        if sha not in tried:
            tried.add(sha)
            yield sha
        for parent in repo.commit(sha).parents[:1]:
            if parent not in tried:
                tried.add(parent)
                yield parent

    elsewhere = []
    for sha in hits:
        if repo.contains(sha):
            yield from with_parent(sha)
        else:
            elsewhere.append(sha)
    for sha in elsewhere:
        yield from with_parent(sha)


def _named(graph: RevisionGraph, revs: str) -> str:
    return ", ".join(
        f"{r} ({graph.revisions[r].message})" if r in graph.revisions and graph.revisions[r].message else r
        for r in revs.split(", ")
    )
