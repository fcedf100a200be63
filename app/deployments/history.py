"""What the Deployments tab shows: the branch's commits, what is deployed, and what proved good."""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

from app.checkpoints import store
from app.checkpoints.models import Checkpoint, KnownGood
from app.pagination import Page, fetched_page
from app.targets.git import Commit, CommitDetail, GitError, GitRepo
from app.targets.target import Target

PAGE = 30


@dataclass(frozen=True)
class History:
    head: str | None
    commits: list[Commit]
    next_before: str | None  # the cursor of the next (older) page
    problem: str | None  # why the repository could not be read
    drift: str | None = None  # why the working copy is not the branch tip (what runs may differ)
    release_files: list[str] = field(default_factory=list)  # dirty, but exactly what the release commands wrote
    refused_files: list[str] = field(default_factory=list)  # dirty otherwise: a person's, never discarded
    obstacles: list[str] = field(default_factory=list)  # lock files, operations begun by hand: each with its fix
    unrevertable: dict[str, str] = field(default_factory=dict)  # commit -> why it offers no Revert (no parent)
    taken_off: dict[str, int] = field(default_factory=dict)  # commit -> how many commits a reset to it takes off
    known_good: dict[str, KnownGood] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)


def history(target: Target, before: str | None = None, page: int = PAGE, *, resets: bool = True) -> History:
    """One page of the deployed branch, newest first, from `before` (a commit id) on.

    `resets`: count what a reset to each commit takes off the branch (a git count per merge): for those who may."""
    head, problem, drift, dirty, obstacles, unrevertable, taken_off = None, None, None, None, [], {}, {}
    commits = Page([], None)
    try:
        repo = target.git()
        head = repo.head()
        commits = fetched_page(lambda n: repo.history(limit=n, before=before), attrgetter("sha"), limit=page)
        obstacles = [found.in_words() for found in repo.obstacles("change the code")]
        drift = repo.checkout_drift()
        dirty = repo.dirty()
        unrevertable = _unrevertable(repo, commits.items)
        taken_off = repo.taken_off(commits.items) if resets else {}
    except GitError as exc:
        problem = exc.in_words()
    return History(
        head=head,
        commits=commits.items,
        next_before=commits.next_cursor,
        problem=problem,
        drift=drift,
        release_files=dirty.own if dirty else [],
        refused_files=dirty.foreign if dirty else [],
        obstacles=obstacles,
        unrevertable=unrevertable,
        taken_off=taken_off,
        known_good=store.known_good(target.name),
        checkpoints=store.recent(target.name),
    )


def _unrevertable(repo: GitRepo, commits: list[Commit]) -> dict[str, str]:
    """The page's commits the revert would refuse, with why: the button is not offered to be refused."""
    roots = [c for c in commits if not c.parents]
    if not roots:
        return {}
    edge = repo.shallow_boundary()
    return {c.sha: why for c in roots if (why := repo.revert_refusal(c, edge))}


def commit_detail(target: Target, sha: str) -> tuple[CommitDetail, str]:
    """A commit of the branch with its diff, and the deployed head; GitError for an unknown one."""
    repo = target.git()
    detail = repo.show(repo.resolve(sha))
    return detail, repo.head()
