"""A filter between gpg and psql: a plain-SQL backup may only act inside the database it is restored into.

psql obeys whatever the file says, and a plain dump made with `pg_dump
--create --clean` (or by pg_dumpall, or by hand) can say `DROP DATABASE
<live>`, `ALTER ROLE …` or `\\connect <live>`: restored "into a scratch
database", it would reach the live one while the application serves. psql
splits the stream into statements itself (at a top-level `;`, wherever it is
on a line), so this filter reads the stream the way psql's lexer does: quoted
strings ('…', E'…'), quoted identifiers, dollar quotes, line and nested block
comments (a `--` comment ends at a carriage return too, as psql's does), parentheses,
the BEGIN … END of SQL-standard function bodies, and COPY … FROM stdin data
(up to a line that is exactly `\\.`). Outside those it refuses any psql
meta-command (pg_dump's own `\\restrict`/`\\unrestrict` lines aside) and
every statement that acts past the database it runs in: on a database, a
role, a tablespace, the server's settings, a COPY that is not FROM stdin,
a transaction end the dump did not open. Where psql's reading could depend
on a setting or a version (a quote after an odd run of backslashes, a
backslash after a non-ASCII byte in a string, which the client encoding may
make part of a character, a `$` run into a number) it refuses too: a plain
dump from pg_dump never needs those.

The SQL passes through unchanged, one statement at a time: a statement's lines
are held until its end is seen and checked, so psql never gets part of a
refused one (COPY data streams through without being held). A refusal ends
the filter with status 3 and one line on stderr naming the line and the cause.

One change is made: pg_dump wraps large objects in its own `BEGIN;` …
`COMMIT;` (each alone on its line), and psql fills the scratch with
--single-transaction, so that COMMIT would end psql's one transaction early and
everything after it (the indexes, constraints, and whatever a crafted file
adds) would run outside one. Those two lines pass as comments, so the large
objects are written inside psql's transaction like the rest; any other
transaction statement is refused.

Asked to (`--leave-out-ownership`, for a restore test's copy filled as
Rewind's own user, who cannot act as the live database's owner), it also
leaves out what only that owner could run: `ALTER … OWNER TO …` and `ALTER
DEFAULT PRIVILEGES FOR ROLE …`, each written as one comment line in its
place, and only when the lines held contain nothing else (no comment opened
or closed in them).

It runs as its own pipeline stage (`python -I sqlguard.py`, standard library
only), so the stream never passes through Rewind's process.
"""

from __future__ import annotations

import re
import signal
import sys
from itertools import pairwise
from pathlib import Path

PATH = Path(__file__)
REFUSED = 3
END_OF_DATA = (b"\\.\n", b"\\.\r\n")  # exactly what psql takes as the end of COPY data
OWN_META = re.compile(rb"\s*\\(?:restrict|unrestrict) [A-Za-z0-9]+\s*")
OWN_TRANSACTION_LINES = (b"BEGIN;", b"COMMIT;")  # pg_dump's around large objects, each alone on its line
# psql reads its input a line at a time as C strings: what follows a NUL on its line never reaches its lexer (nor
# the end of COPY data it looks for), so its quotes and statements would not be the ones checked. No dump has one.
NUL = b"\0"
NUL_REFUSED = "a NUL byte (psql drops the rest of its line; no dump has one)"
# In SJIS, BIG5, GBK and the like (client encodings a dump can SET) a backslash byte may end a character, and psql,
# which lexes in the client encoding, then reads no backslash there: in a string it would escape nothing.
ENCODING_REFUSED = "a backslash after a non-ASCII byte in a string (where that string ends depends on client_encoding)"
WORDS_KEPT = 16  # top-level words of a statement kept for its check
HELD_MAX = 256 << 20  # a statement is held until its end; pg_dump's are small (data goes in COPY)
LEAVE_OUT = "--leave-out-ownership"
LEFT_OUT = b"-- left out: a statement only the live database's owner may run (this copy is Rewind's own)\n"

