"""Recording and reading env file versions; the only code that seals and unseals them.

A version is recorded on every change Rewind makes, on demand, and when the
file is seen to have changed on disk. Only metadata, keyed digests and the
sealed file reach the ops database.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, not_, or_, select

from app.audit.store import Actor, record_and_commit, serialise
from app.audit.store import record as record_audit
from app.envconfig import keys
from app.envconfig.models import EnvVersion
from app.extensions import db
from app.jobs.models import Job
from app.pagination import Page, keyset_page
from app.rowids import row_id
from app.statuses import EnvSource, JobState, Outcome
from app.targets.envfile import EnvFile, EnvFileError, EnvFileState, decode, parse
from app.targets.errors import TargetError
from app.targets.target import Target


class NoEnvFile(TargetError):
    def __init__(self, target: str) -> None:
        super().__init__(
            f"{target} has no env file",
            fix=f'add env_file = "/path/to/.env" to [targets.{target}] in the targets file',
        )
        self.target = target


class UnknownVersion(TargetError):
    def __init__(self, target: str, version: object) -> None:
        super().__init__(
            f"{target} has no env file version {version!r}",
            fix=f"pick one from `flask rewind config versions {target}` or the Config tab",
        )
        self.target, self.version = target, version


# One recorder at a time in this process, so the monitor and a snapshot never both record the same change.
_recording = threading.RLock()


@dataclass(frozen=True)
class Contents:
    """A file's content with what a version records about it (digests, parse problem)."""

    content: bytes
    values: dict[str, str | None]
    digests: dict[str, str]
    file_digest: str
    problem: str | None


def env_file_of(target: Target) -> EnvFile:
    if target.config.env_file is None:
        raise NoEnvFile(target.name)
    return EnvFile(target.config.env_file)


def read_contents(instance_dir: Path, content: bytes) -> Contents:
    """Digests and values of a file's content; a file that does not parse keeps its problem, not its values."""
    try:
        parsed = parse(decode(content))
    except EnvFileError as exc:
        values, problem = {}, exc.message
    else:
        values = parsed.values() if parsed.ok else {}
        problem = "; ".join(str(p) for p in parsed.problems[:3]) or None
    digests = {key: keys.value_digest(instance_dir, key, value) for key, value in values.items()}
    return Contents(content, values, digests, keys.file_digest(instance_dir, content), problem)


PAGE_SIZE = 100  # versions on one page of the tab, and listed by the CLI unless told otherwise


def versions(target: str, limit: int = PAGE_SIZE) -> list[EnvVersion]:
    """The newest `limit` versions: the first page, for callers that never page back."""
    return versions_page(target, limit=limit).items


def versions_page(target: str, *, before: int | None = None, limit: int = PAGE_SIZE) -> Page:
    """A page of the target's versions, newest first; next_cursor says that older ones exist and where they start."""
    stmt = select(EnvVersion).where(EnvVersion.target == target)
    return keyset_page(stmt, EnvVersion.id, before=before, limit=limit)


def current_id(target: str, file_digest: str) -> int | None:
    """The newest version holding the file's content now, wherever it falls among the pages."""
    stmt = select(EnvVersion.id).where(EnvVersion.target == target, EnvVersion.file_digest == file_digest)
    return db.session.scalar(stmt.order_by(EnvVersion.id.desc()).limit(1))


def newest(target: str) -> EnvVersion | None:
    return db.session.scalar(
        select(EnvVersion).where(EnvVersion.target == target).order_by(EnvVersion.id.desc()).limit(1)
    )


def get(target: str, version_id: object) -> EnvVersion:
    """The version of this target with that id; UnknownVersion for anything else (another target's included)."""
    number = row_id(str(version_id).strip().lstrip("#"))
    row = db.session.get(EnvVersion, number) if number is not None else None
    if row is None or row.target != target:
        raise UnknownVersion(target, version_id)
    return row


def content_of(target: Target, version: EnvVersion) -> bytes:
    """The version's file, decrypted with Rewind's key (in memory only)."""
    return keys.unseal(target.instance_dir, version.sealed)


def changes_between(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """Which keys were added, removed and changed, from two digest maps: no value needed."""
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
    }


def record(
    target: Target,
    state: EnvFileState,
    source: EnvSource,
    *,
    reason: str = "",
    actor: str | None = None,
    job_id: int | None = None,
) -> EnvVersion:
    """Seal the file's content and keep it as the target's newest version (committed)."""
    with _recording:
        sealed = keys.seal(target.instance_dir, state.content)
        row = _new_version(target, state, source, reason, actor, job_id, newest(target.name), sealed)
        db.session.commit()
        return row


def _new_version(
    target: Target,
    state: EnvFileState,
    source: EnvSource,
    reason: str,
    actor: str | None,
    job_id: int | None,
    previous: EnvVersion | None,
    sealed: bytes,
) -> EnvVersion:
    """The version row, added and flushed (it has its id) in the caller's transaction, which read `previous` (the
    newest version, its changes are against it); `sealed`: the content sealed beforehand (a gpg run)."""
    contents = read_contents(target.instance_dir, state.content)
    row = EnvVersion(
        target=target.name,
        source=source.value,
        reason=reason[:255],
        actor_name=actor,
        job_id=job_id,
        path=str(target.config.env_file),
        file_mtime=state.mtime,
        file_owner=state.owner,
        file_digest=contents.file_digest,
        size=len(state.content),
        parse_error=(contents.problem or None) and contents.problem[:512],
        digests_json=json.dumps(contents.digests, sort_keys=True),
        changes_json=json.dumps(_changes(target.name, previous, contents)),
        sealed=sealed,
    )
    db.session.add(row)
    db.session.flush()
    return row


def _changes(target: str, previous: EnvVersion | None, contents) -> dict:
    """Against the newest version that parsed. A file that does not parse has no keys to compare: counted as keys,
    it read "removed: DATABASE_URL, SECRET_KEY, …" (QA), and the fixed file after it "added: …" every key again."""
    if contents.problem:
        return {}
    if previous is not None and previous.parse_error:
        previous = db.session.scalar(
            select(EnvVersion)
            .where(EnvVersion.target == target, EnvVersion.id < previous.id, EnvVersion.parse_error.is_(None))
            .order_by(EnvVersion.id.desc())
            .limit(1)
        )
        # said with the keys: read under the broken version, "no key changed" looked as if the fix did nothing
        since = {"since": previous.id if previous else None}
        return changes_between(previous.digests if previous else {}, contents.digests) | since
    return changes_between(previous.digests if previous else {}, contents.digests)


def unverified(versions: list[EnvVersion]) -> set[int]:
    """The versions a restore or edit wrote whose job then failed (verification, the restart, the release commands,
    a cancel): the job put the previous file back, and the version never ran healthy. Listed as "Rewind, by admin
    (job #12)" and nothing more, it read like any good version, with a Restore button beside it (QA)."""
    ids = [v.id for v in versions]
    if not ids:
        return set()
    return set(db.session.scalars(select(EnvVersion.id).where(EnvVersion.id.in_(ids), not_(ran_or_unknown()))))


def ran_or_unknown() -> ColumnElement[bool]:
    """SQL for a version that is not one a failed job wrote (see unverified): every other version, as a clause, so
    the fallback for a broken file (fallback.py) reads the same rule without this module's session."""
    failed = select(Job.id).where(Job.state.in_([JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED]))
    return or_(
        EnvVersion.source != EnvSource.REWIND.value,
        EnvVersion.job_id.is_(None),
        EnvVersion.reason.startswith("automatic undo"),
        EnvVersion.job_id.not_in(failed),
    )


def current_state(target: Target) -> EnvFileState:
    return env_file_of(target).read()


def ensure_current(
    target: Target, *, source: EnvSource | None = None, actor: str | None = None, job_id: int | None = None
) -> tuple[EnvVersion, bool]:
    """The version matching the file now, recording one if the file differs from the newest; (version, recorded).

    A difference Rewind did not make is an outside change unless `source` says otherwise (a snapshot).
    """
    with _recording:
        return _ensure_current(target, source=source, actor=actor, job_id=job_id)


def _ensure_current(
    target: Target, *, source: EnvSource | None, actor: str | None, job_id: int | None
) -> tuple[EnvVersion, bool]:
    state = current_state(target)
    db.session.commit()  # end any older snapshot of the table: another thread may have just recorded
    digest = keys.file_digest(target.instance_dir, state.content)
    previous = newest(target.name)
    if previous is not None and previous.file_digest == digest:
        return previous, False
    sealed = keys.seal(target.instance_dir, state.content)  # a gpg run: not under the lock below
    # Another process may be recording this very change (every web worker's monitor watches the file, their passes
    # in step): looked at again under the lock every audited write takes, and kept once, with its audit row.
    serialise()
    previous = newest(target.name)
    if previous is not None and previous.file_digest == digest:
        db.session.rollback()
        return previous, False
    if source is None:
        source = EnvSource.OUTSIDE if previous is not None else EnvSource.FIRST
    reason = {
        EnvSource.OUTSIDE: f"the file changed on disk (modified {_when(state.mtime)} by owner {state.owner})",
        EnvSource.FIRST: "the file as Rewind first saw it",
        EnvSource.SNAPSHOT: "snapshot",
    }.get(source, "")
    version = _new_version(target, state, source, reason, actor, job_id, previous, sealed)
    if source == EnvSource.OUTSIDE:
        # On the target's timeline (kind "config"), where "what changed?" is asked: a hand edit of the env file was
        # only on the Config tab, while Rewind's own restores and edits, and even a reveal, were on the timeline (QA).
        details = {"version": version.id, "modified": _when(state.mtime), "owner": state.owner, **version.changes}
        if version.parse_error:  # the edit that broke the file: the prime suspect, said so (not the bad text)
            details["parses"] = False
        record_audit("envconfig.outside", target=target.name, actor=Actor.system(), details=details)
    db.session.commit()  # the version and its audit row together
    return version, True


def snapshot(target: Target, *, actor: Actor, via: str | None = None) -> tuple[EnvVersion, bool]:
    """Snapshot now (the Config tab's button, `flask rewind config snapshot`): the file kept as a version unless the
    newest one holds it already; (version, recorded). Audited (envconfig.snapshot), a failure too, then raised.
    `via`: "cli" from the shell (the tab's rows say nothing of it, as before)."""
    said = {"via": via} if via else {}
    try:
        version, recorded = ensure_current(target, source=EnvSource.SNAPSHOT, actor=actor.name)
    except TargetError as exc:
        db.session.rollback()
        details = {"reason": exc.message, **said}
        record_and_commit(
            "envconfig.snapshot", outcome=Outcome.FAILED, target=target.name, actor=actor, details=details
        )
        raise
    details = {"version": version.id, "recorded": recorded, **said}
    record_and_commit("envconfig.snapshot", target=target.name, actor=actor, details=details)
    return version, recorded


def _when(mtime: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
