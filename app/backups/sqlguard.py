"""A filter between gpg and psql: a plain-SQL backup may only act inside the database it is restored into.

psql obeys whatever the file says, and a plain dump made with `pg_dump
--create --clean` (or by pg_dumpall) says `DROP DATABASE <live>`, `CREATE
DATABASE <live>` and `\\connect <live>`: restored "into a scratch database",
it would drop and refill the live one while the application serves. This
filter passes the SQL through unchanged and stops (status 3, the line named
on stderr) before any line that would reach outside: a psql meta-command
other than pg_dump's own `\\restrict`/`\\unrestrict`, a statement on a whole
database, or a COPY that is not `FROM stdin`. COPY data is passed as data.

It runs as its own pipeline stage (`python -I sqlguard.py`, standard library
only), so the stream never passes through Rewind's process.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

PATH = Path(__file__)
REFUSED = 3
COPY_FROM_STDIN = re.compile(rb"^COPY\s.*\sFROM\s+stdin;\s*$", re.IGNORECASE)
COPY_ANY = re.compile(rb"^COPY\s", re.IGNORECASE)
WHOLE_DATABASE = re.compile(rb"^(DROP|CREATE|ALTER)\s+DATABASE\b", re.IGNORECASE)
OWN_META = re.compile(rb"^\\(restrict|unrestrict)\s")
END_OF_DATA = b"\\."


def guard_stage(env: dict[str, str]):
    """The pipeline stage that runs this filter (in the target's command environment; it needs nothing of it)."""
    from app.targets.command import Stage

    return Stage.of([sys.executable, "-I", str(PATH)], "sqlguard", env=env)


def refusal(line: bytes) -> str | None:
    """Why this SQL-mode line must not reach psql, or None."""
    text = line.lstrip()
    if text.startswith(b"\\") and not OWN_META.match(text):
        return "a psql meta-command"
    if WHOLE_DATABASE.match(text):
        return "a statement on a whole database"
    if COPY_ANY.match(text) and not COPY_FROM_STDIN.match(text):
        return "a COPY that is not FROM stdin"
    return None


def guard(source, sink) -> tuple[int, str, bytes] | None:
    """Copy source to sink line by line; at the first refused line stop and return (line number, why, line)."""
    in_copy = False
    for number, line in enumerate(source, start=1):
        if in_copy:
            if line.rstrip(b"\r\n") == END_OF_DATA:
                in_copy = False
        else:
            why = refusal(line)
            if why is not None:
                return number, why, line
            in_copy = bool(COPY_FROM_STDIN.match(line.lstrip()))
        sink.write(line)
    return None


def main() -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # psql stopped (its own error): end as its victim, quietly
    found = guard(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    if found is None:
        return 0
    number, why, line = found
    shown = line.strip()[:80].decode("utf-8", "replace")
    print(
        f"refused at line {number}: {why} ({shown}); it would act outside the database being restored into. "
        "Restore plain dumps of one database made without --create/--clean (not pg_dumpall)",
        file=sys.stderr,
    )
    return REFUSED


if __name__ == "__main__":
    sys.exit(main())