# One token of SQL outside quotes and comments; what it is decides what psql does next.
TOKEN = re.compile(
    rb"([A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)"  # 1 identifier or keyword ($ may continue one)
    rb"|([0-9][A-Za-z0-9_$\x80-\xff.]*)"  # 2 number (with anything run into it)
    rb"|(\$[0-9][A-Za-z0-9_$\x80-\xff]*)"  # 3 parameter
    rb"|(\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$)"  # 4 dollar-quote delimiter
    rb"|(--|/\*|[;'\"\\()])"  # 5 comment start or a character that matters
)
# Words, numbers and operators that change nothing for psql's lexer once a statement's words are kept
# (not e'…', u&'…', nor a number run into a $), and strings and quoted identifiers that end on the
# same line, with no quote after an odd run of backslashes (read alike by every setting); the tokens
# above take over at anything else.
PLAIN_RUN = re.compile(
    rb"(?:(?![eEuU]['&])[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*+"
    rb"|[0-9][A-Za-z0-9_\x80-\xff.]*+(?!\$)"
    rb"|'(?:[^'\\]++|\\\\|\\(?![\\']))*+'"  # a string whose quotes follow even runs of backslashes
    rb"|\"[^\"]*+\""
    rb"|[^-/'\"$;\\()A-Za-z0-9_\x80-\xff]+|-(?!-)|/(?!\*))*+"
)
E_STRING_STOP = re.compile(rb"[\\']")
BLOCK_STOP = re.compile(rb"/\*|\*/")
PLAIN_NUMBER = re.compile(rb"[0-9]+(?:\.[0-9]*)?(?:[eE][0-9]*)?")

NORMAL, QUOTE, E_QUOTE, IDENT, DOLLAR, BLOCK, DATA = range(7)

SHARED_OBJECTS = {b"database", b"role", b"user", b"group", b"tablespace"}
SHARED_GRANTS = {b"database", b"tablespace", b"parameter"}


class Refusal(Exception):
    """What stops the stream: the line number, the cause and the line, for the one line on stderr."""

    def __init__(self, number: int, why: str, line: bytes):
        super().__init__(why)
        self.number, self.why, self.line = number, why, line


def guard_stage(env: dict[str, str], *, leave_out_ownership: bool = False):
    """The pipeline stage that runs this filter (in the target's command environment; it needs nothing of it)."""
    from app.targets.command import Stage

    flags = [LEAVE_OUT] if leave_out_ownership else []
    return Stage.of([sys.executable, "-I", str(PATH), *flags], "sqlguard", env=env)


def ownership_statement(words: list[bytes]) -> bool:
    """An ALTER … OWNER TO … or ALTER DEFAULT PRIVILEGES FOR ROLE …: what only the owner's role may run."""
    if words[:1] != [b"alter"]:
        return False
    if words[1:4] == [b"default", b"privileges", b"for"]:
        return True  # said by its first words, however many privileges it lists
    if len(words) >= WORDS_KEPT or b"rename" in words:
        return False  # a RENAME of something called owner TO … is not one; nor a statement of more words than kept
    return words[-2:] == [b"owner", b"to"] or words[-3:-1] == [b"owner", b"to"]  # the new owner quoted, or a word


def statement_refusal(words: list[bytes]) -> str | None:
    """Why a statement starting with these top-level words (lower case) must not reach psql, or None."""
    if not words:
        return None
    first, rest = words[0], words[1:]
    second = rest[0] if rest else b""
    if first in (b"create", b"alter", b"drop"):
        if second == b"database":
            return "a statement on a whole database"
        if second in (b"role", b"user", b"group") and rest[1:2] != [b"mapping"]:
            return "a statement on a role (roles belong to the whole server)"
        if second == b"tablespace":
            return "a statement on a tablespace (tablespaces belong to the whole server)"
        if first == b"alter" and second == b"system":
            return "ALTER SYSTEM (the server's own settings)"
        if first == b"drop" and second == b"owned":
            return "DROP OWNED (it reaches every database a role has rights in)"
    if first == b"reassign":
        return "REASSIGN OWNED (it reaches objects outside the database)"
    if first in (b"comment", b"security") and b"on" in words[:5]:
        target = words[words.index(b"on") + 1 : words.index(b"on") + 2]
        if target and target[0] in SHARED_OBJECTS:
            return f"a {first.decode()} on a {target[0].decode()} (shared by the whole server)"
    if first in (b"grant", b"revoke"):
        for index, word in enumerate(rest):
            if word == b"on":
                if rest[index + 1 : index + 2] and rest[index + 1] in SHARED_GRANTS:
                    return f"a {first.decode().upper()} on a {rest[index + 1].decode()} (shared by the whole server)"
                return None
            if word in (b"to", b"from"):
                return f"a {first.decode().upper()} of role membership (roles belong to the whole server)"
        return f"a {first.decode().upper()} whose object is not named within its first words"
    if first == b"copy" and (b"to" in words or b"program" in words or not _has_pair(words, b"from", b"stdin")):
        return "a COPY that is not FROM stdin"
    if first in (b"rollback", b"abort") or (first == b"prepare" and second == b"transaction"):
        return "a transaction end (the restore runs as one transaction)"
    if first == b"commit" and second == b"prepared":
        return "a transaction end (the restore runs as one transaction)"
    if first == b"load":
        return "LOAD (it loads a library into the server)"
    return None


def _has_pair(words: list[bytes], a: bytes, b: bytes) -> bool:
    return (a, b) in pairwise(words)


class Lexer:
    """psql's view of the stream, one line at a time; Refusal at the first thing that may not reach it."""

    def __init__(self, sink, *, leave_out_ownership: bool = False) -> None:
        self.sink = sink
        self.leave_out_ownership = leave_out_ownership
        self.checked = 0  # statements ended in the lines held
        self.left_out = 0  # of those, ownership statements to leave out
        self.held_from = NORMAL  # the mode the held lines began in
        self.mode = NORMAL
        self.tag = b""  # the open dollar quote's delimiter
        self.comment_depth = 0
        self.own_transaction = False  # the dump's own BEGIN (pg_dump wraps large objects in one)
        self.transaction_statement = False  # the statement just checked was the dump's BEGIN or COMMIT
        self.held: list[bytes] = []  # the open statement's lines, passed on once it is seen whole
        self.held_size = 0
        self._new_statement()

    def _new_statement(self) -> None:
        self.words: list[bytes] = []
        self.started = 0  # line number where the statement began, 0 when none is open
        self.first_line = b""
        self.parens = 0
        self.idents = 0  # psql's count of identifiers, for its BEGIN … END heuristic
        self.routine = [b"", b"", b"", b""]
        self.begins = 0

    # --- per line ---

    def feed(self, number: int, line: bytes) -> None:
        """One line of SQL (COPY data is the caller's: it only looks for the line that ends it)."""
        if NUL in line:
            self._refuse(number, NUL_REFUSED, line)
        alone = not self.held  # no statement open before this line
        if alone:
            self.held_from = self.mode  # a comment open before the held lines is psql's too: see _pass_held
        copy_follows = self._scan(number, line)
        if self.transaction_statement:
            self.transaction_statement = False
            # Exactly the line, its end aside: a carriage return before the word would end the `--` below.
            if not (alone and not self.started and line.rstrip(b"\r\n").upper() in OWN_TRANSACTION_LINES):
                self._refuse(number, "a transaction statement not as pg_dump writes it (BEGIN; or COMMIT; alone)", line)
            line = b"-- " + line  # psql's one transaction holds the large objects: see the module's docstring
        self.held.append(line)
        if not self.started and self.mode in (NORMAL, BLOCK):
            self._pass_held()
        else:
            self.held_size += len(line)
            if self.held_size > HELD_MAX:
                self._refuse(self.started, f"a statement over {HELD_MAX >> 20} MB (no dump has one)", self.first_line)
        if copy_follows:
            self.mode = DATA

    def finish(self) -> None:
        """The end of the stream: psql sends whatever statement is still open."""
        if self.started:
            self._check(self.words)
            if self.transaction_statement:  # one without its `;`: not as pg_dump writes it
                self._refuse(self.started, "a transaction statement not as pg_dump writes it", self.first_line)
        self._pass_held()

    def _pass_held(self) -> None:
        """The lines held on to psql; as one comment when they are nothing but statements to leave out.

        Only lines that begin and end outside any comment: dropping one that opens or closes a block comment would
        leave psql reading as SQL what the guard let through as comment (or the reverse)."""
        if self.left_out and self.left_out == self.checked and self.held_from == NORMAL and self.mode == NORMAL:
            self.sink.write(LEFT_OUT)
        else:
            self.sink.write(b"".join(self.held))
        self.held.clear()
        self.held_size = 0
        self.checked = self.left_out = 0

    def _refuse(self, number: int, why: str, line: bytes):
        raise Refusal(number, why, line)

    def _check(self, words: list[bytes]) -> None:
        why = statement_refusal(words)
        first = words[0] if words else b""
        second = words[1] if len(words) > 1 else b""
        if why is None and first in (b"commit", b"end"):
            if not self.own_transaction:
                why = "a transaction end (the restore runs as one transaction)"
            self.own_transaction = False
            self.transaction_statement = True
        elif why is None and (first == b"begin" or (first == b"start" and second == b"transaction")):
            if self.own_transaction:
                why = "a transaction begun inside another (pg_dump opens one at a time)"
            self.own_transaction = True
            self.transaction_statement = True
        if why is not None:
            raise Refusal(self.started, why, self.first_line)
        self.checked += 1
        if self.leave_out_ownership and ownership_statement(words):
            self.left_out += 1

    def _start(self, number: int, line: bytes) -> None:
        if not self.started:
            self.started, self.first_line = number, line

    def _scan(self, number: int, line: bytes) -> bool:
        """Follow psql through one line; True when COPY data starts on the next line."""
        pos, end = 0, len(line)
        search, skip = TOKEN.search, PLAIN_RUN.match
        while pos < end:
            mode = self.mode
            if mode == QUOTE:
                at = line.find(b"'", pos)
                if at < 0:
                    return False
                run = at - 1
                while run >= 0 and line[run] == 92:  # backslashes right before the quote
                    run -= 1
                if run < at - 1 and run >= 0 and line[run] >= 0x80:
                    self._refuse(number, ENCODING_REFUSED, line)
                if (at - 1 - run) % 2:
                    self._refuse(
                        number,
                        "a quote after a backslash (where that string ends depends on standard_conforming_strings)",
                        line,
                    )
                self.mode, pos = NORMAL, at + 1
                continue
            if mode == E_QUOTE:
                match = E_STRING_STOP.search(line, pos)
                if match is None:
                    return False
                at = match.start()
                if line[at] == 92 and at > 0 and line[at - 1] >= 0x80:
                    self._refuse(number, ENCODING_REFUSED, line)
                if line[at] == 92 or line[at + 1 : at + 2] == b"'":  # an escape, or '' inside the string
                    pos = at + 2
                else:
                    self.mode, pos = NORMAL, at + 1
                continue
            if mode == IDENT:
                at = line.find(b'"', pos)
                if at < 0:
                    return False
                self.mode, pos = NORMAL, at + 1
                continue
            if mode == DOLLAR:
                at = line.find(self.tag, pos)
                if at < 0:
                    return False
                self.mode, pos = NORMAL, at + len(self.tag)
                continue
            if mode == BLOCK:
                match = BLOCK_STOP.search(line, pos)
                if match is None:
                    return False
                self.comment_depth += 1 if match.group() == b"/*" else -1
                if self.comment_depth == 0:
                    self.mode = NORMAL
                pos = match.end()
                continue
            # NORMAL
            if self.idents >= 4 and (self.parens or len(self.words) >= WORDS_KEPT) and not self._routine():
                pos = skip(line, pos).end()  # no word is kept here: run past the ones that cannot open a quote
            match = search(line, pos)
            if match is None:
                return False
            pos = match.end()
            kind = match.lastindex
            text = match.group()
            if kind == 1:
                self._word(number, line, text, pos)
                if self.mode == E_QUOTE:
                    pos += 1  # past the quote that opens it
            elif kind == 2:
                self._start(number, line)
                if b"$" in text:
                    self._refuse(number, "a $ run into a number (psql versions read it differently)", line)
                if self._routine() and not PLAIN_NUMBER.fullmatch(text):
                    self._refuse(number, "a number run into letters (psql versions read it differently)", line)
            elif kind == 3:
                self._start(number, line)
                if b"$" in text[1:]:
                    self._refuse(number, "a $ run into a parameter (psql versions read it differently)", line)
            elif kind == 4:
                self._start(number, line)
                self.mode, self.tag = DOLLAR, text
            elif text == b"--":
                at = line.find(b"\r", pos)  # psql, like the server, ends a -- comment at a carriage return too
                if at < 0:
                    return False
                pos = at + 1
            elif text == b"/*":
                self.mode, self.comment_depth = BLOCK, 1
            elif text == b";":
                if self.started and self.parens == 0 and self.begins == 0:
                    words = self.words
                    self._check(words)
                    self._new_statement()
                    if words[:1] == [b"copy"]:  # psql reads the data from the next line, the rest of this one after
                        if line[pos:].strip():
                            self._refuse(number, "more on the line after COPY … FROM stdin;", line)
                        return True
            elif text == b"\\":
                if self.started or not OWN_META.fullmatch(line):
                    self._refuse(number, "a psql meta-command", line)
                return False
            else:
                self._start(number, line)
                if text == b"'":
                    self.mode = QUOTE
                elif text == b'"':
                    self.mode = IDENT
                elif text == b"(":
                    self.parens += 1
                elif self.parens:
                    self.parens -= 1
        return False

    def _routine(self) -> bool:
        """psql's test for CREATE [OR REPLACE] FUNCTION|PROCEDURE, whose BEGIN … END it keeps whole."""
        first = self.routine
        return first[0] == b"c" and (
            first[1] in (b"f", b"p") or (first[1] == b"o" and first[2] == b"r" and first[3] in (b"f", b"p"))
        )

    def _word(self, number: int, line: bytes, text: bytes, end: int) -> None:
        self._start(number, line)
        after = line[end : end + 1]
        if after == b"'" and text in (b"e", b"E"):
            self.mode = E_QUOTE
            return
        if text in (b"u", b"U") and after == b"&" and line[end + 1 : end + 2] in (b"'", b'"'):
            return  # U&'…' / U&"…": psql reads the prefix as part of the quote, not as a word
        lower = text.lower()
        if self.idents < 4 and lower in (b"create", b"function", b"procedure", b"or", b"replace"):
            self.routine[self.idents] = lower[:1]
        self.idents += 1
        if self.parens == 0:
            if len(self.words) < WORDS_KEPT:
                self.words.append(lower)
            if lower in (b"begin", b"case", b"end") and self._routine():
                if lower == b"begin":
                    self.begins += 1
                elif lower == b"case":
                    if self.begins:
                        self.begins += 1
                elif self.begins:
                    self.begins -= 1


def guard(source, sink, *, leave_out_ownership: bool = False) -> tuple[int, str, bytes] | None:
    """Copy source to sink as psql would read it; at the first refusal stop and return (line number, why, line)."""
    lexer = Lexer(sink, leave_out_ownership=leave_out_ownership)
    lines = enumerate(source, start=1)
    write = sink.write
    try:
        for number, line in lines:
            lexer.feed(number, line)
            if lexer.mode == DATA:  # COPY data, most of a dump: only its end is looked for
                for number, line in lines:  # the same numbered lines, read on
                    if NUL in line:
                        raise Refusal(number, NUL_REFUSED, line)
                    write(line)
                    if line in END_OF_DATA:
                        lexer.mode = NORMAL
                        break
        lexer.finish()
    except Refusal as refused:
        return refused.number, refused.why, refused.line
    return None


def main() -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # psql stopped (its own error): end as its victim, quietly
    found = guard(sys.stdin.buffer, sys.stdout.buffer, leave_out_ownership=LEAVE_OUT in sys.argv[1:])
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
