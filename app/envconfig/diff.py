"""What differs between two env files: keys added, removed and changed, from keyed digests alone.

A side is a version (by id) or the file now. Values stay masked: the diff
needs none of them. `reveal` decrypts one value of one side, for an admin,
and the view audits it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.envconfig import store
from app.targets.envfile import EnvFileError, decode, parse
from app.targets.target import Target

NOW = "now"


@dataclass(frozen=True)
class Side:
    ref: str  # a version id, or "now"
    label: str
    digests: dict[str, str]
    problem: str | None  # the file does not parse
    file_digest: str


@dataclass(frozen=True)
class KeyRow:
    key: str
    change: str  # added, removed, changed, same


@dataclass(frozen=True)
class Diff:
    before: Side
    after: Side
    rows: tuple[KeyRow, ...]

    @property
    def changed(self) -> list[KeyRow]:
        return [row for row in self.rows if row.change != "same"]

    @property
    def no_key_differs(self) -> str:
        """Said when no key differs: whether the files are the same, or differ where no value changed (a
        restore of that version still changes the file)."""
        if self.before.file_digest == self.after.file_digest:
            return "no key differs"
        return "no key differs; the files differ elsewhere (comments, blank lines, order or quoting)"

    @property
    def comparable(self) -> bool:
        """A side that does not parse has no keys to compare: its values are unknown, not removed (QA: a quote
        left open read as every setting removed)."""
        return not (self.before.problem or self.after.problem)


def label_of(ref: object) -> str:
    """A side as a person reads it ("version #12", "the file now"), wherever a page or log names one."""
    return "the file now" if str(ref).strip().lower() == NOW else f"version #{str(ref).strip().lstrip('#')}"


def side(target: Target, ref: str) -> Side:
    """A version of the target (UnknownVersion otherwise) or, for "now", the file on disk."""
    if str(ref).strip().lower() == NOW:
        contents = store.read_contents(target.instance_dir, store.current_state(target).content)
        return Side(NOW, label_of(NOW), contents.digests, contents.problem, contents.file_digest)
    version = store.get(target.name, ref)
    return Side(str(version.id), label_of(version.id), version.digests, version.parse_error, version.file_digest)


def compare(before: Side, after: Side) -> Diff:
    if before.problem or after.problem:
        return Diff(before, after, ())
    keys = sorted(set(before.digests) | set(after.digests))
    rows = []
    for key in keys:
        if key not in before.digests:
            change = "added"
        elif key not in after.digests:
            change = "removed"
        else:
            change = "same" if before.digests[key] == after.digests[key] else "changed"
        rows.append(KeyRow(key, change))
    return Diff(before, after, tuple(rows))


def between(target: Target, a: str, b: str) -> Diff:
    return compare(side(target, a), side(target, b))


def reveal(target: Target, ref: str, key: str) -> str | None:
    """One value of one side, decrypted; KeyError when that side has no such key."""
    if str(ref).strip().lower() == NOW:
        content = store.current_state(target).content
    else:
        content = store.content_of(target, store.get(target.name, ref))
    try:
        values = parse(decode(content)).check()
    except EnvFileError:
        values = parse(decode(content)).values()
    if key not in values:
        raise KeyError(key)
    return values[key]
