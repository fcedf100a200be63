"""The git adapter of a target: read its history, revert, reset, merge and push its branch.

Plain Python, no Flask. Every call is `git -C <repo> …` as an argv list (never
a shell) with a fixed environment, so a user's locale, pager, editor or
terminal can neither change what we parse nor make git wait for a prompt.
Every id that comes from a request is checked against the repository before it
reaches a mutating command, and every mutating method leaves the branch and the
working tree exactly as it found them when it fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.targets.command import (
    CommandCancelled,
    CommandTimedOut,
    Sink,
    Uncancellable,
    printed,
    read_capped,
    run_command,
    said_nothing,
    shown,
    status_words,
)
from app.targets.environment import inherited_env
from app.targets.errors import TargetError
from app.targets.gitblock import GitProcess, Lock, age_words, git_processes, locks, operation, written_since

GITLINK = "160000"  # the mode git records a submodule's commit with
COMMIT_ID = re.compile(r"^[0-9a-f]{7,40}$")
DIFF_LIMIT = 200_000  # bytes of diff show() returns, so one huge commit cannot swamp a page
DEFAULT_TIMEOUT_S = 120.0
# Inside the checkout's git directory (`git rev-parse --git-path`): what Rewind's release commands last wrote.
RELEASE_WRITES = "rewind-release-writes.json"
BLOB_LIMIT = 1 << 30  # bytes of one file written back after a failed change
FILTER_CHECK_LIMIT = 1000  # changed files whose filter attribute is looked at: argv stays well under its limit

# The hooks each git command Rewind runs may run: one that fails silently or hangs is then the likely cause.
# (Measured on git 2.39: a path checkout runs post-checkout; every ref update runs reference-transaction.)
HOOKS = {
    "revert": ("prepare-commit-msg", "post-commit", "reference-transaction"),
    "merge": ("pre-merge-commit", "prepare-commit-msg", "commit-msg", "post-merge", "reference-transaction"),
    "reset": ("reference-transaction", "post-index-change"),
    "checkout": ("post-checkout", "reference-transaction", "post-index-change"),
    "tag": ("reference-transaction",),
    "fetch": ("reference-transaction",),
    "push": ("pre-push", "reference-transaction"),
}

# git's own words when it says a hook failed: "'prepare-commit-msg' hook failed", "ref updates aborted by hook".
_GIT_NAMED_HOOK = re.compile(r"' hook (?:failed|declined)|\bhook declined\b|\bby hook\b")

# git's words for a lock it did not take: "Unable to create '/r/.git/index.lock': File exists."
_LOCK_EXISTS = re.compile(r"Unable to create '([^']+\.lock)': File exists")

# git's words when the remote cannot be reached at all (a local path or an ssh/http URL).
_UNREACHABLE = re.compile(
    r"does not appear to be a git repository|Could not read from remote repository|unable to access|"
    r"Could not resolve host|Connection refused|Connection timed out|No route to host|Repository not found"
)

# Config that would change the output we parse or make git stop and ask.
_CONFIG = (
    "-c",
    "color.ui=never",
    "-c",
    "log.showSignature=false",
    "-c",
    "core.quotePath=false",
)


class GitError(TargetError):
    """A git command failed, or a request cannot be carried out; the message says what to do."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
        stdout: str = "",
        fix: str = "",
    ) -> None:
        super().__init__(message, fix=fix)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout

    def said(self, message: str) -> GitError:
        """The same failed command told in Rewind's words (what happened, what to do); git's own output kept."""
        return GitError(
            message, argv=self.argv, returncode=self.returncode, stderr=self.stderr, stdout=self.stdout, fix=self.fix
        )


class GitLocked(GitError):
    """A lock file git needs exists: a git at work in the checkout holds it, or a git killed mid-change left it."""

    def __init__(
        self, message: str, *, fix: str, lock: Path, age_s: float, running: Sequence[GitProcess], unseen: Sequence[int]
    ) -> None:
        super().__init__(message, fix=fix)
        self.lock = lock
        self.age_s = age_s
        self.running = list(running)  # git processes whose current folder is in the checkout
        self.unseen = list(unseen)  # pids of git processes (another user's) whose folder could not be read


class RemoteUnreachable(GitError):
    """The remote cannot be reached (a moved path, no network, refused credentials); nothing was fetched."""

    def __init__(self, message: str, *, fix: str, remote: str, url: str, stderr: str) -> None:
        super().__init__(message, fix=fix, stderr=stderr)
        self.remote = remote
        self.url = url


class RemoteRewritten(GitError):
    """A remote branch was force-pushed: its new tip does not contain what it had."""

    def __init__(self, message: str, *, fix: str, remote_branch: str, old: str, new: str | None) -> None:
        super().__init__(message, fix=fix)
        self.remote_branch = remote_branch
        self.old = old
        self.new = new  # None when the branch was deleted


@dataclass(frozen=True)
class Fetched:
    branches: list[str]  # the remote's branches known afterwards, as `origin/main`
    rewritten: dict[str, tuple[str, str]]  # remote branch -> (old tip, new tip) where the new lacks the old


class SubmoduleNotReady(GitError):
    """A submodule the change moves cannot follow it in this checkout; nothing was changed."""

    def __init__(self, message: str, *, fix: str, path: str, wanted: str) -> None:
        super().__init__(message, fix=fix)
        self.path = path
        self.wanted = wanted


class FilterMissing(GitError):
    """The change writes files through a required filter (git-lfs) whose program this host lacks; nothing changed."""

    def __init__(self, message: str, *, fix: str, driver: str, program: str, files: Sequence[str]) -> None:
        super().__init__(message, fix=fix)
        self.driver = driver
        self.program = program
        self.files = list(files)


class OperationInProgress(GitError):
    """Someone's rebase, merge, cherry-pick, revert, bisect or `git am` is half done in the checkout."""

    def __init__(self, message: str, *, fix: str, operation: str, marker: Path, command: str) -> None:
        super().__init__(message, fix=fix)
        self.operation = operation
        self.marker = marker
        self.command = command  # the git command that continues or aborts it


class UnknownCommit(GitError):
    """A user-given id does not name a commit Rewind may act on."""

    def __init__(self, ref: str, message: str) -> None:
        super().__init__(message)
        self.ref = ref


class RevertConflict(GitError):
    """Reverting clashes with later changes; nothing was changed."""

    def __init__(self, commits: Sequence[str], files: Sequence[str], message: str, at: str | None = None) -> None:
        super().__init__(message)
        self.commits = list(commits)
        self.files = list(files)
        self.at = at  # the commit whose revert conflicted, when git says


class MergeConflict(GitError):
    """Merging clashes with the branch; nothing was changed."""

    def __init__(self, ref: str, files: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.ref = ref
        self.files = list(files)


@dataclass(frozen=True)
class Commit:
    sha: str
    short: str
    author: str
    email: str
    time: datetime  # author time, aware UTC
    subject: str
    parents: tuple[str, ...]

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


@dataclass(frozen=True)
class CommitDetail:
    commit: Commit
    message: str
    diff: str  # unified diff against the first parent
    truncated: bool  # diff was cut at DIFF_LIMIT bytes
    shallow_edge: bool = False  # a shallow clone stops here: the diff shows every file as new, which it was not


@dataclass(frozen=True)
class DirtyFiles:
    """The checkout's uncommitted changes to tracked files, split by who made them.

    `own`: exactly what Rewind's last release commands wrote (same file, same
    content digest), safe to put back since the next release writes it again.
    `foreign`: anything else, a person's edit included, which must never be discarded.
    """

    own: list[str]
    foreign: list[str]

    def __bool__(self) -> bool:
        return bool(self.own or self.foreign)


def _listed(files: Sequence[str], limit: int) -> str:
    return ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")


@dataclass(frozen=True)
class _Output:
    returncode: int
    stdout: str
    stderr: str
    output: bytes = b""  # stdout undecoded


# %x1f between fields, subject last so nothing in it can shift a field; -z ends each record with NUL.
_LOG_FORMAT = "--format=%H%x1f%h%x1f%an%x1f%ae%x1f%at%x1f%P%x1f%s"


def _parse_commit(record: str) -> Commit:
    sha, short, author, email, at, parents, subject = record.strip("\n").split("\x1f", 6)
    return Commit(
        sha=sha,
        short=short,
        author=author,
        email=email,
        time=datetime.fromtimestamp(int(at), UTC),
        subject=subject,
        parents=tuple(parents.split()),
    )


def _tail(text: str, lines: int = 4) -> str:
    """The last meaningful lines of git's stderr, without its hints, for a message."""
    kept = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("hint:")]
    return " / ".join(kept[-lines:])


def _own_note(own: Sequence[str]) -> str:
    if not own:
        return ""
    return f" (accepted as the release commands' own, unchanged since they wrote them: {_listed(own, 10)})"


class GitRepo:
    """One target's working copy, and the one branch Rewind manages in it."""

    def __init__(
        self,
        path: Path | str,
        branch: str,
        remote: str | None = None,
        *,
        author_name: str = "Rewind",
        author_email: str = "rewind@localhost",
        timeout: float = DEFAULT_TIMEOUT_S,
        env: dict[str, str] | None = None,
    ) -> None:
        # Names from the targets file end up as git arguments: refuse anything git could read as an option.
        if not branch or branch.startswith("-") or any(c.isspace() for c in branch):
            raise ValueError(f"bad branch name {branch!r} — check repo.branch in the targets file")
        if remote is not None and (not remote or remote.startswith("-")):
            raise ValueError(f"bad remote {remote!r} — check repo.remote in the targets file")
        self.path = Path(path)
        self.branch = branch
        self.remote = remote
        self.timeout = timeout
        # The target's own environment (or the shared allow-list), with what makes git's output fixed
        # and its prompts impossible: GIT_DIR, GIT_INDEX_FILE and friends never get through.
        env = dict(env) if env is not None else inherited_env()
        env = {k: v for k, v in env.items() if not k.startswith("GIT_") or k == "GIT_SSH_COMMAND"}
        env.setdefault("PATH", os.defpath)
        env.update(
            LC_ALL="C",
            LANG="C",
            GIT_TERMINAL_PROMPT="0",
            GIT_PAGER="cat",
            PAGER="cat",
            GIT_EDITOR="true",
            GIT_MERGE_AUTOEDIT="no",
            GIT_OPTIONAL_LOCKS="0",
            GIT_AUTHOR_NAME=author_name,
            GIT_AUTHOR_EMAIL=author_email,
            GIT_COMMITTER_NAME=author_name,
            GIT_COMMITTER_EMAIL=author_email,
        )
        self._env = env

    def __repr__(self) -> str:
        return f"GitRepo({str(self.path)!r}, branch={self.branch!r}, remote={self.remote!r})"

    @property
    def _ref(self) -> str:
        # Always the full ref name: never ambiguous with a tag or a file, never an option.
        return f"refs/heads/{self.branch}"

    # --- running git -------------------------------------------------------------

    def _argv(self, args: Sequence[str], where: Path | None = None) -> list[str]:
        return ["git", "-C", str(where or self.path), *_CONFIG, *args]

    def _run(
        self,
        *args: str,
        ok: tuple[int, ...] = (0,),
        sink: Sink | None = None,
        where: Path | None = None,
        stdin: bytes | None = None,
    ) -> _Output:
        """Run git (in `where`, a submodule's checkout, else the repository); raise GitError unless its exit
        status is in `ok`. With a sink, its lines stream there."""
        argv = self._argv(args, where)
        started = time.monotonic()
        try:
            if sink is not None:
                sink.line("cmd", "$ " + shown(["git", *args]))
            result = run_command(argv, sink, env=self._env, timeout=self.timeout, stdin=stdin, capture=True)
            out = _Output(result.returncode, result.stdout, result.stderr, result.output)
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH", argv=argv) from None
        except CommandTimedOut:
            message = f"git {args[0]} did not finish within {self.timeout:g} s and was stopped"
            if hooks := self.hooks(args[0]):
                message += (
                    f"; {hooks} runs on git {args[0]} and most likely hangs — run it by hand to see what it waits "
                    "for (a prompt, a lock, the network) and fix it; Rewind runs the repository's hooks, never "
                    "skips them"
                )
            left = self._locks_left(time.monotonic() - started + 1) if args[0] != "rev-parse" else []
            fix = ""
            if left:
                named = ", ".join(str(lock.path) for lock in left)
                message += f". Stopped mid-change, it left its lock file{'s' if len(left) > 1 else ''} behind: {named}"
                fix = (
                    f"once no git runs in {self.path}, remove {'them' if len(left) > 1 else 'it'} "
                    f"(`rm {' '.join(str(lock.path) for lock in left)}`) and look at `git -C {self.path} status`; "
                    "every revert, reset and deploy refuses until then"
                )
            raise GitError(message, argv=argv, fix=fix) from None
        if out.returncode not in ok:
            raise self._error(argv, args, out)
        return out

    def _error(self, argv: Sequence[str], args: Sequence[str], out: _Output) -> GitError:
        err = out.stderr
        if (held := _LOCK_EXISTS.search(err)) is not None and (locked := self._lock_named(args[0], held[1])):
            return locked
        if "cannot change to" in err or not self.path.is_dir():
            message = f"repository folder does not exist: {self.path} — check repo.path in the targets file"
        elif "not a git repository" in err:
            message = f"not a git repository: {self.path} — check repo.path in the targets file"
        elif "dubious ownership" in err:
            message = (
                f"git refuses {self.path}: it belongs to another user — run "
                f"`git config --global --add safe.directory {self.path}` as the user Rewind runs as"
            )
        elif "would be overwritten" in err:
            files = [line.strip() for line in err.splitlines() if line.startswith("\t")]
            message = (
                f"git {args[0]} would overwrite files in {self.path} that git does not track: "
                f"{', '.join(files) or _tail(err)} — move them out of the way first"
            )
        else:
            if printed(err, out.stdout):
                detail = _tail(err) or _tail(out.stdout)
                message = f"git {args[0]} failed ({status_words(out.returncode)}): {detail}"
            else:
                message = f"git {args[0]} failed ({status_words(out.returncode)}) and " + said_nothing(
                    ["git", "-C", str(self.path), *args]
                )
            message += self._hook_note(args[0], err)
        return GitError(message, argv=argv, returncode=out.returncode, stderr=err, stdout=out.stdout)

    def _hook_note(self, command: str, stderr: str) -> str:
        """ " — the pre-push hook in … runs on git push: …" when such a hook exists and git did not name it."""
        hooks = self.hooks(command)
        if not hooks or _GIT_NAMED_HOOK.search(stderr):
            return ""
        return f" — {hooks} runs on git {command}: a hook that exits non-zero may be the cause"

    def hooks(self, command: str) -> str:
        """The executable hooks `git <command>` may run here, in words ("the post-checkout hook in /r/.git/hooks");
        "" when there are none (or git cannot say). core.hooksPath is honoured, as git honours it."""
        names = HOOKS.get(command, ())
        if not names:
            return ""
        try:
            where = self._run("rev-parse", "--git-path", "hooks").stdout.strip()
        except (GitError, CommandCancelled):
            return ""
        # A relative core.hooksPath is the working tree's top's; git's own default is the -C folder's.
        folders = [Path(where)] if os.path.isabs(where) else [self.path / where]
        if not os.path.isabs(where):
            with suppress(GitError, CommandCancelled):
                folders.append(self._top() / where)
        for folder in folders:
            found = [name for name in names if os.access(folder / name, os.X_OK) and (folder / name).is_file()]
            if found:
                listed = ", ".join(found)
                return f"the {listed} hook{'s' if len(found) > 1 else ''} in {folder.resolve()}"
        return ""

    # --- what stands in the way -------------------------------------------------------

    def _places(self) -> tuple[Path, Path, Path | None]:
        """(the per-worktree git directory, the common one, the working tree's top) — apart in a linked worktree,
        where `.git` is a file naming the first."""
        out = self._run("rev-parse", "--absolute-git-dir", "--git-common-dir", "--show-toplevel", ok=(0, 128))
        if out.returncode:  # no working tree (a bare repository): the two git directories still count
            out = self._run("rev-parse", "--absolute-git-dir", "--git-common-dir")
        found = out.stdout.splitlines()
        common = Path(found[1])
        common = common if common.is_absolute() else self.path / common
        return Path(found[0]), common.resolve(), Path(found[2]) if len(found) > 2 else None

    def obstacles(self, action: str, refs: Sequence[str] | None = None) -> list[GitError]:
        """What would stop `action` half-way, each as the error that refuses it (lock files first); [] when clear.

        `refs`: the refs the action updates (default: the branch). Touches nothing.
        """
        git_dir, common, top = self._places()
        found: list[GitError] = []
        held = locks(git_dir, common, [self._ref] if refs is None else refs)
        if held:
            running, unseen = git_processes([place for place in (top, git_dir, common) if place is not None])
            found += [self._locked(action, lock, running, unseen) for lock in held]
        if (underway := operation(git_dir)) is not None:
            if underway.command == "bisect":
                fix = f"whoever runs it ends it with `git -C {self.path} bisect reset`"
            else:
                fix = (
                    f"whoever started it decides: finish it (`git -C {self.path} {underway.command} --continue`) or "
                    f"abort it (`git -C {self.path} {underway.command} --abort`)"
                )
            found.append(
                OperationInProgress(
                    f"cannot {action}: {self.path} is in the middle of {underway.name} started by hand "
                    f"(git left {underway.marker} behind), so the branch and files are not what a {action} expects",
                    fix=f"{fix}; Rewind changes nothing until then",
                    operation=underway.name,
                    marker=underway.marker,
                    command=underway.command,
                )
            )
        return found

    def check_obstacles(self, action: str, refs: Sequence[str] | None = None) -> None:
        """Raise the first of obstacles(): GitLocked or OperationInProgress."""
        found = self.obstacles(action, refs)
        if found:
            raise found[0]

    def _locked(self, action: str, lock: Lock, running: Sequence[GitProcess], unseen: Sequence[int]) -> GitLocked:
        rm = f"`rm {lock.path}`"
        message = (
            f"cannot {action}: git's lock file {lock.path} exists (written {age_words(lock.age_s)} ago), and git "
            "would stop half-way on it"
        )
        if running:
            listed = "; ".join(f"pid {p.pid}: {p.command or 'git'}" for p in running[:5])
            message += f"; a git process still works in {self.path} ({listed})"
            fix = (
                "let it finish or stop it (an editor left open by `git commit`?): git removes its lock when it ends; "
                f"if the file is still there after that, remove it ({rm}) and try again"
            )
        elif unseen:
            pids = ", ".join(str(pid) for pid in unseen[:10])
            message += (
                f"; no git process Rewind can see works in {self.path}, but where git processes of other users "
                f"work (pid {pids}) it cannot tell"
            )
            fix = f"make sure none of them works in this repository, then remove it ({rm}) and try again"
        else:
            message += f"; no git process works in {self.path}, so a git that was killed or crashed left it behind"
            fix = f"remove it ({rm}) once no git on another host shares this folder either, then try again"
        return GitLocked(
            message,
            fix=f"{fix}; Rewind never removes it itself",
            lock=lock.path,
            age_s=lock.age_s,
            running=running,
            unseen=unseen,
        )

    def _lock_named(self, command: str, path: str) -> GitLocked | None:
        """The lock git said it found ("Unable to create '…': File exists"), as obstacles() would name it."""
        try:
            age = max(0.0, time.time() - os.stat(path).st_mtime)
            git_dir, common, top = self._places()
        except (OSError, GitError, CommandCancelled, CommandTimedOut, IndexError):
            return None
        running, unseen = git_processes([place for place in (top, git_dir, common) if place is not None])
        return self._locked(f"run git {command}", Lock(Path(path), age), running, unseen)

    def _locks_left(self, seconds: float) -> list[Lock]:
        """After a timeout: the lock files written while the stopped command ran (best effort, [] if unknown)."""
        try:
            git_dir, common, _top = self._places()
        except (GitError, CommandCancelled, CommandTimedOut, OSError, IndexError):
            return []
        refs = [self._ref, "refs/tags/rewind"] + ([f"refs/remotes/{self.remote}"] if self.remote else [])
        return written_since(locks(git_dir, common, refs), seconds)

    # --- reading -----------------------------------------------------------------

    def check(self) -> None:
        """Raise GitError with the fix if the path, branch or remote in the targets file is wrong."""
        if not self.path.is_dir():
            raise GitError(f"repository folder does not exist: {self.path} — check repo.path in the targets file")
        inside = self._run("rev-parse", "--is-inside-work-tree").stdout.strip()
        if inside != "true":
            raise GitError(
                f"{self.path} is a bare repository; Rewind needs a working copy — check repo.path in the targets file"
            )
        self.head()
        if self.remote is not None and self._run("remote", "get-url", self.remote, ok=(0, 2)).returncode:
            remotes = ", ".join(self._run("remote").stdout.split()) or "none"
            raise GitError(
                f"remote {self.remote!r} is not configured in {self.path} (remotes: {remotes}) — "
                "check repo.remote in the targets file"
            )

    def head(self) -> str:
        """Full sha of the branch tip."""
        out = self._run("rev-parse", "--verify", "--quiet", f"{self._ref}^{{commit}}", ok=(0, 1))
        if out.returncode:
            branches = ", ".join(self.branches()) or "none yet"
            raise GitError(
                f"branch {self.branch!r} does not exist in {self.path} (branches: {branches}) — "
                "check repo.branch in the targets file"
            )
        return out.stdout.strip()

    def worktree_head(self) -> str:
        """Full sha of what the working copy has checked out (the branch tip, unless it drifted): what an app
        started from it runs."""
        return self._run("rev-parse", "--verify", "HEAD").stdout.strip()

    def current_branch(self) -> str | None:
        """The branch checked out in the working copy; None when HEAD is detached."""
        out = self._run("symbolic-ref", "--quiet", "HEAD", ok=(0, 1))
        ref = out.stdout.strip()
        return ref.removeprefix("refs/heads/") if out.returncode == 0 and ref.startswith("refs/heads/") else None

    def branches(self) -> list[str]:
        """Local branch names."""
        out = self._run("for-each-ref", "--format=%(refname)", "refs/heads")
        return [line.removeprefix("refs/heads/") for line in out.stdout.splitlines() if line]

    def tags(self) -> list[str]:
        """Tag names."""
        out = self._run("for-each-ref", "--format=%(refname)", "refs/tags")
        return [line.removeprefix("refs/tags/") for line in out.stdout.splitlines() if line]

    def history(self, limit: int = 50, before: str | None = None) -> list[Commit]:
        """Newest first along the branch's first parents; `before` (a commit id) pages to older ones.

        First-parent order is a straight line, so a page boundary is one commit
        and paging never repeats or skips one; a merge shows as one entry.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if before is None:
            start, skip = self._ref, "--skip=0"
        else:
            start, skip = self.resolve(before), "--skip=1"
        out = self._run("log", "-z", "--first-parent", f"--max-count={limit}", skip, _LOG_FORMAT, start, "--")
        return [_parse_commit(record) for record in out.stdout.split("\0") if record.strip()]

    def taken_off(self, page: Sequence[Commit]) -> dict[str, int]:
        """For each commit of a history() page, how many commits a reset to it takes off the branch: every commit
        after it, those its merges brought in included.

        Along the first-parent line each commit adds itself, and a merge also what it brought in; those sets never
        overlap, so a page costs one count for its first commit and one per merge, not one per commit."""
        if not page:
            return {}
        after = int(self._run("rev-list", "--count", f"{page[0].sha}..{self._ref}", "--").stdout.strip())
        counts = {}
        for commit in page:
            counts[commit.sha] = after
            if commit.is_merge:
                after += int(self._run("rev-list", "--count", f"{commit.parents[0]}..{commit.sha}", "--").stdout)
            else:
                after += 1
        return counts

    def commit(self, sha: str) -> Commit:
        """One commit's summary; `sha` must already be checked (resolve() or a full sha from history)."""
        if not COMMIT_ID.match(sha):
            raise UnknownCommit(sha, f"{sha!r} is not a commit id (ids are 7 to 40 hex characters)")
        out = self._run("log", "-z", "--no-walk", _LOG_FORMAT, sha, "--")
        return _parse_commit(out.stdout.split("\0")[0])

    def _verify_commit(self, ref: str) -> str:
        """Full sha of the commit a syntactically valid id names anywhere in the repository."""
        out = self._run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", ok=(0, 1, 128))
        if out.returncode:
            if out.returncode != 1 and "ambiguous" not in out.stderr:
                # git could not read the repository at all (another owner, a broken .git): say that,
                # not "there is no commit", which would send a person hunting for a typo.
                raise self._error(self._argv(("rev-parse", ref)), ("rev-parse",), out)
            if "ambiguous" in out.stderr:
                raise UnknownCommit(ref, f"commit id {ref!r} is ambiguous in this repository — give more characters")
            raise UnknownCommit(ref, f"there is no commit {ref!r} in this repository")
        sha = out.stdout.strip()
        if not sha.startswith(ref):  # git preferred a tag or branch with that name over the id
            raise UnknownCommit(ref, f"{ref!r} names a tag or branch, not a commit — give the commit id")
        return sha

    @staticmethod
    def _check_id(ref: str) -> str:
        ref = ref.strip().lower() if isinstance(ref, str) else ""
        if not COMMIT_ID.match(ref):
            raise UnknownCommit(ref, f"{ref!r} is not a commit id (ids are 7 to 40 hex characters)")
        return ref

    def resolve(self, ref: str) -> str:
        """Full sha of a user-given commit id, which must be in the history of the branch."""
        ref = self._check_id(ref)
        sha = self._verify_commit(ref)
        if self._run("merge-base", "--is-ancestor", sha, self._ref, ok=(0, 1)).returncode:
            raise UnknownCommit(ref, f"commit {ref!r} is not in the history of {self.branch}")
        return sha

    def contains(self, sha: str) -> bool:
        """Whether the branch has this commit in its history (False for an unknown one)."""
        if not COMMIT_ID.match(sha or ""):
            return False
        return self._run("merge-base", "--is-ancestor", sha, self._ref, ok=(0, 1, 128)).returncode == 0

    def between(self, base: str, tip: str) -> list[str]:
        """Commits tip has and base lacks, newest first, merges left out: what deploying tip onto base brought."""
        base = self._verify_commit(self._check_id(base))
        tip = self._verify_commit(self._check_id(tip))
        return self._run("rev-list", "--no-merges", f"{base}..{tip}", "--").stdout.split()

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two checked commits (what a merge of them compares both with); None if none."""
        return self._run("merge-base", a, b, ok=(0, 1)).stdout.strip() or None

    def newest_first(self, shas: Sequence[str]) -> list[str]:
        """Commits of the branch ordered by their place on it, newest first — never by date.

        A rebased history can carry author dates out of order; what matters
        for reverting is how many commits came after each one on the branch.
        """
        after = {sha: int(self._run("rev-list", "--count", f"{sha}..{self._ref}").stdout.strip()) for sha in shas}
        return sorted(after, key=after.__getitem__)

    def shallow_boundary(self) -> frozenset[str]:
        """Commits where a shallow clone's history stops: git has them, but not their parents."""
        out = self._run("rev-parse", "--git-path", "shallow").stdout.strip()
        path = Path(out) if os.path.isabs(out) else self.path / out
        try:
            return frozenset(path.read_text().split())
        except OSError:  # no such file: the clone is complete
            return frozenset()

    def check_revertable(self, shas: Sequence[str]) -> None:
        """Refuse commits git would revert against nothing, each with why and the fix (see revert_refusal)."""
        edge = self.shallow_boundary()
        for sha in shas:
            why = self.revert_refusal(self.commit(sha), edge)
            if why:
                raise UnknownCommit(sha, why)

    def revert_refusal(self, commit: Commit, edge: frozenset[str]) -> str | None:
        """Why this commit cannot be reverted, with the fix; None when it can. `edge` is shallow_boundary().

        A commit without a parent (the repository's first one, or one at a
        shallow clone's edge, where git does not have its parent) is reverted
        against nothing: git deletes every file it holds, the whole application.
        """
        if commit.parents:
            return None
        if commit.sha in edge:
            return (
                f"commit {commit.sha[:12]} is where this shallow clone's history stops: git does not have its "
                "parent, so reverting it would delete every file of the application — fetch the missing "
                f"history first (`git -C {self.path} fetch --unshallow`), then revert"
            )
        return (
            f"commit {commit.sha[:12]} is the repository's first commit (it has no parent): reverting it would "
            "delete every file it added, the whole application — to go back, reset to a later commit or deploy "
            "a commit that changes what you want undone"
        )

    def remote_branches(self) -> list[str]:
        """The remote's branches as the last fetch saw them, as `origin/main`; none without a remote."""
        if self.remote is None:
            return []
        prefix = f"refs/remotes/{self.remote}/"
        out = self._run("for-each-ref", "--format=%(refname)", prefix)
        names = [line.removeprefix("refs/remotes/") for line in out.stdout.splitlines() if line]
        return [name for name in names if name != f"{self.remote}/HEAD"]

    def resolve_ref_for_deploy(self, ref: str) -> str:
        """Full sha of what may be deployed: a local branch, a fetched remote branch, or any commit id here."""
        ref = ref.strip() if isinstance(ref, str) else ""
        names = self.branches()
        if ref in names:
            return self._run("rev-parse", "--verify", f"refs/heads/{ref}^{{commit}}").stdout.strip()
        remote_names = self.remote_branches()
        if ref in remote_names:
            return self._run("rev-parse", "--verify", f"refs/remotes/{ref}^{{commit}}").stdout.strip()
        if ref in self.tags():  # a release tag (v1.4.2): the commit it names, an annotated tag peeled
            return self._run("rev-parse", "--verify", f"refs/tags/{ref}^{{commit}}").stdout.strip()
        if COMMIT_ID.match(ref.lower()):
            return self._verify_commit(ref.lower())
        known = ", ".join([*names, *remote_names]) or "none"
        hint = f"; fetch from {self.remote} first if it is new there" if self.remote else ""
        raise UnknownCommit(ref, f"{ref!r} is neither a branch, a tag nor a commit id (branches: {known}){hint}")

    def show(self, sha: str, limit: int = DIFF_LIMIT) -> CommitDetail:
        """A commit with its full message and diff (against its first parent), the diff capped at `limit` bytes."""
        sha = self._verify_commit(self._check_id(sha))
        commit = self.commit(sha)
        message = self._run("log", "--no-walk", "--format=%B", sha, "--").stdout.rstrip("\n")
        raw, truncated = self._read_capped(
            ["show", "--format=", "--patch", "--no-ext-diff", "-M", "--diff-merges=first-parent", sha, "--"], limit
        )
        edge = sha in self.shallow_boundary()
        return CommitDetail(commit, message, raw.decode("utf-8", errors="replace"), truncated, edge)

    def _read_capped(self, args: Sequence[str], limit: int) -> tuple[bytes, bool]:
        """Stdout of git up to `limit` bytes, stopping git past that so a huge diff costs no memory."""
        argv = self._argv(args)
        data, truncated, returncode, stderr = read_capped(argv, limit, env=self._env, timeout=self.timeout)
        if not truncated and returncode:
            raise self._error(argv, args, _Output(returncode, "", stderr))
        if truncated:
            cut = data.rfind(b"\n", 0, limit)
            data = data[: cut + 1] if cut >= 0 else data[:limit]
        return data, truncated

    def files_at(self, sha: str, folder: str) -> dict[str, str]:
        """The text of every file under `folder` (a path inside the repository) as of a commit.

        Reads the commit, never the working tree, so a check about a commit
        sees what that commit holds. Keys are paths relative to `folder`.
        """
        sha = self._verify_commit(self._check_id(sha))
        folder = folder.strip("/")
        out = self._run("ls-tree", "-r", "-z", "--full-tree", sha, "--", folder)
        blobs: dict[str, str] = {}  # path -> object id
        for entry in filter(None, out.stdout.split("\0")):
            meta, path = entry.split("\t", 1)
            _mode, kind, oid = meta.split()
            if kind == "blob":  # not a submodule's commit
                blobs[path[len(folder) + 1 :] if folder else path] = oid
        return dict(zip(blobs, self._blob_texts(list(blobs.values())), strict=True))

    def _blob_texts(self, oids: list[str]) -> list[str]:
        """The texts of many blobs from one `git cat-file --batch`: an app with hundreds of migrations once cost
        a `git show` each, over a second per commit the schema gate read, inside the request of a button."""
        if not oids:
            return []
        data = self._run("cat-file", "--batch", stdin="".join(f"{oid}\n" for oid in oids).encode()).output
        texts, at = [], 0
        for oid in oids:
            end = data.index(b"\n", at)
            header = data[at:end].split()
            if len(header) != 3 or header[1] != b"blob":  # "<oid> missing": gone between the listing and now
                raise GitError(f"git cat-file cannot read {oid}: {data[at:end].decode(errors='replace')}")
            size = int(header[2])
            texts.append(data[end + 1 : end + 1 + size].decode("utf-8", errors="replace"))
            at = end + 1 + size + 1  # the content, then a newline
        return texts

    def commits_mentioning(self, text: str, folder: str, limit: int = 20) -> list[str]:
        """Commits of any branch or tag that add or remove `text` under `folder` (git log -S), a commit always
        before those it descends from: by place in history, never by date (a rebase leaves dates out of order)."""
        if not text or text.startswith("-"):
            return []
        out = self._run(
            "log", "--all", "--topo-order", f"--max-count={limit}", "--format=%H", f"-S{text}", "--", folder
        )
        return out.stdout.split()

    def added_by(self, folder: str) -> dict[str, Commit]:
        """For each file under `folder` on the branch, the commit that added it (the newest add, if re-added: newest
        by place in history, as --topo-order walks it; by date, an older add merged from a side branch came first)."""
        out = self._run(
            "log", "-z", "--topo-order", "--diff-filter=A", "--name-only", _LOG_FORMAT, self._ref, "--", folder
        )
        found: dict[str, Commit] = {}
        commit: Commit | None = None
        for record in out.stdout.split("\0"):
            record = record.strip("\n")
            if not record:
                continue
            if "\x1f" in record:
                head, _, first = record.partition("\n")
                commit = _parse_commit(head)
                record = first
                if not record:
                    continue
            if commit is not None:
                found.setdefault(record, commit)
        return found

    def dirty_files(self) -> list[str]:
        """Tracked files with uncommitted changes (staged or not); untracked files do not count."""
        out = self._run("status", "--porcelain", "-z", "--untracked-files=no")
        entries = out.stdout.split("\0")
        files, i = [], 0
        while i < len(entries):
            entry = entries[i]
            if entry:
                files.append(entry[3:])
                if entry[0] in "RC":  # a rename carries its old name as the next entry
                    i += 1
            i += 1
        return files

    # --- what the release commands wrote ----------------------------------------------

    def _release_writes_path(self) -> Path:
        out = self._run("rev-parse", "--git-path", RELEASE_WRITES).stdout.strip()
        return Path(out) if os.path.isabs(out) else self.path / out

    def _top(self) -> Path:
        """The working tree's top folder: git names files from there even when repo.path is a subfolder."""
        return Path(self._run("rev-parse", "--show-toplevel").stdout.strip())

    def _digests(self, files: Sequence[str], write: bool = False) -> dict[str, str]:
        """Each file's blob id as git would store it (`git hash-object`); "" for a file that is gone."""
        top = self._top()
        present = [name for name in files if (top / name).is_file()]
        digests = dict.fromkeys(files, "")
        if present:
            args = ["hash-object", *(["-w"] if write else []), "--", *(str(top / name) for name in present)]
            ids = self._run(*args).stdout.split()
            digests.update(zip(present, ids, strict=True))
        return digests

    def release_writes(self) -> dict[str, str]:
        """The tracked files the last release commands changed, with the digest of what they wrote."""
        try:
            record = json.loads(self._release_writes_path().read_text())
            files = record["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # none recorded (or unreadable): nothing is taken for Rewind's own
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}

    def record_release_writes(self, not_ours: Sequence[str] = ()) -> list[str]:
        """Remember what the release commands just changed in tracked files, so it is never taken for a person's edit.

        Call right after they pass. `not_ours`: files a person had changed
        before they ran (`dirty().foreign`), never recorded as the release's.
        Kept as a small JSON file in the checkout's own git directory: it
        describes this working tree and nothing else, so it lives and dies with
        it (a fresh clone starts with no record), survives a restart of Rewind,
        is seen by every Rewind process that can act on the checkout at all, and
        the guards of this adapter (which knows nothing of Flask or the ops
        database) read it themselves. Written then renamed, so a reader never
        sees half of it. The blobs are stored (`hash-object -w`) so git holds a
        copy of what was written. Returns the files, sorted.
        """
        files = sorted(set(self.dirty_files()) - set(not_ours))
        path = self._release_writes_path()
        record = {"commit": self.worktree_head(), "files": self._digests(files, write=True)}
        temp = path.with_name(path.name + f".{os.getpid()}.new")
        temp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(temp, path)
        return files

    def dirty(self) -> DirtyFiles:
        """Uncommitted changes to tracked files: the release's own (recorded, content unchanged since) and the rest."""
        files = self.dirty_files()
        recorded = self.release_writes()
        candidates = [name for name in files if name in recorded]
        now = self._digests(candidates) if candidates else {}
        own = [name for name in candidates if now[name] == recorded[name]]
        return DirtyFiles(own=own, foreign=[name for name in files if name not in own])

    def checkout_drift(self) -> str | None:
        """Why the working copy is not exactly the branch tip (what the app runs may differ); None when it is.

        A detached HEAD, another branch or a hot-fix edited on the server all
        mean the code that answers health checks is not the commit Rewind
        would call deployed, so it must not be marked known good. What the
        release commands wrote (and nothing changed since) is part of the
        deployed commit's release, not drift.
        """
        current = self.current_branch()
        if current != self.branch:
            at = self.worktree_head()[:12]
            where = f"branch {current!r} (at {at})" if current else f"a detached HEAD at {at}"
            return f"{self.path} has {where} checked out, not {self.branch!r}"
        dirty = self.dirty()
        if dirty.foreign:
            return f"{self.path} has uncommitted changes to {_listed(dirty.foreign, 5)}{_own_note(dirty.own)}"
        return None

    def is_clean(self) -> bool:
        """No uncommitted changes to tracked files."""
        return not self.dirty_files()

    # --- changing ----------------------------------------------------------------

    def ready_to_change(self, action: str) -> str:
        """The branch's head, or GitError (what is in the way, what to do); touches nothing.

        What the release commands wrote is no obstacle: the change itself puts it back first.
        """
        return self._ready_to_change(action)

    def _ready_to_change(self, action: str) -> str:
        """Refuse unless the branch is checked out and clean but for what the release commands wrote; its head."""
        return self._check_ready(action)[0]

    def _check_ready(self, action: str) -> tuple[str, DirtyFiles]:
        # First: a rebase or a bisect detaches HEAD, a merge leaves files staged; name the cause, not its symptom.
        self.check_obstacles(action)
        current = self.current_branch()
        if current != self.branch:
            where = f"branch {current!r}" if current else "a detached HEAD"
            raise GitError(
                f"cannot {action}: {self.path} has {where} checked out, not {self.branch!r} — "
                f"check out {self.branch} there, or fix repo.branch in the targets file"
            )
        dirty = self.dirty()
        if dirty.foreign:
            subs = self._submodules_among(dirty.foreign)
            if subs:
                top = self._top()
                others = [name for name in dirty.foreign if name not in subs]
                also = f", and there are uncommitted changes to {_listed(others, 10)}" if others else ""
                raise GitError(
                    f"cannot {action}: in {self.path} the submodule {_listed(subs, 5)} is not what {self.branch} "
                    f"records (its checkout is at another commit, or has edits inside){also}",
                    fix=f"look with `git -C {top} submodule status` and `git -C {top / subs[0]} status`, then commit "
                    "or discard what is inside it, or check out the recorded commit there "
                    f"(`git -C {top} submodule update -- {subs[0]}`), so nothing is lost",
                )
            raise GitError(
                f"cannot {action}: {self.path} has uncommitted changes to {_listed(dirty.foreign, 10)} — "
                f"commit or discard them first, so nothing is lost{_own_note(dirty.own)}"
            )
        return self.head(), dirty

    def _submodules_among(self, names: Sequence[str]) -> list[str]:
        """Which of these paths are submodules (a gitlink in the index)."""
        out = self._run("ls-files", "--stage", "-z", "--", *(f":(top,literal){name}" for name in names))
        staged = (entry.split("\t", 1) for entry in out.stdout.split("\0") if "\t" in entry)
        return [path for meta, path in staged if meta.startswith(GITLINK + " ")]

    @contextmanager
    def _changing(self, action: str, sink: Sink | None) -> Iterator[str]:
        """Around a change of the branch: refuse as _ready_to_change does, else yield its head.

        What the release commands wrote (same files, same content) is put back
        to the commit first, said to the sink: the runbook's release writes it
        again. Should the change fail and the branch be back at that head, it
        is written back as it was, so a failure leaves the checkout as found.
        """
        start, dirty = self._check_ready(action)
        aside = {}
        if dirty.own:
            recorded = self.release_writes()
            aside = {name: recorded[name] for name in dirty.own}
            if sink is not None:
                # Named with its blob: were it a person's edit made while the release ran (indistinguishable),
                # `git cat-file -p <blob>` still gives it back.
                named = [f"{name} (git blob {aside[name][:12]})" if aside[name] else name for name in dirty.own]
                sink.line(
                    "out",
                    f"putting back what the release commands wrote, before the {action} "
                    f"(the release writes it again): {_listed(named, 10)}",
                )
            self._run("checkout", "HEAD", "--", *(f":(top,literal){name}" for name in dirty.own), sink=sink)
            left = self.dirty_files()
            if left:
                raise GitError(
                    f"cannot {action}: {self.path} still has uncommitted changes to {_listed(left, 10)} after "
                    f"putting back what the release commands wrote — run `git -C {self.path} status` and look"
                )
        try:
            yield start
        except BaseException:
            if aside:
                self._write_back(start, aside, sink)
            raise

    def _write_back(self, start: str, aside: dict[str, str], sink: Sink | None) -> None:
        """Put what the release commands wrote back in place after a failed change (best effort, said either way)."""
        try:
            if self.worktree_head() != start or self.dirty_files():
                return  # not where it began: leave it to the error being raised
            top = self._top()
            for name, blob in aside.items():
                path = top / name
                if not blob:
                    path.unlink(missing_ok=True)
                    continue
                data, cut = self._read_capped(["cat-file", "--filters", f"--path={name}", blob], BLOB_LIMIT)
                if cut:
                    raise GitError(f"{name} is larger than {BLOB_LIMIT} bytes; its release run must write it again")
                self._replace_file(path, data)
            if sink is not None:
                sink.line("out", f"wrote back what the release commands had written: {_listed(list(aside), 10)}")
        except (GitError, OSError, CommandCancelled, CommandTimedOut) as exc:
            if sink is not None:
                sink.line("err", f"could not write back what the release commands had written: {exc}")

    @staticmethod
    def _replace_file(path: Path, data: bytes) -> None:
        """Put `data` at `path` whole (temp file then rename): in place of a symlink, never through it,
        so nothing outside the checkout is written; a regular file's mode (an executable script) is kept."""
        try:
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
        except FileNotFoundError:
            mode = None
        temp = path.with_name(f".{path.name}.rewind-{os.getpid()}.new")
        try:
            temp.write_bytes(data)
            if mode is not None:
                os.chmod(temp, mode)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _unmerged(self) -> list[str]:
        out = self._run("diff", "--name-only", "--diff-filter=U", "-z", ok=(0, 1))
        return [name for name in out.stdout.split("\0") if name]

    def _put_back(self, start: str, operation: str, sink: Sink | None = None) -> None:
        """After a failed revert/merge: abort it, and reset to `start` only if aborting did not get back there.

        With a sink, the abort shows in the log and a last line says where the branch is: git's own advice just
        before it ("fix conflicts and run git revert --continue") would otherwise read as the way on. A cancel
        asked meanwhile does not stop it: half put back is worse than either end."""
        sink = Uncancellable(sink) if sink is not None else None
        self._run(operation, "--abort", ok=(0, 1, 128), sink=sink)
        if not (self.worktree_head() == start and self.is_clean()):
            if operation == "revert":
                self._run("revert", "--quit", ok=(0, 1, 128), sink=sink)
            self._run("reset", "--hard", "--quiet", start, sink=sink)
            if self.worktree_head() != start or not self.is_clean():
                raise GitError(
                    f"could not put {self.branch} back at {start[:12]} after a failed {operation} — "
                    f"run `git -C {self.path} status` and restore it by hand"
                )
        if sink is not None:
            sink.line(
                "out",
                f"{operation} abandoned: {self.branch} is back at {start[:7]}, nothing changed; git's advice above "
                f"(resolve and `git {operation} --continue`) does not apply",
            )

    def _state_commit(self, name: str) -> str | None:
        out = self._run("rev-parse", "--verify", "--quiet", name, ok=(0, 1))
        return out.stdout.strip() or None

    def _sequencer_next(self) -> str | None:
        """The commit a stopped revert sequence is on, from its todo list."""
        todo = self._run("rev-parse", "--git-path", "sequencer/todo").stdout.strip()
        path = Path(todo) if os.path.isabs(todo) else self.path / todo
        try:
            first = path.read_text().split(maxsplit=2)
        except OSError:
            return None
        return first[1] if len(first) > 1 else None

    def revert(self, shas: Sequence[str], sink: Sink | None = None) -> str:
        """Revert commits of the branch, in the order given (newest first), one revert commit each.

        All or nothing: on a conflict the branch and working tree are put back
        as they were and RevertConflict names the files. A merge commit is
        reverted against its first parent (the branch as it was before the
        merge). Returns the new head.
        """
        if isinstance(shas, str) or not shas:
            raise GitError("nothing to revert: give at least one commit")
        with self._changing("revert", sink) as start:
            return self._revert(start, shas, sink)

    def _revert(self, start: str, shas: Sequence[str], sink: Sink | None) -> str:
        full = list(dict.fromkeys(self.resolve(sha) for sha in shas))
        self.check_revertable(full)
        wanted: dict[str, str] = {}
        for sha in full:  # newest first: the oldest revert, applied last, decides
            parents = self.commit(sha).parents
            if parents:
                wanted.update(self._gitlinks(sha, parents[0]))
        self._check_submodules(wanted, "revert")
        self._check_filters(
            [(sha, parents[0]) for sha in full if (parents := self.commit(sha).parents)], "revert", sink
        )
        args = ["revert", "--no-edit"]
        if any(self.commit(sha).is_merge for sha in full):
            args += ["-m", "1"]  # git (2.21+) accepts it for the plain commits among them too
        try:
            self._run(*args, *full, sink=sink)
        except CommandCancelled:
            self._put_back(start, "revert", sink)  # cancelled between two reverts: none of them stays
            raise CommandCancelled(f"The code was not changed ({self.branch} is still at {start[:7]}).") from None
        except GitError as exc:
            files = self._unmerged()
            at = self._state_commit("REVERT_HEAD") or self._sequencer_next()
            self._put_back(start, "revert", sink)
            shorts = ", ".join(sha[:7] for sha in full)
            kept = f"nothing was changed ({self.branch} is still at {start[:7]})"
            if files:
                which = f"reverting {at[:7]}" if at else f"reverting {shorts}"
                raise RevertConflict(
                    full,
                    files,
                    f"{which} conflicts with later changes in {', '.join(files)}; {kept} — "
                    "revert the newer commits that touch those files too, or fix it by hand",
                    at=at,
                ) from None
            if "nothing to commit" in exc.stdout + exc.stderr:
                which = f"{at[:7]}" if at else f"one of {shorts}"
                raise exc.said(
                    f"reverting {which} changes nothing — it is already undone on {self.branch}; {kept}"
                ) from None
            raise exc.said(f"{exc.message}; {kept}") from None
        self._follow_submodules(start, "revert", sink)
        return self.head()

    def tag_safety(
        self,
        *,
        when: datetime | None = None,
        prefix: str = "rewind/pre-reset",
        message: str | None = None,
    ) -> str:
        """Tag the branch tip as `<prefix>/<YYYYmmddTHHMMSSZ>` (suffix -2, -3… if taken) so a reset loses nothing.

        `when` may be naive (read as UTC, like app.clock.utcnow()) or aware.
        The tag is annotated, so it records who made it and why.
        """
        if not prefix or prefix.startswith("-") or prefix.endswith("/"):
            raise ValueError(f"bad tag prefix {prefix!r}")
        when = when or datetime.now(UTC)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        sha = self.head()
        base = f"{prefix}/{when:%Y%m%dT%H%M%SZ}"
        text = message or f"Rewind safety tag: {self.branch} was at {sha} before a reset"
        for n in range(1, 1000):
            name = base if n == 1 else f"{base}-{n}"
            if self._state_commit(f"refs/tags/{name}"):
                continue
            out = self._run("tag", "--annotate", f"--message={text}", name, sha, ok=(0, 128))
            if out.returncode == 0:
                return name
            if "already exists" not in out.stderr:
                raise self._error(self._argv(["tag", name, sha]), ["tag"], out)
        raise GitError(f"too many safety tags named {base}-N; delete some old ones")

    def reset_hard(self, sha: str, sink: Sink | None = None) -> str:
        """Move the branch (and working tree) back to a commit of its history. Tag first: see tag_safety()."""
        with self._changing("reset", sink) as start:
            return self._reset_hard(start, sha, sink)

    def _reset_hard(self, start: str, sha: str, sink: Sink | None) -> str:
        target = self.resolve(sha)
        # reset --hard silently overwrites untracked (or ignored) files in its way: refuse instead.
        added = self._run("diff", "--name-only", "-z", "--no-renames", "--diff-filter=A", start, target, "--")
        in_the_way = [name for name in added.stdout.split("\0") if name and os.path.lexists(self.path / name)]
        if in_the_way:
            raise GitError(
                f"cannot reset: {', '.join(in_the_way)} in {self.path} would be overwritten, and git does not "
                "track them — move them out of the way first"
            )
        self._check_submodules(self._gitlinks(start, target), "reset")
        self._check_filters([(start, target)], "reset", sink)
        self._run("reset", "--hard", target, sink=sink)
        self._follow_submodules(start, "reset", sink)
        return self.head()

    def put_back(self, sha: str, sink: Sink | None = None) -> list[str]:
        """Return the branch and working tree to `sha` after a change that must be undone (a failed release).

        Unlike reset_hard, `sha` need not be in the branch's history (undoing a
        reset goes forward again) and uncommitted changes to tracked files are
        discarded: they are what the failed change left behind. Returns those files.
        """
        current = self.current_branch()
        if current != self.branch:
            where = f"branch {current!r}" if current else "a detached HEAD"
            raise GitError(
                f"cannot put {self.branch} back at {sha[:12]}: {self.path} has {where} checked out — "
                f"check out {self.branch} there and reset it by hand"
            )
        target = self._verify_commit(self._check_id(sha))
        discarded = self.dirty_files()
        if discarded:
            # Stored in git first: a person's edit made while the failed change ran cannot be told from it.
            blobs = self._digests(discarded, write=True)
            if sink is not None:
                named = [f"{name} (git blob {blobs[name][:12]})" if blobs[name] else name for name in discarded]
                sink.line("out", f"discarding, kept in git (`git cat-file -p <blob>`): {_listed(named, 10)}")
        was = self.worktree_head()
        self._run("reset", "--hard", target, sink=sink)
        if self.head() != target:
            raise GitError(
                f"could not put {self.branch} back at {target[:12]} — run `git -C {self.path} status` "
                "and restore it by hand"
            )
        self._follow_submodules(was, "put back", sink)
        return discarded

    def fetch(self, sink: Sink | None = None) -> list[str]:
        """Fetch the remote's branches into `refs/remotes/<remote>/…`; the deployed branch never moves.

        Returns the remote branches known afterwards (`origin/main` …). A failure
        changes nothing Rewind deploys from and says how to fix it.
        """
        return self.fetch_changes(sink).branches

    def fetch_changes(self, sink: Sink | None = None) -> Fetched:
        """fetch(), also saying which remote branches the fetch found rewritten (force-pushed)."""
        if self.remote is None:
            raise GitError("this target has no remote to fetch from — set repo.remote in the targets file")
        refspec = f"+refs/heads/*:refs/remotes/{self.remote}/*"
        before = self._remote_tips()
        try:
            self._run("fetch", "--prune", "--no-tags", "--no-recurse-submodules", self.remote, refspec, sink=sink)
        except GitLocked:
            raise
        except GitError as exc:
            if _UNREACHABLE.search(exc.stderr):
                url = self._run("remote", "get-url", self.remote, ok=(0, 2)).stdout.strip()
                raise RemoteUnreachable(
                    f"fetching from {self.remote!r} failed: the remote cannot be reached at {url or '(no URL)'}: "
                    f"{_tail(exc.stderr, 2)}; nothing was changed ({self.branch} was not touched)",
                    fix=f"check its URL (`git -C {self.path} remote -v`) and that this host can reach it "
                    f"(the path exists, the network, the credentials), then try again",
                    remote=self.remote,
                    url=url,
                    stderr=exc.stderr,
                ) from None
            raise exc.said(
                f"fetching from {self.remote!r} failed: {_tail(exc.stderr) or exc.message}"
                f"{self._hook_note('fetch', exc.stderr) if _tail(exc.stderr) else ''}; nothing was changed "
                f"({self.branch} was not touched) — check the remote's URL (`git -C {self.path} remote -v`) "
                "and that this host can reach it"
            ) from None
        after = self._remote_tips()
        rewritten = {
            name: (old, after[name])
            for name, old in before.items()
            if after.get(name, old) != old and not self._is_ancestor(old, after[name])
        }
        return Fetched(self.remote_branches(), rewritten)

    def _remote_tips(self) -> dict[str, str]:
        out = self._run("for-each-ref", "--format=%(refname) %(objectname)", f"refs/remotes/{self.remote}/")
        pairs = (line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
        return {ref.removeprefix("refs/remotes/"): sha for ref, sha in pairs}

    def _is_ancestor(self, old: str, new: str) -> bool:
        return self._run("merge-base", "--is-ancestor", old, new, ok=(0, 1, 128)).returncode == 0

    def check_upstream(self, fetched: Fetched) -> None:
        """RemoteRewritten if the fetch found the remote's own copy of the branch force-pushed: a change pushed
        from here would put the old history back over the rewrite (or be refused)."""
        upstream = f"{self.remote}/{self.branch}"
        if upstream not in fetched.rewritten:
            return
        old, new = fetched.rewritten[upstream]
        raise RemoteRewritten(
            f"{upstream} was force-pushed: it moved from {old[:12]} to {new[:12]}, which does not contain it. "
            f"{self.branch} here still has the old history, and pushing it after the deploy would put that back "
            f"over the rewrite (or be refused); nothing was changed ({self.branch} was not touched)",
            fix=f"find out who rewrote it and why (`git -C {self.path} log --oneline {old[:12]}...{new[:12]}`), "
            f"then bring {self.branch} in line with it (an admin's reset) before deploying",
            remote_branch=upstream,
            old=old,
            new=new,
        )

    def check_still_on(self, sha: str, remote_branch: str) -> str:
        """The tip of a fetched remote branch (`origin/x`), or RemoteRewritten if it no longer has `sha` — a
        commit chosen from it before someone force-pushed it away."""
        tip = self._run("rev-parse", "--verify", "--quiet", f"refs/remotes/{remote_branch}^{{commit}}", ok=(0, 1))
        now = tip.stdout.strip()
        if now and self._is_ancestor(sha, now):
            return now
        gone = "no longer exists there" if not now else f"is now at {now[:12]}, which does not contain it"
        raise RemoteRewritten(
            f"{remote_branch} was at {sha[:12]} when this deploy was chosen, and {gone}: it was force-pushed "
            f"(its history rewritten). Deploying {sha[:12]} would bring back what was taken out; nothing was changed "
            f"({self.branch} was not touched)",
            fix=f"look at what changed (`git -C {self.path} log --oneline {sha[:12]}...{remote_branch}`), ask who "
            "rewrote it, then deploy again from what the remote has now",
            remote_branch=remote_branch,
            old=sha,
            new=now or None,
        )

    def merge(self, ref_sha: str, sink: Sink | None = None) -> str:
        """Bring a commit into the branch: fast-forward when possible, else a merge commit. Returns the new head.

        On a conflict the merge is aborted, the branch put back, and
        MergeConflict names the files.
        """
        with self._changing("merge", sink) as start:
            return self._merge(start, ref_sha, sink)

    def _merge(self, start: str, ref_sha: str, sink: Sink | None) -> str:
        sha = self._verify_commit(self._check_id(ref_sha))
        if self._run("merge-base", "--is-ancestor", sha, start, ok=(0, 1)).returncode == 0:
            return start  # already contained: nothing to do
        fast_forward = self._run("merge-base", "--is-ancestor", start, sha, ok=(0, 1)).returncode == 0
        base = self._run("merge-base", start, sha, ok=(0, 1)).stdout.strip()
        self._check_submodules(self._gitlinks(base or start, sha), "deploy")
        self._check_filters([(base or start, sha)], "deploy", sink)
        args = ["merge", "--ff-only", sha] if fast_forward else ["merge", "--no-ff", "--no-edit", sha]
        try:
            self._run(*args, sink=sink)
        except CommandCancelled:
            self._put_back(start, "merge", sink)
            raise CommandCancelled(f"The code was not changed ({self.branch} is still at {start[:7]}).") from None
        except GitError as exc:
            files = self._unmerged()
            self._put_back(start, "merge", sink)
            kept = f"nothing was changed ({self.branch} is still at {start[:7]})"
            if files:
                raise MergeConflict(
                    sha,
                    files,
                    f"merging {sha[:7]} into {self.branch} conflicts in {', '.join(files)}; {kept} — "
                    "resolve it in the repository, or deploy a commit that already contains both",
                ) from None
            raise exc.said(f"{exc.message}; {kept}") from None
        self._follow_submodules(start, "deploy", sink)
        return self.head()

    # --- submodules: git moves their recorded commit, never their checkout ----------------------

    def _gitlinks(self, a: str, b: str) -> dict[str, str]:
        """Submodules whose recorded commit differs from `a` to `b`: path -> the commit `b` records ("" if none)."""
        out = self._run("diff", "--raw", "-z", "--no-renames", "--no-abbrev", a, b, "--")
        fields = out.stdout.split("\0")
        found = {}
        for meta, path in zip(fields[::2], fields[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            old_mode, new_mode, _old, new, _status = meta[1:].split(" ", 4)
            if GITLINK in (old_mode, new_mode):
                found[path] = new if new_mode == GITLINK else ""
        return found

    def _check_submodules(self, wanted: dict[str, str], action: str) -> None:
        """Before a change: refuse unless each checked-out submodule it moves has the commit to follow with.
        (Edits inside a submodule already refuse the change: they make the checkout itself dirty.)"""
        if not wanted:
            return
        top = self._top()
        for path, sha in wanted.items():
            sub = top / path
            if not sha or not (sub / ".git").exists():
                continue  # dropped, or not checked out here: nothing to move (said after the change)
            if self._run("cat-file", "-e", f"{sha}^{{commit}}", ok=(0, 1, 128), where=sub).returncode:
                raise SubmoduleNotReady(
                    f"cannot {action}: it moves the submodule {path} to {sha[:12]}, a commit its checkout {sub} "
                    "does not have; nothing was changed",
                    fix=f"fetch it there first (`git -C {sub} fetch`), then try again",
                    path=path,
                    wanted=sha,
                )

    def _missing_filters(self) -> dict[str, str]:
        """Filter drivers the repository marks required (git-lfs's `filter.lfs.required`) whose program is not
        installed here: driver -> program. Git fails half-way through writing files on them."""
        out = self._run("config", "-z", "--get-regexp", r"^filter\..*\.required$", ok=(0, 1))
        missing = {}
        for entry in filter(None, out.stdout.split("\0")):
            key, _, value = entry.partition("\n")
            if value.strip().lower() not in ("true", "yes", "on", "1"):
                continue
            driver = key.removeprefix("filter.").removesuffix(".required")
            command = self._filter_command(driver)
            try:
                program = shlex.split(command)[0] if command else ""
            except ValueError:
                program = command.split()[0]
            if program and shutil.which(program, path=self._env.get("PATH")) is None:
                missing[driver] = program
        return missing

    def _check_filters(self, pairs: Sequence[tuple[str, str]], action: str, sink: Sink | None = None) -> None:
        """Before a change: refuse if it writes files through a required filter whose program is missing (LFS files
        on a host without git-lfs): git would stop with some of them deleted and the rest not written. Warn (in the
        job's log) of files it writes through a filter this checkout has no command for: git writes them as stored,
        saying nothing (an LFS pointer instead of the file, where `git lfs install` never ran)."""
        if sink is not None:
            for driver, files in self._unconfigured_filters(pairs).items():
                them = "them" if len(files) > 1 else "it"
                if driver == "lfs":
                    gets, fix = "LFS pointers", f"`git -C {self.path} lfs install --local`, then `git lfs pull`"
                else:
                    gets, fix = "what git stores, unfiltered", f"set filter.{driver}.smudge (or .process)"
                sink.line(
                    "err",
                    f"warning: {action} writes {_listed(files, 5)} through the {driver!r} filter, which this checkout "
                    f"has no command for, so git writes {them} as {gets}, not the content, and says nothing; if the "
                    f"application needs the content: {fix}",
                )
        missing = self._missing_filters()
        for driver, program in missing.items():
            files: list[str] = []
            for a, b in pairs:
                out = self._run("diff", "--name-only", "-z", "--no-renames", a, b, "--", f":(attr:filter={driver})")
                files += [name for name in out.stdout.split("\0") if name and name not in files]
            if files:
                raise FilterMissing(
                    f"cannot {action}: it changes {_listed(files, 5)}, which git writes through the {driver!r} filter "
                    f"(filter.{driver}.required is set), and its program `{program}` is not installed on this host; "
                    "git would stop half-way with files deleted. Nothing was changed",
                    fix=f"install {program} for the user Rewind runs as (for LFS: the git-lfs package, then "
                    f"`git -C {self.path} lfs install --local`), or unset filter.{driver}.required if the repository "
                    "no longer uses it",
                    driver=driver,
                    program=program,
                    files=files,
                )

    def _unconfigured_filters(self, pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
        """Files the change writes that .gitattributes (as checked out) sends through a filter with neither a smudge
        nor a process command configured here: driver -> files."""
        files: list[str] = []
        for a, b in pairs:
            out = self._run("diff", "--name-only", "-z", "--no-renames", "--diff-filter=d", a, b, "--")
            files += [name for name in out.stdout.split("\0") if name and name not in files]
        if not files:
            return {}
        fields = self._run("check-attr", "-z", "filter", "--", *files[:FILTER_CHECK_LIMIT]).stdout.split("\0")
        used: dict[str, list[str]] = {}
        for path, value in zip(fields[0::3], fields[2::3], strict=False):
            if value not in ("", "unspecified", "unset", "set"):
                used.setdefault(value, []).append(path)
        return {driver: names for driver, names in used.items() if not self._filter_command(driver)}

    def _filter_command(self, driver: str) -> str:
        """The command git runs a filter driver's files through on checkout (process, else smudge); "" for none."""
        for kind in ("process", "smudge"):
            if command := self._run("config", "--get", f"filter.{driver}.{kind}", ok=(0, 1)).stdout.strip():
                return command
        return ""

    def _follow_submodules(self, start: str, action: str, sink: Sink | None) -> None:
        """After a change: check out in each submodule the commit the branch now records, as a deploy would."""
        moved = self._gitlinks(start, self.worktree_head())
        if not moved:
            return
        top = self._top()
        for path, sha in moved.items():
            sub = top / path
            if not sha:
                said = f"submodule {path} is no longer part of {self.branch}; its checkout {sub} was left as it is"
            elif not (sub / ".git").exists():
                said = (
                    f"submodule {path} now records {sha[:12]} but is not checked out here: not updated "
                    f"(`git -C {top} submodule update --init -- {path}` would)"
                )
            else:
                try:
                    self._run("checkout", "--quiet", "--detach", sha, sink=sink, where=sub)
                except GitError as exc:
                    raise exc.said(
                        f"the {action} changed {self.branch}, but its submodule {path} could not follow to "
                        f"{sha[:12]}: {exc.message}"
                    ) from None
                said = f"moved submodule {path} to {sha[:12]}, the commit {self.branch} now records"
            if sink is not None:
                sink.line("out", said)

    def push(self, force: bool = False, sink: Sink | None = None) -> None:
        """Push the branch to the remote, if the target has one.

        force uses --force-with-lease: it overwrites the remote branch only if
        it is still where this repository last saw it, so nobody's push is lost.
        """
        if self.remote is None:
            return
        args = ["push"]
        if force:
            args.append(f"--force-with-lease={self._ref}")
        args += [self.remote, f"{self._ref}:{self._ref}"]
        try:
            self._run(*args, sink=sink)
        except GitError as exc:
            if "stale info" in exc.stderr:
                raise exc.said(
                    f"the remote {self.remote!r} has a {self.branch} Rewind has not seen — someone pushed since; "
                    f"fetch and look before forcing again"
                ) from None
            if "non-fast-forward" in exc.stderr or "fetch first" in exc.stderr:
                raise exc.said(
                    f"the remote {self.remote!r} has commits on {self.branch} that this repository lacks — "
                    "a plain push would lose them; push with force only if that is intended"
                ) from None
            raise exc.said(
                f"pushing {self.branch} to {self.remote!r} failed: {_tail(exc.stderr) or exc.message}"
                f"{self._hook_note('push', exc.stderr) if _tail(exc.stderr) else ''}; "
                f"{self.branch} here keeps its new commits — check the remote's URL (`git -C {self.path} remote -v`) "
                f"and that this host can reach it, then push by hand: `git -C {self.path} push {self.remote} "
                f"{self.branch}`"
            ) from None
