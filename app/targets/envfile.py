"""A target's env file: parsed as python-dotenv reads it, and rewritten safely.

The parser accepts what python-dotenv accepts (comments, `export`, single and
double quotes, escapes inside double quotes, quoted values over several
lines) and reads values literally, without `${VAR}` expansion. Where
python-dotenv skips a bad line with a warning, this parser names the line and
the reason: Rewind never restores a file it cannot read the same way the
application will. Every binding keeps its span in the text, so one key can be
rewritten without touching the rest of the file.

Writing is atomic (a temporary file in the same folder, fsync, rename) and
keeps the file's owner and mode; a symlinked env file has its target
rewritten and the link kept.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.files import sync_dir
from app.targets.errors import TargetError

# python-dotenv's escapes inside double quotes; any other backslash pair is kept as written.
DOUBLE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r"}
DOUBLE_ESCAPES |= {"t": "\t", "v": "\v"}
SINGLE_ESCAPES = {"\\": "\\", "'": "'"}
KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:@+,=%-]*\Z")
MAX_BYTES = 1024 * 1024
EXPORT = re.compile(r"export[^\S\r\n]+")


class EnvFileError(TargetError):
    """The env file cannot be read, parsed or written; the message says where and what to do."""

    def __init__(self, message: str, *, fix: str = "", path: Path | None = None, line: int | None = None) -> None:
        super().__init__(message, fix=fix)
        self.path = path
        self.line = line


@dataclass(frozen=True)
class Binding:
    key: str
    value: str | None  # None: the key is named without `=` (python-dotenv reads it as unset)
    line: int  # where the key is written, from 1
    start: int  # span of the whole entry in the text, for rewriting one key
    end: int


@dataclass(frozen=True)
class ParseProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class Parsed:
    bindings: tuple[Binding, ...]
    problems: tuple[ParseProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def values(self) -> dict[str, str | None]:
        """Key to value, the last binding of a key winning (as python-dotenv does)."""
        return {b.key: b.value for b in self.bindings}

    def check(self, where: str = "the env file") -> dict[str, str | None]:
        """The values, or EnvFileError naming the first bad line and why."""
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more bad line(s))" if len(self.problems) > 1 else ""
            raise EnvFileError(
                f"{where} does not parse: {first}{more}",
                fix="write each setting as KEY=value, quoting values that hold spaces or span lines",
                line=first.line,
            )
        return self.values()


class _Bad(Exception):
    def __init__(self, reason: str, at: int) -> None:
        super().__init__(reason)
        self.reason, self.at = reason, at


class _Reader:
    def __init__(self, text: str) -> None:
        # A byte-order mark is skipped, not cut off: every span stays an index into the text as given, so
        # rewriting one key of a file that starts with one keeps the rest of it byte for byte.
        self.text = text
        self.pos = 1 if text.startswith("\ufeff") else 0

    def line_at(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + self.text.count("\r", 0, pos) - self.text.count("\r\n", 0, pos) + 1

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_space(self, *, lines: bool = False) -> str:
        """Whitespace from here (line breaks too with lines=True), as a regex's \\s reads it."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            if not lines and self.text[self.pos] in "\r\n":
                break
            self.pos += 1
        return self.text[start : self.pos]

    def to_line_end(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
            self.pos += 1
        return self.text[start : self.pos]

    def end_line(self) -> bool:
        """Consume the line break (or the end of the text); False if something else is there."""
        if self.text.startswith("\r\n", self.pos):
            self.pos += 2
        elif self.peek() in ("\r", "\n"):
            self.pos += 1
        elif self.pos < len(self.text):
            return False
        return True


def _quoted(reader: _Reader, quote: str) -> str:
    """A quoted value from its opening quote to the closing one, line breaks included."""
    opened = reader.pos
    reader.pos += 1
    escapes = DOUBLE_ESCAPES if quote == '"' else SINGLE_ESCAPES
    out: list[str] = []
    text = reader.text
    while reader.pos < len(text):
        char = text[reader.pos]
        if char == "\\" and reader.pos + 1 < len(text):
            pair = text[reader.pos + 1]
            out.append(escapes.get(pair, "\\" + pair))
            reader.pos += 2
        elif char == quote:
            reader.pos += 1
            return "".join(out)
        else:
            out.append(char)
            reader.pos += 1
    reader.pos = opened
    kind = "double" if quote == '"' else "single"
    raise _Bad(f"the {kind} quote opened on this line is never closed", opened)


def _unquoted(reader: _Reader) -> str:
    raw = reader.to_line_end()
    comment = re.search(r"\s#", raw)
    if comment:
        raw = raw[: comment.start()]
    return raw.rstrip()


def _key(reader: _Reader) -> str:
    if reader.peek() == "'":
        close = reader.text.find("'", reader.pos + 1)
        if close <= reader.pos + 1:
            raise _Bad("a key in single quotes must be closed and not empty", reader.pos)
        key = reader.text[reader.pos + 1 : close]
        reader.pos = close + 1
        return key
    start = reader.pos
    while reader.pos < len(reader.text) and not (reader.text[reader.pos] in "=#" or reader.text[reader.pos].isspace()):
        reader.pos += 1
    if reader.pos == start:
        raise _Bad("expected a key before '='" if reader.peek() == "=" else "expected a key", start)
    return reader.text[start : reader.pos]


def _entry(reader: _Reader) -> Binding | None:
    """One entry from a line's first non-blank character; None for a comment line."""
    start = reader.pos
    line = reader.line_at(start)
    if EXPORT.match(reader.text, reader.pos):
        reader.pos += 6
        reader.skip_space()
    if reader.peek() == "#":
        reader.to_line_end()
        reader.end_line()
        return None
    key = _key(reader)
    reader.skip_space()
    value: str | None = None
    if reader.peek() == "=":
        reader.pos += 1
        spaced = reader.skip_space()
        char = reader.peek()
        if spaced and char == "#":
            value = ""
        elif char in ("'", '"'):
            value = _quoted(reader, char)
        elif char in ("", "\r", "\n"):
            value = ""
        else:
            value = _unquoted(reader)
    reader.skip_space()
    if reader.peek() == "#":
        reader.to_line_end()
    end = reader.pos
    if not reader.end_line():
        # Where, not what: the text may be the rest of a secret (a quote closed too early) and the problem is
        # shown on pages, in the shell and stored with the version (review).
        column = end - reader.text.rfind("\n", 0, end)
        what = "after the closing quote" if value is not None else f"after the key {key!r} (no '=')"
        raise _Bad(f"unexpected text at column {column}, {what}", end)
    return Binding(key, value, line, start, end)


def parse(text: str) -> Parsed:
    """Every entry and every bad line of an env file's text."""
    reader = _Reader(text)
    bindings: list[Binding] = []
    problems: list[ParseProblem] = []
    while True:
        reader.skip_space(lines=True)
        if reader.pos >= len(reader.text):
            break
        entry_start = reader.pos
        try:
            entry = _entry(reader)
        except _Bad as bad:
            problems.append(ParseProblem(reader.line_at(entry_start), bad.reason))
            # as python-dotenv does: give up on the rest of the line where reading failed, then go on
            reader.pos = bad.at
            reader.to_line_end()
            reader.end_line()
            continue
        if entry is not None:
            bindings.append(entry)
    return Parsed(tuple(bindings), tuple(problems))


def format_value(value: str) -> str:
    """A value written so this parser and python-dotenv read it back unchanged."""
    if PLAIN_VALUE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_key(text: str, key: str, value: str) -> str:
    """The text with KEY's last entry replaced by KEY=value (or a new line at the end); the rest kept byte for byte."""
    if not KEY_NAME.match(key):
        raise EnvFileError(f"{key!r} is not a key name: use letters, digits, '_' and '.', not starting with a digit")
    parsed = parse(text)
    parsed.check()
    line = f"{key}={format_value(value)}"
    found = [b for b in parsed.bindings if b.key == key]
    if found:
        last = found[-1]
        prefix = "export " if EXPORT.match(text, last.start) else ""
        edited = text[: last.start] + prefix + line + text[last.end :]
    else:
        newline = "\r\n" if "\r\n" in text else "\n"
        if text and not text.endswith(("\n", "\r")):
            text += newline
        edited = text + line + newline
    # never hand back a file that reads differently from what was asked: better refused than half-written
    after = parse(edited)
    if not after.ok or after.values().get(key) != value or len(after.bindings) != len(parsed.bindings) + (not found):
        raise EnvFileError(
            f"setting {key} would not read back as written in this env file",
            fix="edit the file by hand, then take a snapshot; nothing was changed",
        )
    return edited


# --- the file on disk --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvFileState:
    """The file's bytes and what a version records about it."""

    content: bytes
    mtime: float
    owner: str
    mode: int


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class EnvFile:
    """One target's env file; `path` may be a symlink, whose target is what gets read and written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def real_path(self) -> Path:
        return Path(os.path.realpath(self.path))

    def _named(self) -> str:
        """The path as configured, and where a symlink leads when it leads elsewhere."""
        real = self.real_path
        return str(self.path) if real == self.path.absolute() else f"{self.path} (a link to {real})"

    def exists(self) -> bool:
        return self.real_path.is_file()

    def read(self) -> EnvFileState:
        real = self.real_path
        try:
            info = real.stat()
            if not stat.S_ISREG(info.st_mode):
                what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
                raise EnvFileError(
                    f"the env file {self._named()} is {what}",
                    fix="point env_file at the file itself in the targets file",
                    path=self.path,
                )
            if info.st_size > MAX_BYTES:
                raise EnvFileError(
                    f"the env file {self._named()} is {info.st_size} bytes; Rewind keeps env files up to {MAX_BYTES}",
                    fix="an env file holds settings, not data: check env_file names the right file",
                    path=self.path,
                )
            content = real.read_bytes()
        except FileNotFoundError:
            raise EnvFileError(
                f"the env file {self._named()} does not exist",
                fix="create it with the owner and mode the application needs (empty will do), then restore a "
                "version from the Config tab; or correct env_file",
                path=self.path,
            ) from None
        except PermissionError:
            raise EnvFileError(
                f"Rewind may not read the env file {self.path}",
                fix="let the user Rewind runs as read it",
                path=self.path,
            ) from None
        return EnvFileState(content, info.st_mtime, owner_name(info.st_uid), stat.S_IMODE(info.st_mode))

    def write(self, content: bytes) -> None:
        """Replace the file's content atomically, keeping its owner and mode; nothing changes on failure."""
        real = self.real_path
        try:
            info = real.stat()
        except FileNotFoundError:
            raise EnvFileError(f"the env file {self.path} does not exist", path=self.path) from None
        folder = real.parent
        if not os.access(real, os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
            raise EnvFileError(
                f"Rewind may not write the env file {self.path} (it replaces the file through its folder {folder})",
                fix=f"let the user Rewind runs as write {real} and its folder; nothing was changed",
                path=self.path,
            )
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".rewind", dir=folder)
        except OSError as exc:
            raise EnvFileError(
                f"Rewind may not write the env file {self.path}: {exc.strerror or exc} in its folder {folder}",
                fix=f"let the user Rewind runs as write {real} and its folder; nothing was changed",
                path=self.path,
            ) from None
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                out.flush()
                os.fchmod(out.fileno(), stat.S_IMODE(info.st_mode))
                if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(out.fileno(), info.st_uid, info.st_gid)
                    except PermissionError:
                        raise EnvFileError(
                            f"Rewind cannot keep the owner of the env file {self.path} "
                            f"({owner_name(info.st_uid)}) when it rewrites it",
                            fix="run Rewind as that user (or root), or give the file to Rewind's user; "
                            "nothing was changed",
                            path=self.path,
                        ) from None
                os.fsync(out.fileno())
            os.replace(temp, real)
        except EnvFileError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise EnvFileError(
                f"could not write the env file {self.path}: {exc.strerror or exc}",
                fix="the file was left as it was; check the folder's permissions and free space",
                path=self.path,
            ) from None
        with contextlib.suppress(OSError):  # the file is in place; a folder that cannot be synced changes nothing
            sync_dir(folder)


def decode(content: bytes, where: str = "the env file") -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise EnvFileError(f"{where} is not UTF-8 text (line {line})", fix="save it as UTF-8", line=line) from None


def read_values(path: Path) -> dict[str, str | None]:
    """The settings in an env file, or EnvFileError with the bad line and why."""
    return read_parsed(path).check(str(path))


def read_parsed(path: Path) -> Parsed:
    """An env file's lines, its bad ones as problems beside the good: EnvFileError only when it cannot be read."""
    return parse(decode(EnvFile(path).read().content, str(path)))
