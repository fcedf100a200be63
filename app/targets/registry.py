"""Which targets exist: one Targets object over the targets file, re-read when the file changes.

Every request that names a target goes through `Targets.config()` or
`Targets.open()` first, so an unknown name is refused before anything else
happens. A file broken while Rewind runs does not take the console down:
the last good configuration stays in force, and `problem` says what is
wrong with the file on disk.
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.targets.config import EnvFallback, TargetConfig, TargetsFileError, load_targets
from app.targets.target import Target

__all__ = ["Targets", "TargetsFileError", "UnknownTarget"]


class UnknownTarget(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        choices = ", ".join(known) if known else "none are configured"
        super().__init__(f"there is no target {name!r} (known targets: {choices})")
        self.name = name
        self.known = known


class Targets:
    """The targets file as Rewind last read it successfully."""

    def __init__(self, path: Path, instance_dir: Path, env_fallback: EnvFallback | None = None) -> None:
        self.path = path
        self.instance_dir = instance_dir
        self.env_fallback = env_fallback  # a stored env file version for a file that does not parse
        self._lock = threading.Lock()
        self._seen: tuple | None = None  # (mtime ns, size, inode) of the file last read, and of env files it read
        self._loaded: dict[str, TargetConfig] = {}
        self.problem: str | None = None  # why the file on disk could not be used, if it cannot

    def load(self) -> Targets:
        """Read the file now; TargetsFileError if it is broken (start-up uses this to refuse a bad file)."""
        self._loaded = load_targets(self.path, fallback=self.env_fallback) if self.path.exists() else {}
        self._seen = self._stat()
        self.problem = None
        return self

    def _stat(self) -> tuple | None:
        """Enough to see a change even within one timestamp tick: a rewrite by rename changes the inode.

        Env files that `envfile:` values were read from count too: a restored file reloads them.
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        read = sorted(str(c.env_file) for c in self._loaded.values() if c.reads_env_file and c.env_file)
        return st.st_mtime_ns, st.st_size, st.st_ino, *(_file_stat(Path(p)) for p in read)

    def _current(self) -> dict[str, TargetConfig]:
        seen = self._stat()
        with self._lock:
            if seen == self._seen:
                return self._loaded
            try:
                self._loaded = load_targets(self.path, fallback=self.env_fallback) if seen is not None else {}
                self.problem = None
            except TargetsFileError as exc:
                self.problem = str(exc)  # each place that says it adds that the last good version stays in use
            self._seen = self._stat()  # the env files the new configuration reads, too
            return self._loaded

    def names(self) -> list[str]:
        return sorted(self._current())

    def known(self, name: str | None) -> str | None:
        """`name` if it is one of the targets, else None: for a record that may name a target, never an error."""
        return name if name and name in self._current() else None

    def all(self) -> list[TargetConfig]:
        known = self._current()
        return [known[name] for name in sorted(known)]

    def config(self, name: str) -> TargetConfig:
        """The target's configuration; UnknownTarget (naming the known ones) otherwise."""
        known = self._current()
        if name not in known:
            raise UnknownTarget(name, sorted(known))
        return known[name]

    def open(self, name: str) -> Target:
        """The target with its adapters; UnknownTarget otherwise."""
        return Target(self.config(name), self.instance_dir)


def _file_stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino
